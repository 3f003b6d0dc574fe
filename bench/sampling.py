"""Benchmark: top-p sampling over a large vocabulary, transformers' sampler beside ``generate.NucleusSampler``.

    python bench/sampling.py [--model gemma-3-270m] [--n 42] [--seeds 1 2] [--json outputs/bench/sampling.json]

gemma-3-270m (262,144 tokens; installed from the package registry) answers the first ``--n`` instructions of
``data/general_eval.jsonl`` in its few-shot frame, as notebook 02 runs it on the CPU real track (48 new tokens,
temperature 0.7, top-p 0.95, one batch), once per seed with each sampler, in one process. Prints seconds, the
ratio to transformers' sampler, and how many answers finished and how long they were. The two draw from the same
distribution, but with different random numbers, so the answers differ. About 4 minutes on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measured, report  # noqa: E402

from helpers import generate as g  # noqa: E402
from helpers import writers  # noqa: E402
from helpers.chat import frame_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--n", type=int, default=42)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/sampling.json"))
    args = parser.parse_args()
    lines = (ROOT / "data" / "general_eval.jsonl").read_text().splitlines()[: args.n]
    writer = writers.load("bench", args.model, "hf")
    frame = frame_for(writer.tokenizer, "auto")
    prompts = [frame.render(writer.tokenizer, json.loads(line)["instruction"]) for line in lines]
    options = dict(max_new_tokens=48, batch_size=len(prompts), do_sample=True, temperature=0.7, top_p=0.95,
                   stop_strings=frame.stop_strings)
    g.generate(writer.model, writer.tokenizer, prompts[:2], **{**options, "max_new_tokens": 2})  # warm-up, untimed
    rows, floor = [], g.NUCLEUS_MIN_VOCAB
    for sampler, min_vocab in [("transformers' sampler", 10**12), ("NucleusSampler", floor)]:
        g.NUCLEUS_MIN_VOCAB = min_vocab
        for seed in args.seeds:
            row = {"sampler": sampler, "seed": seed}
            with measured(row):
                out = g.generate(writer.model, writer.tokenizer, prompts, **options, seed=seed)
            row["finished"] = sum(o["finished"] for o in out)
            row["new_tokens"] = sum(o["new_tokens"] for o in out)
            rows.append(row)
    g.NUCLEUS_MIN_VOCAB = floor
    base = sum(r["seconds"] for r in rows if r["sampler"] != "NucleusSampler")
    for r in rows:
        r["vs_transformers"] = round(r["seconds"] * len(args.seeds) / base, 2)
    report(rows, ["sampler", "seed", "seconds", "vs_transformers", "finished", "new_tokens"], args.json,
           model=args.model, n_prompts=len(prompts), vocab=g._vocab_size(writer.model), **{
               k: v for k, v in options.items() if k != "stop_strings"})


if __name__ == "__main__":
    main()
