"""Benchmark: multiple choice by log-likelihood, each prompt run once per option (the reference) or once per prompt
with its options scored from the KV cache (``loglik.option_logprobs(shared_prefix=True)``, issue 24).

    python bench/scoring.py [--model smollm2-135m-instruct] [--n 40] [--threads 1] [--json outputs/bench/scoring.json]

Scores the first ``--n`` items of ``data/general_eval.jsonl`` rendered with the model's chat template and
``delimiter=""`` (as ``scoring.score_sets`` does), both ways in one run on the CPU, and prints seconds, the ratio
to the reference, the accuracies and the largest absolute difference of the summed log-probabilities. SmolLM2 when
its package is installed, else the lab's base model. About a minute for 40 items on one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measured, report  # noqa: E402

import torch  # noqa: E402

from helpers import loglik  # noqa: E402
from helpers.chat import render_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    """``(model, tokenizer, name)``: the packaged real model, or the lab's base model if it is not installed."""
    from helpers import models

    try:
        model, tok = models.load("real", name, device="cpu")
        return model, tok, name
    except Exception as e:  # noqa: BLE001 -- any reason the package is missing: fall back, and say so
        print(f"{name} not available ({type(e).__name__}: {e}); using the lab's base model")
        from helpers.lab import zoo

        model, tok = zoo.load("base")
        return model, tok, "lab:base"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n", type=int, default=40, help="general-set items")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/scoring.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok, name = load(args.model)
    lines = (ROOT / "data" / "general_eval.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in lines[: args.n]]
    prompts = [render_prompt(tok, it["instruction"]) for it in items]
    loglik.multiple_choice(model, tok, prompts[:2], items[:2], delimiter="")  # warm-up, untimed
    rows, results = [], {}
    for path, shared in [("full pass per option", False), ("shared prefix", True)]:
        row = {"path": path}
        with measured(row):
            results[shared] = loglik.multiple_choice(model, tok, prompts, items, delimiter="",
                                                     batch_size=args.batch_size, shared_prefix=shared)
        row["accuracy"] = round(results[shared]["accuracy"], 3)
        row["accuracy_norm"] = round(results[shared]["accuracy_norm"], 3)
        rows.append(row)
    gap = max(abs(a - b) for u, v in zip(results[False]["logprobs"], results[True]["logprobs"]) for a, b in zip(u, v))
    for row in rows:
        row["vs_full"] = round(row["seconds"] / rows[0]["seconds"], 2)
        row["max_abs_diff"] = f"{gap:.1e}"
    report(rows, ["path", "seconds", "vs_full", "accuracy", "accuracy_norm", "max_abs_diff"], args.json,
           model=name, n_items=len(items), n_options=sum(len(it["choices"]) for it in items),
           batch_size=args.batch_size, same_predictions=results[False]["pred_norm"] == results[True]["pred_norm"])


if __name__ == "__main__":
    main()
