"""The benchmarks' smoke modes (bench/generation.py, bench/training.py --smoke) run on the CPU and write their JSON:
the GPU numbers in docs/performance.md come from the same scripts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{Path(script).stem}.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, script, "--smoke", "--json", str(out), *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tok_per_s" in proc.stdout  # the table was printed
    return json.loads(out.read_text())


@pytest.mark.slow
def test_generation_bench_smoke(tmp_path):
    result = run("bench/generation.py", tmp_path)
    variants = [r["variant"] for r in result["rows"]]
    assert variants[0].startswith("helpers, before") and any(v.startswith("plain transformers") for v in variants)
    assert all(r["tok_per_s"] > 0 and r["new_tokens"] > 0 for r in result["rows"])
    assert result["rows"][0]["vs_first"] == 1.0 and result["machine"]["versions"]["transformers"]


@pytest.mark.slow
def test_training_bench_smoke(tmp_path):
    result = run("bench/training.py", tmp_path, "--models", str(tmp_path / "models"))
    rows = {r["variant"]: r for r in result["rows"]}
    assert {"helpers, before", "helpers, default", "plain loop"} <= set(rows)
    assert rows["helpers, before"]["checkpointed"] == "4/4" and rows["helpers, default"]["checkpointed"] == "0/4"
    assert all(r["tok_per_s"] > 0 for r in rows.values())
