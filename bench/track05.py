"""Benchmark: notebook 05's trainings as presets/smollm2-gpu.yaml sets them, side by side, on arms made from the
shipped data (no 01-04 needed), random weights of a model's shape with its real tokenizer.

    python bench/track05.py --base FOLDER                  # GPU: 3 arms x 3 seeds, domain_epochs 4, 16 x 384
    python bench/track05.py --base FOLDER --no-graphs      # the same with the layers called as usual
    python bench/track05.py --smoke                        # CPU: the lab's base model, a few steps (run in CI)

``--base`` is a model folder with at least its config and tokenizer (e.g. SmolLM2-135M-Instruct's, whose weights
need not be there: random weights of its shape are saved into the folder, in bf16, when it has none). The arms:
``domain_only`` (the 322 rows of data/clinical_train.jsonl), ``public_mix`` (those and 1,572 rows of
data/public_standin.jsonl: 83% general) and ``ours`` (the same, each general answer repeated 1 to 6 times, so that
rows reach ``max_length`` and batches pad to it, as the real track's longest answers do). Under SmolLM2's tokenizer
their rows average 62, 69 and 107 tokens (the real track's: 62, 70 and 135), and with domain_epochs 4 at 16 rows a
step they train 81, 474 and 474 steps, as the real track's do. ``train_all`` plans the workers as notebook 05 does
(``train_workers: 0``). Each (arm, seed) row: its training's wall time, steps, tokens seen, final loss and whether
its layers were replayed as CUDA graphs (``layer_graphs``); ``wall_s``: the whole of ``train_all``. Writes JSON
(``--json``, default ``outputs/bench/track05.json``); the trainings go to ``outputs/<--run>/05_training``, emptied
first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from helpers import models, qlora_configs as qc, qlora_training as qt, runs, speed as sp  # noqa: E402
from helpers.lab import zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def conversation(row: dict, repeat: int = 1) -> list[dict]:
    return [{"role": "user", "content": row["instruction"]},
            {"role": "assistant", "content": " ".join([row["response"]] * repeat)}]


def make_arms(domain_rows: int, seed: int = 0) -> dict:
    """The three arms (module docstring): ``domain_rows`` domain rows (0: all 322), general rows at 83%."""
    from datasets import Dataset

    domain = [json.loads(line) for line in open(ROOT / "data/clinical_train.jsonl")]
    domain = domain[:domain_rows] if domain_rows else domain
    public = [json.loads(line) for line in open(ROOT / "data/public_standin.jsonl")]
    rng = random.Random(seed)
    general = rng.sample(public, round(len(domain) * 0.83 / 0.17))
    arms = {"domain_only": Dataset.from_list([{"messages": conversation(r), "source": "domain"} for r in domain])}
    for name, longer in (("public_mix", False), ("ours", True)):
        rows = [{"messages": conversation(r), "source": "domain"} for r in domain]
        rows += [{"messages": conversation(r, rng.randint(1, 6) if longer else 1), "source": "general"}
                 for r in general]
        rng.shuffle(rows)
        arms[name] = Dataset.from_list(rows)
    return arms


def with_weights(base: Path) -> None:
    """Random weights of the folder's shape, in bf16, saved into it when it has none."""
    if any(base.glob("*.safetensors")):
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base), dtype=torch.bfloat16).save_pretrained(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="a model folder (config and tokenizer at least)")
    parser.add_argument("--run", default="bench-track05", help="the run whose 05_training the trainings go to")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--domain-rows", type=int, default=0, help="domain rows per arm (0: all 322)")
    parser.add_argument("--no-graphs", action="store_true", help="the layers called as usual (Speed.graphed off)")
    parser.add_argument("--smoke", action="store_true", help="CPU, the lab's base model, a few steps")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/track05.json"))
    args = parser.parse_args()
    hp = dict(lora_rank=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", train_embeddings=False,
              embedding_rows="all", max_steps=150, budget="domain_epochs", domain_epochs=4, train_batch_size=16,
              learning_rate=5e-4, max_length=384)
    if args.smoke:
        args.base, args.seeds, args.domain_rows = zoo.ZOO_DIR / "base", [0], 6
        hp.update(train_batch_size=4, max_length=64, domain_epochs=1)
    if args.base is None:
        parser.error("--base FOLDER is needed (or --smoke)")
    with_weights(args.base)
    setup = models.choose_setup("nf4", "cpu" if args.smoke else "auto")
    recipe = qc.from_parameters(setup, str(args.base), hp)
    shutil.rmtree(runs.stage_dir(args.run, qt.STAGE), ignore_errors=True)
    if args.no_graphs:  # notebook 05's plan without the graphs, in the workers too (they inherit it)
        os.environ[sp.GRAPHS_SWITCH] = "0"
    start = time.perf_counter()
    results, plan = qt.train_all(args.run, make_arms(args.domain_rows), args.seeds, str(args.base), setup, recipe,
                                 progress=False)
    wall = round(time.perf_counter() - start, 1)
    rows = [{k: m.get(k) for k in ("arm", "seed", "train_seconds", "steps", "tokens_seen", "final_loss")}
            | {"graphed": m["speed"].get("graphed"), "layer_graphs": m.get("layer_graphs")}
            for ms in results.values() for m in ms]
    report(rows, ["arm", "seed", "train_seconds", "steps", "tokens_seen", "final_loss", "graphed"], args.json,
           wall_s=wall, plan=str(plan), hp=hp, graphs=not args.no_graphs, setup=asdict(setup))
    print(f"train_all: {wall} s, {plan}")


if __name__ == "__main__":
    main()
