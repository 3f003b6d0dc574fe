"""Experiment: which training settings let `ours` learn the domain without forgetting (issue: the retention recipe)?

    python bench/retention_sweep.py [--run lab] [--configs NAME ...] [--json outputs/bench/retention_sweep.json]

Trains `ours` and `domain_only` (notebook 04's arms of the run) under each candidate setting of notebook 05 and
scores them, and the base, on a **validation split**: fresh lab questions of every family (another seed than the
held-out set of notebooks 00/06), with every question that also occurs in that held-out set removed. The held-out
set is not read for scores, only to keep its questions out, so the settings are chosen without looking at the
numbers the README reports. A setting passes when, on validation, `ours` forgets at most 1 point of the base's
general accuracy and its domain accuracy is at most 2 points below `domain_only`'s under the same setting.

What stands for what: a practitioner would hold out a slice of their domain data and a general benchmark's
validation split (not its test split) and choose settings there in the same way.

Needs notebooks 00-04 for the run. Prints a table and writes JSON; about 100 s per setting on the 2-core CPU.
Adapters go to ``outputs/<run>-retention-<setting>/`` (the run's own arms are untouched).

The real track (issue 22): ``--real`` takes a real run (notebooks 01-05 done, e.g. ``smollm2-gpu``) and scores on the
shipped validation splits, ``data/general_val.jsonl`` and ``data/clinical_val.jsonl`` (``--val-domain
data/velish_val.jsonl`` for Velish), with lenient answers, never reading the held-out files. Candidates are
``REAL_CONFIGS``; they are the rule written down in ``docs/notes/gpu-runs.md`` before any sweep. ``choose`` picks
the winner: among the settings that pass, the highest domain accuracy wins; if none passes, the smallest sum of the
two shortfalls wins, flagged as not passing. The winner is then run with three seeds on the held-out sets, outside
this script (notebooks 04-06; ``tools/device_real_track.sh retention`` does both).

    python bench/retention_sweep.py --real --run smollm2-gpu [--configs NAME ...]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report  # noqa: E402

from helpers import eval_models, evaluation, heldout, mixing, scoring, models, qlora_configs as qc  # noqa: E402
from helpers import qlora_training as qt  # noqa: E402
from helpers import speed as sp  # noqa: E402
from helpers.runs import read_json, stage_dir, write_json  # noqa: E402

# Changes to the run's notebook-05 settings (`default` changes nothing): the learning rate, the LoRA rank, the
# target modules, the steps, and which embedding rows train (all, only the domain tokens', none).
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]  # LoRA on the attention projections only (no MLP)
CONFIGS = {
    "default": {},
    "domain_rows": {"embedding_rows": "domain"},
    "domain_rows_lr_2e-3": {"embedding_rows": "domain", "learning_rate": 0.002},
    "domain_rows_lr_4e-3": {"embedding_rows": "domain", "learning_rate": 0.004},
    "domain_rows_rank_4": {"embedding_rows": "domain", "lora_rank": 4, "lora_alpha": 8},
    "domain_rows_lr_6e-3": {"embedding_rows": "domain", "learning_rate": 0.006},
    "domain_rows_attention_only": {"embedding_rows": "domain", "target_modules": ATTENTION},
    "domain_rows_attention_only_lr_4e-3": {"embedding_rows": "domain", "target_modules": ATTENTION,
                                           "learning_rate": 0.004},
    "domain_rows_steps_600": {"embedding_rows": "domain", "max_steps": 600},
    "domain_rows_lr_4e-3_steps_600": {"embedding_rows": "domain", "learning_rate": 0.004, "max_steps": 600},
    "lr_2e-3": {"learning_rate": 0.002},
    "lr_1e-3": {"learning_rate": 0.001},
    "rank_4": {"lora_rank": 4, "lora_alpha": 8},
    "attention_only": {"target_modules": ATTENTION},
    "embeddings_off": {"train_embeddings": False},
}
# The real track's candidates (issue 22, docs/notes/gpu-runs.md): changes to the run's notebook-05 settings
REAL_CONFIGS = {
    "default": {},
    "lr_2e-4": {"learning_rate": 0.0002},
    "lr_1e-4": {"learning_rate": 0.0001},
    "rank_4": {"lora_rank": 4, "lora_alpha": 8},
    "attention_only": {"target_modules": ATTENTION},
    "epochs_8": {"domain_epochs": 8},
    "epochs_16": {"domain_epochs": 16},
    "epochs_16_lr_1e-4": {"domain_epochs": 16, "learning_rate": 0.0001},
}
# The validation headline's smallest family (added 2026-11-29 after the clinical sweep, whose headline still counted
# two families of two questions each, and before any Velish sweep; docs/notes/gpu-runs.md)
MIN_FAMILY_QUESTIONS = 10
VALIDATION_SEED_OFFSET = 500  # the validation questions' seed: the held-out set's eval_seed + this


def validation_sets(n_per_family: int, eval_seed: int) -> tuple[dict[str, list], dict[str, int]]:
    """Fresh questions of every family, minus those in the held-out set of notebooks 00/06; and how many were
    dropped per set for being in it."""
    test = heldout.heldout_sets(n_per_family, eval_seed)
    sets = heldout.heldout_sets(n_per_family, eval_seed + VALIDATION_SEED_OFFSET)
    out, dropped = {}, {}
    for name, items in sets.items():
        seen = {e.instruction for e in test[name]}
        out[name] = [e for e in items if e.instruction not in seen]
        dropped[name] = len(items) - len(out[name])
    return out, dropped


def passes(row: dict) -> bool:
    """The rule: on validation, ``ours`` forgets at most 1 point of the base's general accuracy and its domain
    accuracy is at most 2 points below ``domain_only``'s under the same setting. On the real track
    (``domain_learnt`` in the row), ``domain_only`` must also have learnt the domain (``scoring.CHANCE_MARGIN``
    above 0): trailing an arm that learnt nothing proves nothing."""
    return row["forgetting_pts"] <= 1.0 and row["domain_gap_pts"] <= 2.0 and row.get("domain_learnt", True)


def choose(rows: list[dict]) -> tuple[str, bool]:
    """The winning setting and whether it passes: the passing setting with the highest domain accuracy for
    ``ours``, else the one whose two shortfalls (points of forgetting above 1, of domain gap above 2) sum least."""
    passing = [r for r in rows if passes(r)]
    if passing:
        return max(passing, key=lambda r: r["ours_domain"])["setting"], True
    short = lambda r: max(0.0, r["forgetting_pts"] - 1.0) + max(0.0, r["domain_gap_pts"] - 2.0)  # noqa: E731
    return min(rows, key=short)["setting"], False


def sweep_row(name: str, changes: dict, scores: dict, base_general: float, **extra) -> dict:
    """One setting's row from its two arms' validation scores (``extra``: fields ``passes`` reads too)."""
    g, d = scores["ours"]["general_accuracy"], scores["ours"]["domain_accuracy"]
    d_only = scores["domain_only"]["domain_accuracy"]
    row = {"setting": name, "changes": changes, "ours_general": round(g, 3), "ours_domain": round(d, 3),
           "domain_only_domain": round(d_only, 3),
           "domain_only_general": round(scores["domain_only"]["general_accuracy"], 3),
           "forgetting_pts": round(100 * (base_general - g), 1), "domain_gap_pts": round(100 * (d_only - d), 1),
           **extra}
    return row | {"passes": passes(row)}


def rounded(per_family: dict) -> dict:
    """Per-family accuracies to 3 decimals, for the JSON."""
    return {f: round(a, 3) for f, a in per_family.items()}


def real_row(name: str, changes: dict, scores: dict, base_general: float) -> dict:
    """``sweep_row`` for the real track, where ``domain_only`` must have learnt the domain for a setting to pass."""
    return sweep_row(name, changes, scores, base_general,
                     domain_learnt=scores["domain_only"]["domain_accuracy"] >= scoring.CHANCE_MARGIN)


def score_adapter(base_path: str, setup, adapter, sets: dict, options: dict) -> dict:
    """Validation accuracies of the base (``adapter`` None) or one adapter (a job for ``helpers.workers``), with the
    general families' own (``per_family``)."""
    model, tok = eval_models.load_for_eval(base_path, setup, adapter)
    s = scoring.score_sets(model, tok, sets, **options)
    return {k: s[k] for k in ("general_accuracy", "domain_accuracy", "per_family")}


def family_sizes(sets: dict) -> dict[str, int]:
    """Validation questions per general family."""
    return dict(sorted(Counter(e.family for e in sets["general"]).items()))


def headlines(scored: list[dict], sets: dict, min_questions: int = MIN_FAMILY_QUESTIONS) -> tuple[list[dict], dict]:
    """Notebook 06's headline on validation: each model's general accuracy over the families where the base (first
    of ``scored``) scores above chance (``scoring.informative_families``), not over every family; a family the base
    cannot answer has nothing to forget and would dilute the forgetting the rule limits. Families with fewer than
    ``min_questions`` validation questions are left out too: the headline is a mean over families, and one question
    of a two-question family would move it by more than the rule's 1-point limit. Returns the models' scores and
    those families."""
    families = scoring.informative_families(scored[0], sets)
    size = family_sizes(sets)
    families = {measure: [f for f in names if size.get(f, 0) >= min_questions] for measure, names in families.items()}
    return [scoring.headline(s, families) for s in scored], families


def real(args) -> None:
    """``--real``: the sweep on a real run, scored on the shipped validation splits (lenient answers). The trainings
    run side by side as notebook 05's do (``helpers.workers``: as many as fit on the GPUs; one at a time on a CPU),
    then the adapters are scored side by side."""
    from helpers import workers

    trained = qt.trained(args.run)
    hp0, setup = {"embedding_rows": "all", **trained["hp"]}, evaluation.eval_setup(trained["setup"])
    base_path = models.resolve(args.run, trained["model"])
    arms = mixing.load_arms(args.run)
    sets = heldout.eval_sets(args.val_general, args.val_domain)
    print(f"validation: {len(sets['general'])} general ({args.val_general}), {len(sets['domain'])} domain "
          f"({args.val_domain}) questions; the held-out files are not read", flush=True)
    options = {"max_new_tokens": args.max_new_tokens, "match": "lenient", "mc": False}
    configs = args.configs or list(REAL_CONFIGS)
    recipes = {name: qc.from_parameters(setup, base_path, {**hp0, **REAL_CONFIGS[name]}) for name in configs}
    # the longest trainings first (more domain passes; a mixed arm before domain_only), so that the short ones fill
    # the slots they leave instead of one long training starting last
    passes_of = lambda name: REAL_CONFIGS[name].get("domain_epochs", hp0.get("domain_epochs", 0))  # noqa: E731
    order = sorted(((name, arm) for name in configs for arm in ("ours", "domain_only")),
                   key=lambda job: (-passes_of(job[0]), job[1] != "ours"))
    jobs = [(f"{name} {arm}", (f"{args.run}-retention-{name}", arm, arms[arm], base_path, setup, recipes[name],
                               args.seed), {"progress": False}) for name, arm in order]
    plan, budget = sp.side_by_side(len(jobs), args.workers, base_path, setup, hp0)  # as notebook 05 plans them
    for _, _, kwargs in jobs:
        kwargs["memory_budget_gib"] = budget  # each training's share of a GPU it shares
    print(f"{len(jobs)} trainings, {plan.workers} at a time ({plan.reason})", flush=True)
    done = workers.run(qt.train_arm, jobs, plan, on_done=lambda name, m, where: print(
        f"{name}: {m['steps']} steps in {m['train_seconds']} s on {where}", flush=True))
    adapters = [None] + [evaluation.adapter_path(job[0], job[1], m) for (_, job, _), m in zip(jobs, done)]
    score_jobs = [(str(a), (base_path, setup, a, sets, options), {}) for a in adapters]
    scored, families = headlines(workers.run(score_adapter, score_jobs,
                                             workers.plan(len(score_jobs), args.workers, setup.device)), sets)
    base, by_job = scored[0], dict(zip([label for label, _, _ in jobs], scored[1:]))
    print(f"general accuracy over the base's informative families: {', '.join(families['match'])}", flush=True)
    # the headline is a mean over families, so a family of two questions weighs as much as one of fifty: each
    # family's size and every model's per-family accuracy are kept, to read a setting's verdict by
    meta = dict(run=args.run, seed=args.seed, hp=hp0, base_general=round(base["general_accuracy"], 3),
                base_per_family=rounded(base["per_family"]),
                validation={"general": args.val_general, "domain": args.val_domain,
                            "sizes": {k: len(v) for k, v in sets.items()}, "family_sizes": family_sizes(sets),
                            "informative_families": families},
                workers=plan.as_dict())
    rows = [real_row(name, REAL_CONFIGS[name], {arm: by_job[f"{name} {arm}"] for arm in ("domain_only", "ours")},
                     base["general_accuracy"])
            | {f"{arm}_per_family": rounded(by_job[f"{name} {arm}"]["per_family"]) for arm in ("domain_only", "ours")}
            for name in configs]
    winner, ok = choose(rows)
    print(f"chosen: {winner} ({'passes the rule' if ok else 'no setting passes; the closest'})")
    report(rows, ["setting", "ours_general", "forgetting_pts", "ours_domain", "domain_only_domain", "domain_gap_pts",
                  "domain_only_general", "domain_learnt", "passes"], args.json, **meta, chosen=winner, chosen_passes=ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="lab")
    parser.add_argument("--real", action="store_true", help="a real run, scored on the shipped validation splits")
    parser.add_argument("--val-general", default="data/general_val.jsonl")
    parser.add_argument("--val-domain", default="data/clinical_val.jsonl")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--workers", type=int, default=0, help="--real: processes side by side (0: as notebook 05)")
    parser.add_argument("--configs", nargs="*", choices=[*CONFIGS, *REAL_CONFIGS])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/retention_sweep.json"))
    args = parser.parse_args()
    if args.real:
        return real(args)
    args.configs = args.configs or list(CONFIGS)
    lab = read_json(stage_dir(args.run, "00_lab", create=False) / "manifest.json")["params"]
    trained = qt.trained(args.run)
    hp0, setup = {"embedding_rows": "all", **trained["hp"]}, evaluation.eval_setup(trained["setup"])
    base_path = models.resolve(args.run, trained["model"])
    arms = mixing.load_arms(args.run)
    sets, dropped = validation_sets(lab["n_eval_per_family"], lab["eval_seed"])
    print(f"validation: {len(sets['general'])} general, {len(sets['domain'])} domain questions "
          f"({dropped} dropped for being in the held-out set)")
    model, tok = eval_models.load_for_eval(base_path, setup)
    base = scoring.score_sets(model, tok, sets, mc=False)
    columns = ["setting", "ours_general", "forgetting_pts", "ours_domain", "domain_only_domain", "domain_gap_pts",
               "domain_only_general", "passes"]
    meta = dict(run=args.run, seed=args.seed, hp=hp0, base_general=round(base["general_accuracy"], 3),
                validation_sizes={k: len(v) for k, v in sets.items()}, dropped_for_heldout=dropped,
                validation_seed=lab["eval_seed"] + VALIDATION_SEED_OFFSET)
    rows = []
    for name in args.configs:
        recipe = qc.from_parameters(setup, base_path, {**hp0, **CONFIGS[name]})
        run = f"{args.run}-retention-{name}"
        row = {"setting": name, "changes": CONFIGS[name]}
        scores = {}
        for arm in ("domain_only", "ours"):
            m = qt.train_arm(run, arm, arms[arm], base_path, setup, recipe, args.seed, progress=False)
            model, tok = eval_models.load_for_eval(base_path, setup, evaluation.adapter_path(run, arm, m))
            scores[arm] = scoring.score_sets(model, tok, sets, mc=False)
            row[f"{arm}_train_s"] = m["train_seconds"]
        row |= sweep_row(name, CONFIGS[name], scores, base["general_accuracy"])
        rows.append(row)
        print(f"{name}: ours {row['ours_general']:.3f}/{row['ours_domain']:.3f}, domain_only domain "
              f"{row['domain_only_domain']:.3f}, forgetting {row['forgetting_pts']} points, domain gap "
              f"{row['domain_gap_pts']} points, passes {row['passes']}", flush=True)
        write_json(args.json, {**meta, "rows": rows})  # after every setting: an interrupted sweep keeps its rows
    report(rows, columns, args.json, **meta)


if __name__ == "__main__":
    main()
