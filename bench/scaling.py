"""Benchmark: the real track's stages on one GPU and on several of one machine, one after another in one run (issue 23).

    python bench/scaling.py --run smollm2-gpu --gpus 1 2             # on a 2-GPU machine, after a run's 01-03
    python bench/scaling.py --run smollm2-gpu --gpus 1 2 --only 02 ddp

Each measurement runs the pipeline (``python -m helpers.pipeline``, the preset ``--preset``) in a run of its own,
``scale-<what>-<N>gpu``, on a copy of ``--run``'s earlier stages, with ``CUDA_VISIBLE_DEVICES`` naming the first N
GPUs and empty compile caches of its own (torch inductor's and Triton's: a run that found them filled by the one
before would skip the compile the first paid); the stage's wall time is the pipeline's own (``timings.json``).
Measurements:

* ``02``: notebook 02 (every generator, ``gen_workers: 0``: one worker per GPU taking shards in turn); its rows must
  be the same on any number of GPUs (the rows that differ are counted, per generator). ``--gpus 1 1 2`` runs one
  GPU twice: do its rows even repeat? ``--instructions N`` asks that on a smaller job, and
  ``--inductor-deterministic`` with torch inductor's deterministic mode, which skips the on-device tuning that can
  pick other kernels, and so other numerics, in another process (pytorch/pytorch#163589, #189121); ``--env
  KEY=VALUE`` with any other setting of the environment, such as ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (cuBLAS's
  reproducible workspace when streams or CUDA graphs share a handle, as torch's reproducibility notes advise);
  ``--param KEY=VALUE`` with a pipeline parameter for every run whose stages read it, such as
  ``compile_decode=false`` (an uncompiled decode: on one GPU the compiled one did not repeat its rows,
  docs/bench/h200x2-determinism/) or, for 06, ``eval_workers=10``.
* ``05``: notebook 05, the preset's trainings (every arm and seed, ``train_workers: 0``: side by side, spread over
  the GPUs) on 04's mixes made once; each training's final loss is compared with the first run's (GPU training
  is not bit-reproducible, so the largest difference is reported, not a yes or no).
* ``06``: notebook 06 on adapters trained once for it (04, then 05 for ``--steps-06`` steps on every GPU: how well
  they are trained does not matter here); its scores must be the same on any number of GPUs.
* ``ddp``: notebook 05 for one arm and seed (``ours``, seed 0, ``--steps`` steps) with ``gpus_per_arm`` N: trained
  tokens per second and the loss curve, at each ``--batches`` (rows per step, split among the ranks).

Writes JSON (``--json``) after each measurement, so a run cut short keeps what it finished.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from helpers.runs import run_dir  # noqa: E402


def pipeline(preset: str, gpus: int, run: str, stages: list[str], params: dict, deterministic: bool,
             extra_env: dict | None = None) -> dict:
    """Run ``stages`` of ``run`` on the first ``gpus`` GPUs (``deterministic``: in inductor's deterministic mode;
    ``extra_env``: more environment variables); the pipeline's timings of those stages."""
    caches = Path(tempfile.mkdtemp(prefix=f"compile-{run}-"))  # empty: every run compiles as a fresh machine does
    env = {**os.environ, **(extra_env or {}), "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(gpus)),
           "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"), "TRITON_CACHE_DIR": str(caches / "triton")}
    if deterministic:  # torch's own switch: inductor skips the on-device benchmarking that can change numerics
        env["TORCHINDUCTOR_DETERMINISTIC"] = "1"
    command = [sys.executable, "-m", "helpers.pipeline", "run", "--preset", preset, "--only", *stages,
               "-p", f"run_name={run}"] + [a for k, v in params.items() for a in ("-p", f"{k}={json.dumps(v)}")]
    print("$", " ".join(command), f"(GPUs: {env['CUDA_VISIBLE_DEVICES']})", flush=True)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, cwd=ROOT)
    timings = json.loads((run_dir(run) / "timings.json").read_text())
    return {"wall_seconds": round(time.perf_counter() - start, 1),
            "stage_seconds": {k: v for k, v in timings.items() if k[:2] in stages}}


def json_or_text(value: str):
    """A ``--param`` value: JSON (false, 256, [0, 1]) when it parses, else the text itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def fresh(run: str, source: str, stages: list[str], replace: bool) -> str:
    """A new run ``run`` holding a copy of ``source``'s ``stages`` (folder name prefixes such as "01"). A run of that
    name from an earlier measurement is deleted only with ``replace`` (``--replace``); else this stops, naming it."""
    target = run_dir(run)
    if target.exists():
        if not replace:
            raise SystemExit(f"{target} exists, from an earlier run of this bench: move it away, or pass --replace to "
                             "delete it and the bench's other earlier runs")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for folder in sorted(run_dir(source).iterdir()):
        if folder.is_dir() and folder.name[:2] in stages:
            shutil.copytree(folder, target / folder.name)
    return run


def keep_instructions(run: str, n: int) -> None:
    """Cut the copied 01's instructions to the first ``n`` (``--instructions``): a smaller 02 that still asks
    whether its rows repeat. The copy's manifest is left as it was, so notebook 02 takes the cut file as 01's."""
    path = run_dir(run) / "01_reconstruct" / "instructions.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:n]))


# the stages each measurement runs
MEASURED_STAGES = {"02": ["02"], "05": ["04", "05"], "06": ["04", "05", "06"], "ddp": ["04", "05"]}


def declared_by_stage() -> dict[str, set[str]]:
    """Each notebook's parameter names, by its number ("02")."""
    from helpers.pipeline import discover, notebook_parameters

    return {nb.stem[:2]: set(notebook_parameters(nb)) for nb in discover(ROOT / "notebooks")}


def read_by(stages: list[str], params: dict, declared: dict[str, set[str]]) -> dict:
    """The ``--param`` pairs that ``stages`` read. A parameter of other notebooks only is left out of the run (06's
    ``eval_workers`` is not given to the 04-05 run that trains 06's adapters: the pipeline refuses a parameter no
    selected notebook reads); one that no notebook has stays, so the pipeline names it."""
    known = set().union(*declared.values())
    return {k: v for k, v in params.items() if k not in known or any(k in declared.get(s, set()) for s in stages)}


def unread(measurements: list[str], params: dict, declared: dict[str, set[str]]) -> list[str]:
    """The ``--param`` names that no stage of ``measurements`` reads (they would change nothing: refused)."""
    stages = [s for m in measurements for s in MEASURED_STAGES[m]]
    known = set().union(*declared.values())
    return [k for k in params if k in known and not any(k in declared.get(s, set()) for s in stages)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def differing(a: Path, b: Path) -> tuple[int, dict]:
    """Two runs' generations compared row by row: the rows that differ (plus any difference in length), and per
    generator the rows that differ and how many rows it has."""
    left, right = a.read_text().splitlines(), b.read_text().splitlines()
    by_model: dict[str, dict] = {}
    for x, y in zip(left, right):
        counts = by_model.setdefault(json.loads(x)["model"], {"differing": 0, "rows": 0})
        counts["differing"] += x != y
        counts["rows"] += 1
    return sum(c["differing"] for c in by_model.values()) + abs(len(left) - len(right)), by_model


def scores(run: str) -> dict:
    """Notebook 06's headline numbers per model, from its results."""
    results = json.loads((run_dir(run) / "06_evaluation" / "results.json").read_text())
    return {k: results[k] for k in ("base", "arms")}


def final_losses(run: str) -> dict[str, float]:
    """Notebook 05's final training loss of each arm and seed ("ours/0"), from its metrics."""
    arms = json.loads((run_dir(run) / "05_training" / "metrics.json").read_text())["arms"]
    return {f"{arm}/{m['seed']}": m["final_loss"] for arm, runs in arms.items() for m in runs}


def counts(gpus: list[int]) -> list[tuple[int, str, str]]:
    """``(GPUs, run-name suffix, label)`` for each of ``--gpus`` in order; a count given twice gets a suffix and a
    label of its own for each run, so that no run replaces another."""
    return [(n, f"{n}gpu" + (f"-{i}" if gpus.count(n) > 1 else ""), f"{n}" + (f" (run {i + 1})" if gpus.count(n) > 1
                                                                            else "")) for i, n in enumerate(gpus)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="smollm2-gpu", help="the run whose 01-03 the measurements start from")
    parser.add_argument("--preset", default="presets/smollm2-gpu.yaml")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2],
                        help="GPU counts, measured in this order; one may repeat (1 1 2: does one GPU repeat itself?)")
    parser.add_argument("--only", nargs="+", default=["02", "ddp", "06"], choices=["02", "05", "ddp", "06"])
    parser.add_argument("--steps", type=int, default=80, help="training steps of each ddp measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64], help="rows per step (ddp)")
    parser.add_argument("--steps-06", type=int, default=30, help="training steps of the adapters 06 scores")
    parser.add_argument("--json", default="outputs/bench/scaling.json")
    parser.add_argument("--replace", action="store_true", help="delete this bench's runs from an earlier call")
    parser.add_argument("--instructions", type=int, default=0, help="02: only the first N of 01's instructions")
    parser.add_argument("--inductor-deterministic", action="store_true",
                        help="every run with TORCHINDUCTOR_DETERMINISTIC=1 (inductor skips numerics-changing tuning)")
    parser.add_argument("--env", nargs="+", default=[], metavar="KEY=VALUE",
                        help="every run with these environment variables, e.g. CUBLAS_WORKSPACE_CONFIG=:4096:8")
    parser.add_argument("--param", nargs="+", default=[], metavar="KEY=VALUE",
                        help="every run whose stages read them gets these pipeline parameters (VALUE as JSON, "
                             "else text), e.g. compile_decode=false, eval_workers=10")
    args = parser.parse_args()
    bad = [e for e in args.env + args.param if "=" not in e or not e.split("=", 1)[0]]
    if bad:
        parser.error(f"--env and --param take KEY=VALUE pairs, got {bad}")
    extra_env = dict(e.split("=", 1) for e in args.env)
    extra_params = {k: json_or_text(v) for k, v in (e.split("=", 1) for e in args.param)}
    declared = declared_by_stage()
    if ignored := unread(args.only, extra_params, declared):
        parser.error(f"--param {', '.join(ignored)}: no stage of the measurements {args.only} reads it")

    def run_stages(gpus: int, run: str, stages: list[str], params: dict) -> dict:
        return pipeline(args.preset, gpus, run, stages, {**read_by(stages, extra_params, declared), **params},
                        args.inductor_deterministic, extra_env)

    def copy(run: str, source: str, stages: list[str]) -> str:
        return fresh(run, source, stages, args.replace)

    out = {"gpus": args.gpus, "run": args.run, "preset": args.preset, "instructions": args.instructions or "all",
           "inductor_deterministic": args.inductor_deterministic, "env": extra_env, "params": extra_params,
           "measurements": {}}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(what: str, result) -> None:
        out["measurements"][what] = result
        path.write_text(json.dumps(out, indent=2) + "\n")

    one = args.gpus[0]
    for what in args.only:
        if what == "02":
            got, first = {}, None
            for n, suffix, label in counts(args.gpus):  # "--gpus 1 1 2": does one GPU even repeat itself?
                run = copy(f"scale-02-{suffix}", args.run, ["01"])
                if args.instructions:
                    keep_instructions(run, args.instructions)
                got[label] = run_stages(n, run, ["02"], {"gen_workers": 0})
                rows = run_dir(run) / "02_generation" / "generations.jsonl"
                first = first or rows
                total, by_model = differing(first, rows)
                got[label].update(sha256=digest(rows), rows_differing_from_first=total, differing_by_model=by_model)
                save("02", got)
        elif what == "05":
            mixed = copy("scale-05-data", args.run, ["01", "02", "03"])
            run_stages(one, mixed, ["04"], {})
            got, first = {}, None
            for n, suffix, label in counts(args.gpus):
                run = copy(f"scale-05-{suffix}", mixed, ["01", "02", "03", "04"])
                got[label] = run_stages(n, run, ["05"], {"train_workers": 0})
                losses = final_losses(run)
                first = first or losses
                got[label].update(final_losses=losses, trainings=len(losses),
                                  largest_loss_difference_from_first=max(
                                      (abs(v - first[k]) for k, v in losses.items() if k in first), default=None))
                save("05", got)
        elif what == "06":
            trained = copy("scale-06-trained", args.run, ["01", "02", "03"])
            run_stages(max(args.gpus), trained, ["04", "05"], {"budget": "steps", "max_steps": args.steps_06})
            got, first = {}, None
            for n, suffix, label in counts(args.gpus):
                run = copy(f"scale-06-{suffix}", trained, ["01", "02", "03", "04", "05"])
                got[label] = run_stages(n, run, ["06"], {})
                first = first or run
                got[label]["same_scores_as_first"] = scores(run) == scores(first)
                save("06", got)
        else:
            got = out["measurements"].get("ddp", {})
            base = copy("scale-ddp-data", args.run, ["01", "02", "03"])
            run_stages(one, base, ["04"], {})
            for batch in args.batches:
                for n, suffix, label in counts(args.gpus):
                    run = copy(f"scale-ddp-b{batch}-{suffix}", base, ["01", "02", "03", "04"])
                    result = run_stages(n, run, ["05"], {
                        "arms": ["ours"], "seeds": [0], "gpus_per_arm": n, "budget": "steps",
                        "max_steps": args.steps, "train_batch_size": batch})
                    m = json.loads((run_dir(run) / "05_training" / "arms" / "ours" / "seed0" / "metrics.json")
                                   .read_text())
                    result.update({k: m[k] for k in ("train_seconds", "tokens_seen", "steps", "final_loss",
                                                     "loss_curve", "ranks", "batch_per_rank")},
                                  tokens_per_second=round(m["tokens_seen"] / m["train_seconds"], 1),
                                  speed=m["speed"])
                    got[f"batch {batch}, {label} GPU(s)"] = result
                    save("ddp", got)

    print(f"\n{'measurement':<30} {'wall s':>8} {'stage s':>8} {'speed-up':>9}  output")
    for what, got in out["measurements"].items():
        first = {}
        for label, r in got.items():
            stage = sum(r["stage_seconds"].values())
            if what == "ddp":  # tokens per second against the same batch on the first GPU count
                batch = label.split(",")[0]
                first.setdefault(batch, r["tokens_per_second"])
                ratio, note = r["tokens_per_second"] / first[batch], (
                    f"{r['tokens_per_second']:,.0f} tok/s, final loss {r['final_loss']:.3f}")
            else:
                first.setdefault(what, stage)
                ratio = first[what] / stage
                note = {"02": lambda: f"rows differing: {r['rows_differing_from_first']}",
                        "05": lambda: (f"{r['trainings']} trainings, final losses within "
                                       f"{r['largest_loss_difference_from_first']:.4f} of the first run's"),
                        "06": lambda: f"same scores: {r['same_scores_as_first']}"}[what]()
            print(f"{what + ' ' + str(label):<30} {r['wall_seconds']:>8.1f} {stage:>8.1f} {ratio:>8.2f}x  {note}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
