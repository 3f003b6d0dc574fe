# python docs/bench/smollm2-gpu-sweep/tradeoff.py (from the repository root): the clinical general-share sweep from two runs on the same 01-03 outputs and seeds: domain_only and ours from
# docs/bench/smollm2-gpu-exposure (commit b471870), ours_g50 from docs/bench/smollm2-gpu-sweep (commit 2c79a3e),
# ours_g95 from docs/bench/smollm2-gpu-sweep/g95 (commit bb7cf61)
import json, sys
from pathlib import Path
sys.path.insert(0, "src")
from helpers import report
a = json.loads(Path("docs/bench/smollm2-gpu-exposure/results.json").read_text())
for path, arm in (("docs/bench/smollm2-gpu-sweep/results.json", "ours_g50"),
                  ("docs/bench/smollm2-gpu-sweep/g95/results.json", "ours_g95")):
    b = json.loads(Path(path).read_text())
    assert a["base"]["general_accuracy"] == b["base"]["general_accuracy"], f"{path}: its base differs from the exposure run's"
    a["arms"][arm] = b["arms"][arm]
sweep = {"domain_only": 0.0, "ours_g50": 0.5, "ours": 0.83, "ours_g95": 0.95}
report.plot_tradeoff(a, Path("docs/bench/smollm2-gpu-sweep/tradeoff.png"), sweep)
for arm, share, r in report.sweep_points(a, sweep):
    print(f"{arm:12s} {share:4.2f} general {r['general_accuracy']:.3f} ± {r.get('general_std', 0):.3f}"
          f"  domain {r['domain_accuracy']:.3f} ± {r.get('domain_std', 0):.3f}  KL {r.get('kl_drift', float('nan')):.3f}")
