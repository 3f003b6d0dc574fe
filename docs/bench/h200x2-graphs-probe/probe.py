"""A probe by hand (2026-11-30, fifth session, the lease's last minutes): generate(compile="graphs") against the
uncompiled decode, on 256 prompts of the Qwen2.5-0.5B shape (random weights), 128 sampled tokens (temperature 1,
top-p 0.95, seed 0), two calls each; tokens per second and a hash of the sampled token ids. Run as one process per
GPU, side by side: CUDA_VISIBLE_DEVICES=K python docs/bench/h200x2-graphs-probe/probe.py qwen2.5-0.5b gpuK; writes
$OUT/probe-gpuK.json."""
import hashlib, json, os, sys, time
import torch
sys.path.insert(0, "bench")  # run from the repository root: python docs/bench/h200x2-graphs-probe/probe.py SHAPE NAME
from generation import build, make_prompts, SHAPES
from helpers.lab import standins
from helpers.generate import generate
tok = standins.tokenizer("qwen2_5")
arch, shape = SHAPES[sys.argv[1]]
model = build(shape, tok, "cuda", arch)
prompts = make_prompts(tok, 256, 100)
out = {}
for choice in ["false", "graphs"]:
    c = {"graphs": "graphs", "false": False}[choice]
    for i in range(2):
        torch.cuda.synchronize(); t = time.time()
        res = generate(model, tok, prompts, max_new_tokens=128, batch_size=256, do_sample=True, temperature=1.0,
                       top_p=0.95, seed=0, compile=c)
        torch.cuda.synchronize(); dt = time.time() - t
        n = sum(r["new_tokens"] for r in res)
        h = hashlib.sha256(json.dumps([r["ids"] for r in res]).encode()).hexdigest()[:16]
        out.setdefault(choice, []).append({"s": round(dt, 2), "tok_s": round(n / dt), "sha": h})
        print(sys.argv[2], choice, i, out[choice][-1], flush=True)
        json.dump(out, open(os.environ["OUT"] + f"/probe-{sys.argv[2]}.json", "w"))
