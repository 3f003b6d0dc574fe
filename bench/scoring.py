"""Benchmark: multiple choice by log-likelihood, each prompt run once per option (the reference) or once per prompt
with its options scored from the KV cache (``loglik.option_logprobs(shared_prefix=True)``, issue 24); with
``--committee``, notebook 03's likelihood scorer (``committee.response_logprobs``) through the full logits (the
reference) or with the output head run only at the response's positions (``loglik.target_logprobs``).

    python bench/scoring.py [--model smollm2-135m-instruct] [--n 40] [--threads 1] [--json outputs/bench/scoring.json]
    python bench/scoring.py --committee [--model gemma-3-270m] [--n 128] [--batch-size 128] [--device cuda]

Scores the first ``--n`` items of ``data/general_eval.jsonl`` rendered with the model's chat template and
``delimiter=""`` (as ``scoring.score_sets`` does), both ways in one run on the CPU, and prints seconds, the ratio
to the reference, the accuracies and the largest absolute difference of the summed log-probabilities. SmolLM2 when
its package is installed, else the lab's base model. About a minute for 40 items on one thread.

``--committee`` scores the first ``--n`` rows of ``data/public_standin.jsonl`` (instructions with answers of real
lengths) on ``--device`` (default: the GPU if there is one), both ways in one run, and prints seconds, the ratio
and the largest absolute difference of the mean log-probabilities. The reference is today's code with
``loglik.HEAD_TYPES`` emptied, which is exactly the code before the head-only path: full logits, and batches
bounded by the vocabulary (gemma-3's 262k gives a few rows per batch).
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


def load(name: str, device: str = "cpu"):
    """``(model, tokenizer, name)``: the packaged real model, or the lab's base model if it is not installed."""
    from helpers import models

    try:
        model, tok = models.load("real", name, device=device)
        return model, tok, name
    except Exception as e:  # noqa: BLE001 -- any reason the package is missing: fall back, and say so
        print(f"{name} not available ({type(e).__name__}: {e}); using the lab's base model")
        from helpers.lab import zoo

        model, tok = zoo.load("base")
        return model, tok, "lab:base"


def committee_paths(args) -> None:
    """``--committee``: ``response_logprobs`` with the full logits, then with the head at the scored positions only."""
    from helpers.committee import response_logprobs

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tok, name = load(args.model, device)
    lines = (ROOT / "data" / "public_standin.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[: args.n]]
    response_logprobs(model, tok, rows[:2], args.batch_size)  # warm-up, untimed
    table, means, kept = [], {}, loglik.HEAD_TYPES
    for path, types in [("full logits", frozenset()), ("head at the scored positions", kept)]:
        loglik.HEAD_TYPES = types  # the reference: no architecture takes the head-only path
        row = {"path": path}
        try:
            with measured(row):
                means[path] = response_logprobs(model, tok, rows, args.batch_size)
        finally:
            loglik.HEAD_TYPES = kept
        table.append(row)
    gap = max(abs(a - b) for a, b in zip(*means.values()))
    for row in table:
        row["vs_full"] = round(row["seconds"] / table[0]["seconds"], 2)
        row["max_abs_diff"] = f"{gap:.1e}"
    report(table, ["path", "seconds", "vs_full", "max_abs_diff", "peak_gib"], args.json, model=name, device=device,
           n_rows=len(rows), batch_size=args.batch_size, head_only_type=model.config.model_type in kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n", type=int, default=40, help="general-set items")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/scoring.json"))
    parser.add_argument("--committee", action="store_true", help="notebook 03's likelihood scorer, two ways")
    parser.add_argument("--device", default=None, help="--committee: cpu or cuda (default: cuda when there is one)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.committee:
        return committee_paths(args)
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
