"""Author notebooks 05 and 06 from this script (cells as plain strings; outputs empty, kernelspec python3)."""
import sys
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def nb(cells):
    out = []
    for kind, src, *tags in cells:
        cell = new_markdown_cell(src.strip("\n")) if kind == "md" else new_code_cell(src.strip("\n"))
        if tags:
            cell.metadata["tags"] = list(tags)
        out.append(cell)
    book = new_notebook(cells=out)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    return book


NB05 = [
("md", """
# 05 · QLoRA fine-tuning, one run per arm

Each arm from notebook 04 fine-tunes the same base model with **identical** settings: the same LoRA rank, learning
rate, number of steps, batch size and seed. Only the data differ, so notebook 06 can blame any difference in
forgetting on the data.

**QLoRA** (Dettmers et al., 2023) freezes the base model in 4-bit NF4 (with double quantisation of the scales) and
trains small low-rank adapters (LoRA) on top, in a higher precision. We use TRL's `SFTTrainer` with a peft
`LoraConfig` and a bitsandbytes `BitsAndBytesConfig`; the loss is on the assistant's tokens only
(`assistant_only_loss`), so the model learns to answer, not to ask.

| in the lab | stands for |
|---|---|
| the 1M-parameter `base` model, quantised to NF4 on the CPU | Qwen2.5 / Llama 3 Instruct in 4-bit on one GPU |
| a few hundred steps on ~2,000 rows | a few epochs on tens of thousands of rows |
| `train_embeddings = True` | training the embeddings of new domain tokens (the lab's tokenizer has whole-word tokens for the fictional drug and disease names, which the base model never produced; real tokenizers split new words into known pieces, so real presets leave it off) |
"""),
("code", """
import json

import pandas as pd
from IPython.display import Image, display

from helpers import mixing, models, qlora_training, runs
"""),
("code", """
# Parameters (papermill overrides these; keep them plain literals)
run_name = "lab"
model = "base"              # the model to fine-tune: a lab zoo name, a local folder or a hub id
arms = []                   # arm names from notebook 04; empty trains every arm
seeds = [0]                 # one run per arm and seed (lab-full uses three)
quantization = "nf4"        # nf4 is QLoRA; none is plain LoRA on the unquantised model
device = "auto"             # auto picks cuda when available, else cpu
lora_rank = 16
lora_alpha = 32
lora_dropout = 0.0
target_modules = "all-linear"
train_embeddings = True     # also train the (tied) embeddings, see the table above
max_steps = 300             # the same for every arm
train_batch_size = 32
learning_rate = 0.003
max_length = 128            # tokens per training conversation (longer ones are truncated)
progress = True
""", "parameters"),
("md", """
## 1. Where and how we train

`choose_setup` picks the compute dtype (bf16 on GPUs that have it, fp16 on older ones such as the T4, fp32 on a CPU)
and checks that bitsandbytes can really quantise and compute in 4-bit on this device (bitsandbytes 0.50 can on a
CPU). Where it cannot, it falls back to plain LoRA and says so; the choice is written into every arm's metrics.
"""),
("code", """
setup = qlora_training.choose_setup(quantization, device)
base_path = models.resolve(run_name, model)
all_arms = mixing.load_arms(run_name)
unknown = sorted(set(arms) - set(all_arms))
if unknown:
    raise ValueError(f"arms {unknown} are not among notebook 04's arms {sorted(all_arms)}")
chosen = {name: all_arms[name] for name in (arms or all_arms)}
hp = dict(rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, target_modules=target_modules,
          train_embeddings=train_embeddings, max_steps=max_steps, batch_size=train_batch_size,
          learning_rate=learning_rate, max_length=max_length)
print(setup)
print(f"base model {base_path}; arms {list(chosen)}; seeds {seeds}")
"""),
("md", """
A look at what the trainer sees: one conversation of the `ours` arm, rendered with the chat template. Only the
assistant's answer and its end-of-turn token carry loss.
"""),
("code", """
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(base_path)
example = next(iter(chosen.values()))[0]["messages"]
print(tokenizer.apply_chat_template(example, tokenize=False))
"""),
("md", """
## 2. Train every arm

Each run saves its adapter under `outputs/<run>/05_training/arms/<arm>/seed<k>/`. A run that already finished with the
same settings is not trained again, so an interrupted notebook picks up where it stopped.
"""),
("code", """
results = {}
for name, dataset in chosen.items():
    for seed in seeds:
        m = qlora_training.train_arm(run_name, name, dataset, base_path, setup, hp, seed, progress=progress)
        results.setdefault(name, []).append(m)
        print(f"{name:12s} seed {seed}: {m['train_seconds']:6.1f} s, final loss {m['final_loss']:.3f}, "
              f"{m['trainable_params']:,} trainable parameters ({m['quantization']}, {m['compute_dtype']})")
"""),
("md", """
## 3. Loss curves

The mixed arms start lower (the base model already answers the general rows) and their loss stays above
`domain_only`'s, which only has to fit a few hundred domain conversations again and again -- a first hint of
over-fitting that notebook 06 measures as forgetting.
"""),
("code", """
out = runs.stage_dir(run_name, qlora_training.STAGE)
display(Image(qlora_training.plot_loss_curves(results, out / "loss_curves.png")))
table = pd.DataFrame([{k: m[k] for k in ("arm", "seed", "train_seconds", "final_loss", "steps", "examples_seen",
                                          "trainable_params", "quantization", "compute_dtype", "device")}
                      for ms in results.values() for m in ms])
table
"""),
("md", """
## 4. Save
"""),
("code", """
from dataclasses import asdict

params = dict(run_name=run_name, model=model, arms=list(chosen), seeds=seeds, quantization=quantization,
              device=device, **hp)
metrics = {"model": model, "base_path": base_path, "setup": asdict(setup), "hp": hp, "seeds": seeds,
           "arms": {name: [{k: v for k, v in m.items() if k not in ("loss_curve", "settings")} for m in ms]
                    for name, ms in results.items()},
           "train_seconds_total": round(sum(m["train_seconds"] for ms in results.values() for m in ms), 1)}
runs.finish_stage(run_name, qlora_training.STAGE, params, metrics, ["loss_curves.png"])
print(json.dumps({k: metrics[k] for k in ("setup", "hp", "train_seconds_total")}, indent=1))
"""),
("md", """
## What's next

Notebook 06 loads every adapter on top of the base model and measures general and domain accuracy.
"""),
]

NB06 = [
("md", """
# 06 · Evaluation: what each arm forgot and what it learnt

The base model and every arm from notebook 05 answer held-out instructions, greedily, and an answer counts when it
equals the reference exactly:

* **general**: the base model's own skills, per task family (the paper's general benchmarks, e.g. MMLU, GSM8K);
* **domain**: the new domain (the paper's medical benchmarks).

**Forgetting** is the base model's general accuracy minus the arm's. The method works when `ours` forgets about as
little as `oracle` (which replays the true hidden instruction mixture, impossible outside the lab), clearly less than
`domain_only`, and learns the domain about as well as `domain_only` does.

> **Lab only.** The held-out instructions and their references come from the lab's task families; this is the one
> stage that reads them. With a real model this notebook would run a benchmark suite instead.
"""),
("code", """
import json

import pandas as pd
from IPython.display import Image, Markdown, display
from tqdm.auto import tqdm

from helpers import evaluation, mixing, qlora_training, runs
"""),
("code", """
# Parameters (papermill overrides these; keep them plain literals)
run_name = "lab"
n_eval_per_family = 60      # held-out instructions per task family (the same set as notebook 00)
eval_seed = 1000
lab = True
progress = True
""", "parameters"),
("md", """
## 1. The held-out sets and what was trained
"""),
("code", """
if not lab:
    raise NotImplementedError("notebook 06 scores against the lab's references; for a real model, run a benchmark "
                              "suite on the adapters in outputs/<run>/05_training/arms/ instead")
training = qlora_training.trained(run_name)
mix = runs.read_json(runs.require(run_name, "04_mixing"))
sets = evaluation.eval_sets(n_eval_per_family, eval_seed)
train_domain = mixing.load_arms(run_name)["domain_only"]
seen = evaluation.seen_in_training(sets["domain"], train_domain)
print(f"{len(sets['general'])} general and {len(sets['domain'])} domain instructions; "
      f"{seen:.0%} of the domain ones also occur in the domain training data")
print("trained:", {arm: len(ms) for arm, ms in training["arms"].items()}, "seeds", training["seeds"],
      "setup", training["setup"])
"""),
("md", """
## 2. Score the base model and every adapter

The base model is loaded exactly as it was trained on (4-bit when notebook 05 used 4-bit), so quantisation error is
not counted as forgetting.
"""),
("code", """
jobs = [(None, None)] + [(arm, m["seed"]) for arm, ms in training["arms"].items() for m in ms]
scores = {}
for arm, seed in tqdm(jobs, desc="models", disable=not progress):
    model, tokenizer = evaluation.load_for_eval(run_name, arm, seed, training["base_path"], training["setup"])
    scores[(arm, seed)] = {"seed": seed, **evaluation.score(model, tokenizer, sets)}
    del model

results = {"n_general": len(sets["general"]), "n_domain": len(sets["domain"]), "domain_seen_in_training": seen,
           "setup": training["setup"], "seeds": training["seeds"],
           "base": {k: v for k, v in scores[(None, None)].items() if k != "seed"},
           "arms": {arm: evaluation.aggregate([scores[(arm, m["seed"])] for m in ms])
                    for arm, ms in training["arms"].items()}}
results = evaluation.add_forgetting(results)
table = pd.DataFrame({name: {k: m.get(k) for k in ("general_accuracy", "general_std", "domain_accuracy", "domain_std",
                                                    "forgetting", "n_seeds")}
                      for name, m in [("base", results["base"]), *results["arms"].items()]}).T
table
"""),
("md", """
## 3. The picture

Grouped bars: general and domain accuracy per model (error bars: standard deviation over seeds).
"""),
("code", """
out = runs.stage_dir(run_name, evaluation.STAGE)
display(Image(evaluation.plot_bars(results, out / "accuracy_bars.png")))
"""),
("md", """
Per family: which general skills each arm lost. `domain_only` typically loses the skills furthest from the domain.
"""),
("code", """
display(Image(evaluation.plot_heatmap(results, out / "per_family_heatmap.png")))
"""),
("md", """
The trade-off. Each dot is a model; up is less forgetting, right is more domain knowledge. When notebook 04 built a
ratio sweep (`sweep_shares`, in the `lab-full` preset), the grey line joins the arms that differ only in their general
share: 0% (`domain_only`), the paper's 83% (`ours`) and the others.
"""),
("code", """
sweep = mix.get("sweep", {})
display(Image(evaluation.plot_tradeoff(results, out / "tradeoff.png", sweep)))
pd.DataFrame([{"arm": a, "general_share": s, "general": r["general_accuracy"], "domain": r["domain_accuracy"]}
              for a, s, r in evaluation.sweep_points(results, sweep)])
"""),
("md", """
## 4. Did the method work here?

The reproduction's targets, checked on the numbers above. They are reported as measured; nothing in this notebook
is tuned to meet them.
"""),
("code", """
results["checks"] = evaluation.checks(results)
pd.DataFrame(results["checks"])
"""),
("md", """
A few answers, to see what exact match means in practice:
"""),
("code", """
pd.DataFrame([{"model": name, **s} for name, m in [("base", results["base"]), *[(a, scores[(a, ms[0]["seed"])])
              for a, ms in training["arms"].items()]] for s in m["samples"][:3] + m["samples"][10:12]])
"""),
("md", """
## 5. Save

`results.json` holds everything above; `outputs/<run>/report.md` summarises the run for a reader.
"""),
("code", """
figures = ["accuracy_bars.png", "per_family_heatmap.png", "tradeoff.png"]
evaluation.finish(run_name, results)
report = evaluation.report(run_name, results, training, figures)
params = dict(run_name=run_name, n_eval_per_family=n_eval_per_family, eval_seed=eval_seed, lab=lab)
metrics = {k: results[k] for k in ("n_general", "n_domain", "domain_seen_in_training", "checks")}
metrics["summary"] = {name: {k: m[k] for k in ("general_accuracy", "domain_accuracy") if k in m}
                      for name, m in [("base", results["base"]), *results["arms"].items()]}
runs.finish_stage(run_name, evaluation.STAGE, params, metrics, figures)
display(Markdown(report.read_text()))
"""),
]

if __name__ == "__main__":
    targets = {"05": ("notebooks/05_qlora_training.ipynb", NB05), "06": ("notebooks/06_evaluation.ipynb", NB06)}
    for key in sys.argv[1:] or targets:
        path, cells = targets[key]
        nbformat.write(nb(cells), path)
        print("wrote", path)
