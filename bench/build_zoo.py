"""Benchmark: build the whole lab zoo (tokenizer + every model) from scratch, and compare with the shipped files.

    python bench/build_zoo.py [--out DIR] [--json outputs/bench/build_zoo.json]

Prints a table (model, parameters, steps, seconds, final loss, identical to the shipped checkpoint?) and writes
the same as JSON. The issue's target: the whole zoo in <= 10 min on the 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from helpers.lab import zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to build (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/build_zoo.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        timings = zoo.build_zoo(out, progress=False)
        total = time.perf_counter() - t0
        rows = []
        for name in zoo.ZOO:
            built = json.loads((out / name / "recipe.json").read_text())
            shipped = zoo.recipe_info(name)
            digest = hashlib.sha256((out / name / "model.safetensors").read_bytes()).hexdigest()
            rows.append({"model": name, "params": built["n_params"], "steps": built["recipe"]["steps"],
                         "seconds": round(timings[name], 1), "final_loss": built["final_loss"],
                         "same_weights_as_shipped": digest == shipped["files"]["model.safetensors"]})
    result = {"total_seconds": round(total, 1), "tokenizer_seconds": round(timings["tokenizer"], 2), "models": rows,
              "machine": {"cpus": os.cpu_count(), "torch_threads": zoo.BUILD_THREADS, "python": platform.python_version(),
                          "torch": torch.__version__, "processor": platform.processor() or platform.machine()}}
    print(f"{'model':<12} {'params':>9} {'steps':>6} {'seconds':>8} {'final loss':>10}  same as shipped")
    for r in rows:
        print(f"{r['model']:<12} {r['params']:>9,} {r['steps']:>6} {r['seconds']:>8} {r['final_loss']:>10}  "
              f"{r['same_weights_as_shipped']}")
    print(f"{'total':<12} {'':>9} {'':>6} {result['total_seconds']:>8}   (target: <= 600 s on 2 cores)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
