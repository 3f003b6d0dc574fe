"""Benchmark: stage 05's trainer under every compute setup this machine has, side by side on the same data.

    python bench/train_setups.py [--run lab] [--arm domain_only] [--steps 100] [--json outputs/bench/train_setups.json]

Needs notebooks 00-04 for the run (the arm's rows). Trains the lab base model for ``--steps`` steps with the lab
settings of notebook 05 under the preset under each setup -- CPU: fp32 compute with an NF4 base and with an unquantised base; GPU:
additionally bf16 (if supported) and fp16 (the T4 path) -- and prints seconds, steps/s, the first and last logged
loss and the trainable parameter count, with each setup's time relative to the first. Writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from helpers import mixing, models, pipeline, qlora_configs as qc, qlora_training as qt
from helpers.runs import repo_root


def setups() -> list[models.Setup]:
    out = [models.Setup("cpu", "float32", "nf4"), models.Setup("cpu", "float32", "none")]
    if torch.cuda.is_available():
        gpu = [models.Setup("cuda", "float16", "nf4"), models.Setup("cuda", "float16", "none")]
        if models.native_bf16():
            gpu = [models.Setup("cuda", "bfloat16", "nf4"), models.Setup("cuda", "bfloat16", "none")] + gpu
        out = gpu + out
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="lab")
    parser.add_argument("--arm", default="domain_only")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--preset", type=Path, default=Path("presets/lab.yaml"))
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/train_setups.json"))
    args = parser.parse_args()
    # notebook 05's defaults, overridden by the preset: the settings notebook 05 trains with
    p = {**pipeline.notebook_parameters(repo_root() / "notebooks" / "05_qlora_training.ipynb"),
         **pipeline.load_preset(args.preset)}  # a preset with `base:` reads its base underneath
    hp = {k: p[k] for k in qc.HP} | {"max_steps": args.steps}
    dataset = mixing.load_arms(args.run)[args.arm]
    base = models.resolve(args.run, p["model"])  # the preset's model (notebook 05's default: the lab base)
    rows = []
    for setup in setups():
        with tempfile.TemporaryDirectory() as tmp:
            trainer = qt.make_trainer(dataset, base, setup, qc.from_parameters(setup, base, hp), seed=0,
                                      output_dir=Path(tmp), progress=False)
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        rows.append({"device": setup.device, "compute_dtype": setup.compute_dtype, "quantization": setup.quantization,
                     "seconds": round(seconds, 2), "steps_per_s": round(args.steps / seconds, 2),
                     "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
                     "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)})
        del trainer
    for r in rows:
        r["time_vs_first"] = round(r["seconds"] / rows[0]["seconds"], 2)
    header = list(rows[0])
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(str(r[h]) for h in header))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    args.json.write_text(json.dumps({"arm": args.arm, "steps": args.steps, "hp": hp, "gpu": gpu,
                                     "torch": torch.__version__, "machine": platform.machine(), "rows": rows},
                                    indent=1) + "\n")


if __name__ == "__main__":
    main()
