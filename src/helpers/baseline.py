"""A model's scores on the shipped sets, from the command line (no training, no run):

    python -m helpers.baseline smollm2-135m-instruct [--n-per-family N] [--max-new-tokens 48]
"""

from __future__ import annotations

import statistics

from .heldout import eval_sets, per_family_sample
from .loglik import multiple_choice
from .runs import write_json
from .scoring import CHANCE_MARGIN, match_outputs
from .writers import HFWriter


def baseline(model_name: str, general: str = "data/general_eval.jsonl", domain: str = "data/clinical_eval.jsonl",
             *, max_new_tokens: int = 48, n_per_family: int = 0, run_name: str = "lab", progress: bool = True) -> dict:
    """Every scorer on both sets for one model, per family: strict exact match, lenient match (the answer inside a
    sentence) and multiple choice (acc and acc_norm), greedy, with the model's chat template (or the few-shot frame
    for a model without one). Families at chance are marked: they cannot show forgetting."""
    from .chat import frame_for

    writer = HFWriter.load(run_name, model_name)
    model, tokenizer = writer.model, writer.tokenizer  # multiple choice reads the model's probabilities
    frame = frame_for(tokenizer)
    sets = {name: per_family_sample(items, n_per_family, 0) for name, items in eval_sets(general, domain).items()}
    out = {"model": model_name, "frame": frame.kind, "max_new_tokens": max_new_tokens, "sets": {}}
    for name, items in sets.items():
        prompts = [frame.render(tokenizer, e.instruction) for e in items]
        outs = writer.write(prompts, max_new_tokens=max_new_tokens, batch_size=32, stop_strings=frame.stop_strings,
                            progress=progress and f"{name}: answers")
        exact = [o["finished"] and o["text"].strip() == e.response.strip() for e, o in zip(items, outs)]
        lenient = match_outputs(items, [o["text"] for o in outs])["correct"]
        mc = multiple_choice(model, tokenizer, prompts, items, delimiter=frame.answer_prefix(),
                             progress=progress and f"{name}: multiple choice")
        rows = {}
        for family in sorted({e.family for e in items}):
            idx = [i for i, e in enumerate(items) if e.family == family]
            mean = lambda flags: sum(flags[i] for i in idx) / len(idx)  # noqa: E731
            chance = 1 / len(items[idx[0]].choices)
            rows[family] = {"n": len(idx), "exact": mean(exact), "lenient": mean(lenient), "mc": mean(mc["correct"]),
                            "mc_norm": mean(mc["correct_norm"]), "mc_chance": chance,
                            "at_chance": mean(mc["correct_norm"]) < chance + CHANCE_MARGIN}
        means = {k: statistics.fmean(r[k] for r in rows.values()) for k in ("exact", "lenient", "mc", "mc_norm")}
        every = max(1, len(items) // 10)
        samples = [{"family": e.family, "question": e.instruction, "expected": e.response, "output": o["text"]}
                   for e, o in list(zip(items, outs))[::every]]
        out["sets"][name] = {"per_family": rows, "mean": means, "samples": samples}
    return out


def format_baseline(result: dict) -> str:
    lines = [f"{result['model']} ({result['frame']} frame), greedy, max_new_tokens {result['max_new_tokens']}"]
    for name, s in result["sets"].items():
        lines += ["", f"{name:20s} {'n':>4s} {'exact':>7s} {'lenient':>8s} {'MC':>6s} {'MC norm':>8s}"]
        for family, r in s["per_family"].items():
            mark = "  (at chance)" if r["at_chance"] else ""
            lines.append(f"{family:20s} {r['n']:4d} {r['exact']:7.3f} {r['lenient']:8.3f} {r['mc']:6.3f} "
                         f"{r['mc_norm']:8.3f}{mark}")
        m = s["mean"]
        lines.append(f"{'mean over families':20s} {'':4s} {m['exact']:7.3f} {m['lenient']:8.3f} {m['mc']:6.3f} "
                     f"{m['mc_norm']:8.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.baseline MODEL [--n-per-family N]``: print a model's scores on the shipped general and
    clinical sets (every scorer) and write them to ``outputs/baselines/<model>.json``."""
    import argparse

    from .runs import outputs_root, safe_name

    parser = argparse.ArgumentParser(prog="python -m helpers.baseline", description=main.__doc__)
    parser.add_argument("model", help="a packaged model name (smollm2-135m-instruct, gemma-3-270m), a folder or a hub id")
    parser.add_argument("--n-per-family", type=int, default=0, help="questions per family (0: all)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    result = baseline(args.model, n_per_family=args.n_per_family, max_new_tokens=args.max_new_tokens)
    print(format_baseline(result))
    path = write_json(outputs_root() / "baselines" / f"{safe_name(args.model)}.json", result)
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
