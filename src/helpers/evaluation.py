"""Stage 06: how much each arm forgot, and how much domain it learnt.

The base model and every arm's adapter from stage 05 answer the held-out sets (``heldout``), greedily, scored by
``scoring`` (exact or lenient match, multiple choice and KL drift where they apply). Forgetting is the base model's
general accuracy minus the arm's. With several seeds, an arm's numbers are the mean over seeds, with the standard
deviation beside them. The figures and ``report.md`` are ``report``'s.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from . import report as reporting
from . import uncertainty
from . import workers as workers_service
from .datafiles import fingerprint, passes_of
from .eval_models import check_weights, load_for_eval, merged_for_scoring, worker_memory_on_gpus
from .kl_drift import base_logprobs_bytes
from .models import Setup, bnb_4bit_works
from .placement import release_gpu_memory
from .prompt_cache import PromptCache
from .runs import finish_stage, read_json, require, stage_dir, trouble, write_json
from .scoring import (ANSWER_BATCH, CHANCE_MARGIN, drift, drift_reference, general_answers, headline,
                      informative_families, score_sets)

STAGE = "06_evaluation"
# On a CPU, one process scores every adapter; it runs the base's side of the KL drift once when that fits in this
# much memory (presets/smollm2.yaml: at most 40 answers x 32 tokens x 49,152 x 4 bytes, 0.25 GB; its 06 went from
# 148.3 s and 148.9 s to 136.3 s and 136.2 s: docs/performance.md)
DRIFT_REFERENCE_BYTES = 2 << 30


def seen_masks(sets: dict[str, list], train_rows) -> dict[str, list[bool]]:
    """For each held-out instruction of each set, whether it also occurs verbatim as the (last) user turn of a
    training row.

    Small instruction spaces repeat: in the lab, the capital family has 80 possible questions and diagnosis and
    treatment 50 phrasings each, so data drawn from the model's own distribution (``ours``, ``oracle``) contains
    many held-out questions. Accuracy on the unseen ones (``subset_accuracy``) separates remembering from recall."""
    seen = {next(m["content"] for m in reversed(msgs) if m["role"] == "user") for msgs in train_rows["messages"]}
    return {name: [e.instruction in seen for e in examples] for name, examples in sets.items()}


def subset_accuracy(examples: list, correct: list[bool], keep: list[bool]) -> float | None:
    """Accuracy (mean over families) on the examples where ``keep`` is true; None if none is kept."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for e, ok, k in zip(examples, correct, keep):
        if k:
            hits[e.family].append(ok)
    return statistics.fmean(sum(v) / len(v) for v in hits.values()) if hits else None


def _mean_std(values):
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds of each accuracy, with the sample standard deviation (0 for one seed) and the seeds' values."""
    out = {"n_seeds": len(per_seed)}
    for key in ("general_accuracy", "domain_accuracy", "mc_general_accuracy", "mc_domain_accuracy", "kl_drift"):
        if key in per_seed[0]:
            out[key], out[uncertainty.spread_key(key, "std")] = _mean_std([r[key] for r in per_seed])
    if "kl_drift_se_questions" in per_seed[0]:
        out["kl_drift_se_questions"] = statistics.fmean(r["kl_drift_se_questions"] for r in per_seed)
    for per in ("per_family", "per_family_mc"):
        if per in per_seed[0]:
            out[per] = {f: statistics.fmean(r[per][f] for r in per_seed) for f in per_seed[0][per]}
    out["seeds"] = [{k: r[k] for k in ("seed", "general_accuracy", "domain_accuracy", "mc_general_accuracy", "kl_drift")
                     if k in r} for r in per_seed]
    return out


def arm_result(per_seed: list[dict], base: dict, sets: dict[str, list], train_rows) -> dict:
    """An arm's aggregate over seeds, plus, per held-out set, the share of its questions the arm trained on and the
    accuracy of the arm and of the base model on the rest (``general_unseen``: forgetting measured without them)."""
    out = aggregate(per_seed)
    seen = seen_masks(sets, train_rows)
    for name in ("general", "domain"):
        keep = [not s for s in seen[name]]
        out[f"{name}_seen_in_training"] = 1 - sum(keep) / max(len(keep), 1)
        unseen = [subset_accuracy(sets[name], r["correct"][name], keep) for r in per_seed]
        all_seen = sorted({e.family for e in sets[name]} - {e.family for e, k in zip(sets[name], keep) if k})
        if all_seen:  # left out of both unseen means, the arm's and the base's
            out[f"{name}_families_all_seen"] = all_seen
        if unseen[0] is not None:
            out[f"{name}_accuracy_unseen"], out[f"{name}_std_unseen"] = _mean_std(unseen)
            out[f"base_{name}_accuracy_unseen"] = subset_accuracy(sets[name], base["correct"][name], keep)
    if "general_accuracy_unseen" in out:
        out["forgetting_unseen"] = out["base_general_accuracy_unseen"] - out["general_accuracy_unseen"]
    return out


def add_forgetting(results: dict) -> dict:
    base = results["base"]
    for arm in results["arms"].values():
        arm["forgetting"] = base["general_accuracy"] - arm["general_accuracy"]
        if "mc_general_accuracy" in arm and "mc_general_accuracy" in base:
            arm["forgetting_mc"] = base["mc_general_accuracy"] - arm["mc_general_accuracy"]
    return results


def general_measure(results: dict) -> tuple[str, str]:
    """``(accuracy key, forgetting key)`` of the general measure the targets are checked on: the answers, unless
    no general family is informative for them (a base model at chance, notebook 06's ``informative``) while some is
    for multiple choice."""
    informative = results.get("informative") or {}
    if "match" in informative and not informative["match"] and informative.get("mc"):
        return "mc_general_accuracy", "forgetting_mc"
    return "general_accuracy", "forgetting"


def _se(m: dict, key: str) -> float:
    """A model's standard error for ``key`` (``collect`` adds them); 0 for results from before they existed."""
    return m.get(uncertainty.spread_key(key, "se"), 0.0)


def checks(results: dict) -> list[dict]:
    """The targets of the reproduction, evaluated on the measured numbers (they are reported, never tuned for).

    Each target gets a verdict from its 95% interval (``uncertainty``): "met", "not met" or "not distinguishable"
    (``met``: True, False, None). A target is "not measurable" (``met`` None) where the numbers cannot decide it even
    in principle: general targets when the base model is at chance on the general set, domain targets when
    ``domain_only`` learnt nothing measurable."""
    arms, base = results["arms"], results["base"]
    key, _ = general_measure(results)
    measure = "general accuracy" if key == "general_accuracy" else "general multiple-choice accuracy"
    informative = results.get("informative", {}).get("mc" if key.startswith("mc") else "match",
                                                      [True] if base[key] >= CHANCE_MARGIN else [])
    learnt = "domain_only" in arms and arms["domain_only"]["domain_accuracy"] >= CHANCE_MARGIN
    out = []

    def add(target, value, se, threshold, measured=None, strict=False):
        verdict = uncertainty.decide(value, se, threshold, strict)
        measured = measured or uncertainty.points(value, se)
        if not informative and "general" in target:
            measured = (f"{measured}; the base model scores {base[key]:.3f} on this general set, at chance in "
                        "every family, so it cannot show forgetting: uninformative")
            verdict = "not measurable"
        elif not learnt and "domain accuracy" in target:
            measured = (f"{measured}; domain_only reaches {arms['domain_only']['domain_accuracy']:.3f} on the "
                        "domain set: nothing measurable was learnt")
            verdict = "not measurable"
        out.append({"target": target, "measured": measured, "verdict": verdict,
                    "met": {uncertainty.MET: True, uncertainty.NOT_MET: False}.get(verdict)})

    def diff(a: dict, b: dict, k: str, scale: float = 1.0) -> tuple[float, float]:
        """``a[k] - scale * b[k]`` and its standard error."""
        return a[k] - scale * b[k], uncertainty.difference_se(_se(a, k), scale * _se(b, k))

    if "domain_only" in arms:
        loss, se = diff(base, arms["domain_only"], key)
        add(f"domain_only loses >= 15 points of {measure}", loss, se, 0.15)
    if "ours" in arms:
        o = arms["ours"]
        add(f"ours keeps {measure} within 2 points of the base", *diff(o, base, key), -0.02)
        if "domain_only" in arms:
            gap, se = diff(o, arms["domain_only"], "domain_accuracy")
            add("ours' domain accuracy within 2 points of domain_only", gap, se, -0.02,
                f"{uncertainty.points(gap, se)} (ours - domain_only)")
        if "public_mix" in arms:
            lead, se = diff(o, arms["public_mix"], key)
            add(f"ours beats public_mix on {measure}", lead, se, 0.0,
                f"{o[key]:.3f} vs {arms['public_mix'][key]:.3f}: {uncertainty.points(lead, se)}", strict=True)
        if "oracle" in arms:
            ratio = o[key] / max(arms["oracle"][key], 1e-9)
            margin, se = diff(o, arms["oracle"], key, 0.95)
            add(f"ours reaches >= 95% of oracle's {measure}", margin, se, 0.0,
                f"{ratio:.1%} (ours - 0.95 x oracle: {uncertainty.points(margin, se)})")
        order = [a for a in ("ours", "public_mix", "domain_only") if a in arms and "kl_drift" in arms[a]]
        if len(order) == 3:  # each step of the order, checked as a difference above 0
            steps = [diff(arms[b], arms[a], "kl_drift") for a, b in zip(order, order[1:])]
            kls = ", ".join(f"{a} {arms[a]['kl_drift']:.4f}" for a in order)
            add("KL drift: ours < public_mix < domain_only", *min(steps, key=lambda t: t[0] / max(t[1], 1e-12)),
                0.0, f"{kls} (steps: {', '.join(f'{d:+.4f} ± {uncertainty.Z95 * se:.4f}' for d, se in steps)})",
                strict=True)
    return out


SAME_EVALUATION = ("n_general", "n_domain", "eval_sets", "answer_match", "general_families", "eval_weights")
EVALUATION_DEFAULTS = {"eval_weights": "4bit"}  # what a results.json from before a key was recorded measured with


def merge_earlier(run_name: str, results: dict) -> list[str]:
    """Carry over the arms of the previous ``results.json`` that this evaluation did not score, so that a partial
    rerun (notebook 05 rerun on a few arms with new settings, whose earlier arms it no longer lists) adds to the
    results instead of replacing them. Only when the earlier evaluation is comparable: the same held-out sets and
    scoring, and the base model scoring the same. Carried arms are marked ``from_earlier_evaluation``; their
    adapters stay where notebook 05 archived them. Returns their names."""
    path = stage_dir(run_name, STAGE, create=False) / "results.json"
    if not path.exists():
        return []
    earlier = read_json(path)
    base_keys = ("general_accuracy", "domain_accuracy")
    def same(k):
        return earlier.get(k, EVALUATION_DEFAULTS.get(k)) == results.get(k, EVALUATION_DEFAULTS.get(k))

    if not all(map(same, SAME_EVALUATION)) or \
            any(earlier.get("base", {}).get(k) != results["base"].get(k) for k in base_keys):
        return []
    carried = [arm for arm in earlier.get("arms", {}) if arm not in results["arms"]]
    for arm in carried:
        results["arms"][arm] = {**earlier["arms"][arm], "from_earlier_evaluation": True}
    return carried


def finish(run_name: str, results: dict) -> Path:
    return write_json(stage_dir(run_name, STAGE) / "results.json", results)


def eval_setup(recorded: dict) -> Setup:
    """The setup stage 05 trained with, on this machine: the same quantisation, on the CPU if no GPU is visible
    (outputs trained on a GPU machine and copied back)."""
    import torch

    setup = Setup(**recorded)
    if setup.device == "cuda" and not torch.cuda.is_available():
        setup = Setup("cpu", "float32", setup.quantization,
                      "trained on a GPU; evaluated on the CPU with the same quantisation")
    reason = bnb_4bit_works(setup.device) if setup.quantization == "nf4" else ""
    if reason:
        raise RuntimeError(f"notebook 05 trained on a 4-bit base, but here {reason}; evaluate where bitsandbytes "
                           "runs 4-bit (a CUDA GPU, or a CPU with bitsandbytes >= 0.50): scoring an unquantised base "
                           "would count quantisation error as forgetting")
    return setup


def adapter_path(run_name: str, arm: str, trained: dict) -> Path:
    """The folder of one (arm, seed) adapter, from its entry in notebook 05's metrics."""
    folder = trained.get("adapter") or f"arms/{arm}/seed{trained['seed']}"  # runs from before 05 recorded it
    return stage_dir(run_name, "05_training", create=False) / folder


def check_trained_data(run_name: str, training: dict, arm_data: dict) -> None:
    """Refuse adapters trained on other data than notebook 04's current arms (04 rerun after 05); note the arms
    notebook 04 built that notebook 05 did not train."""
    untrained = sorted(set(arm_data) - set(training["arms"]))
    if untrained:
        print(f"NOTE: notebook 04 built arms {untrained} that notebook 05's last run did not train; they are left out")
    for arm, per_seed in training["arms"].items():
        if arm not in arm_data:
            raise RuntimeError(f"notebook 05 trained arm {arm!r}, which notebook 04's last run no longer builds; "
                               f"rerun notebooks/05_qlora_training.ipynb for run {run_name!r}")
        current = fingerprint(arm_data[arm])
        for m in per_seed:
            path = adapter_path(run_name, arm, m) / "metrics.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: rerun notebooks/05_qlora_training.ipynb for run "
                                        f"{run_name!r} (arm {arm!r}, seed {m['seed']})")
            recorded = read_json(path)["settings"]["data"]
            if recorded != current:
                raise RuntimeError(f"arm {arm!r} (seed {m['seed']}): notebook 04's data changed after notebook 05 "
                                   f"trained it; rerun notebooks/05_qlora_training.ipynb for run {run_name!r}")


OLD_HP_NAMES = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout", "batch_size": "train_batch_size"}


def inputs(run_name: str) -> tuple[dict, dict]:
    """``(training, mix)``: what notebook 05 trained (its metrics) and notebook 04's plan. A notebook 05 run from
    before its ``hp`` took the parameters' names (2026-11-28) reads under the new names."""
    training = read_json(require(run_name, "05_training"))
    training["hp"] = {OLD_HP_NAMES.get(k, k): v for k, v in training["hp"].items()}
    return training, read_json(require(run_name, "04_mixing"))


def score_models(run_name: str, training: dict, sets: dict[str, list], base_path: str, setup, *, lab: bool,
                 max_new_tokens: int, match: str, mc: bool, kl: bool, progress: bool = True,
                 workers: int = 1, batch_size: int = ANSWER_BATCH, weights: str = "4bit") -> tuple[dict, dict]:
    """Score the base and every (arm, seed) adapter of notebook 05 on ``sets``: ``({(arm, seed): headline scores},
    informative families)``. The base decides which families can show forgetting (``scoring.informative_families``,
    on real sets), and its own general answers are the text the arms' KL drift is measured on.
    The adapters are independent: ``workers`` > 1 scores that many models side by side in worker processes
    (``helpers.workers``; on GPUs spread over them), with the same results (the KL drift to float rounding: with one
    worker an adapter's drift reads its prompts' pass from its answers, ``prompt_cache``). The base is then one of
    them: only its general answers, which the adapters' drift needs, come first, alone (on two H200s, with the base
    scored whole first, 06 gained 1.13x: docs/bench/h200x2-determinism/). Prints how long that took and the models
    after it.
    ``batch_size``: rows per batch of every model's greedy answers (notebook 06's ``answer_batch_size``).
    ``weights``: how a 4-bit base is held on a GPU (notebook 06's ``eval_weights``: ``eval_models.load_for_eval``)."""
    import time

    from tqdm.auto import tqdm

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"answer_batch_size = {batch_size!r}: give the rows answered per batch, a whole number >= 1")
    check_weights(weights)
    start = time.perf_counter()
    listed = adapters(run_name, training)
    plan = workers_service.plan(len(listed) + 1, workers, setup.device)
    worker_memory_on_gpus(plan, base_path, setup, weights)  # a dequantised base in each worker: refused unless it fits
    beside = plan.workers > 1  # the base's scoring in a worker, beside the adapters'
    model, tokenizer = load_for_eval(base_path, setup, weights=weights)
    states = PromptCache.of(model)  # each prompt's pass, run once for the answers, choices and drift reference
    general = None  # the base's general answers when they come first, alone: its scoring in a worker reuses them
    if beside:
        general = general_answers(model, tokenizer, sets, max_new_tokens=max_new_tokens, match=match,
                                  batch_size=batch_size) if kl else None
        base_answers = general["answer_ids"] if kl else None
    else:
        base = score_sets(model, tokenizer, sets, max_new_tokens=max_new_tokens, match=match, mc=mc,
                          batch_size=batch_size, states=states)
        base_answers = base["general_answer_ids"] if kl else None
    reference = None  # the base's pass of the KL drift, run once here for every adapter when it is cheap to keep
    if kl and listed and setup.device == "cpu" and not beside \
            and base_logprobs_bytes(model, base_answers) <= DRIFT_REFERENCE_BYTES:
        reference = drift_reference(model, tokenizer, sets, base_answers, states)
    del model, states
    if setup.device == "cuda":  # this copy's memory back to the GPU before the workers load theirs
        release_gpu_memory()
    alone, start = time.perf_counter() - start, time.perf_counter()
    options = {"max_new_tokens": max_new_tokens, "match": match, "mc": mc, "batch_size": batch_size, "weights": weights}
    first = [("base", (base_path, setup, None, None, sets, None), {**options, "general": general})] if beside else []
    jobs = first + [
        (f"{arm} seed {seed}", (base_path, setup, adapter, key, sets, base_answers),
         {**options, "drift_reference": reference}) for arm, seed, adapter, key in listed]
    bar = tqdm(total=len(listed) + 1, initial=0 if beside else 1, desc="models", disable=not progress)
    done = workers_service.run(score_adapter, jobs, plan, on_done=lambda *_: bar.update())
    bar.close()
    print(f"the base, alone: {alone:.1f} s ({'its general answers' if beside else 'scored'}"
          f"{', the drift reference' if reference else ''}); then {len(jobs)} model(s): "
          f"{time.perf_counter() - start:.1f} s on {plan.workers} worker(s) ({', '.join(sorted(set(plan.devices)))})")
    if beside:
        base = done.pop(0)
    families = {} if lab else informative_families(base, sets)
    scores = {(None, None): {"seed": None, **headline(base, families)}}
    for (arm, seed, _, _), raw in zip(listed, done):
        scores[(arm, seed)] = {"seed": seed, **headline(raw, families)}
    return scores, families


def adapters(run_name: str, training: dict) -> list[tuple[str, int, Path, str]]:
    """``(arm, seed, adapter folder, settings key)`` of every adapter notebook 05 recorded, in its order."""
    return [(arm, m["seed"], adapter_path(run_name, arm, m), m["settings_key"])
            for arm, ms in training["arms"].items() for m in ms]


def score_adapter(base_path: str, setup, adapter: Path | None, key: str | None, sets: dict[str, list],
                  base_answers: list | None, *, max_new_tokens: int, match: str, mc: bool,
                  drift_reference: list | None = None, batch_size: int = ANSWER_BATCH,
                  general: dict | None = None, weights: str = "4bit") -> dict:
    """One (arm, seed) adapter's scores on ``sets`` (``scoring.score_sets``'; ``score_models`` makes the headline),
    and its KL drift from the base on the base's own general answers (``base_answers``; None: no drift), with the
    base's side computed before (``drift_reference``) or here. ``adapter`` None scores the base itself, reusing its
    ``general`` answers when they were computed before. ``weights``: ``eval_models.load_for_eval``'s."""
    model, tokenizer = load_for_eval(base_path, setup, adapter, key, weights)
    kl = {}
    if base_answers is not None and drift_reference is None:
        # the drift first: its base side switches the adapter off, which a model merged for scoring no longer can
        kl = drift(model, tokenizer, sets, base_answers)
    model = merged_for_scoring(model, setup, weights)
    states = PromptCache.of(model)  # each prompt's pass, run once for the answers, the choices and the drift
    s = score_sets(model, tokenizer, sets, max_new_tokens=max_new_tokens, match=match, mc=mc, batch_size=batch_size,
                   general=general, states=states)
    if base_answers is not None and drift_reference is not None:  # the base's side known: the model as scored
        kl = drift(model, tokenizer, sets, base_answers, reference_logprobs=drift_reference, states=states)
    return {**s, **kl}


def run_benchmarks(run_name: str, training: dict, base_path: str, setup, names: list[str], limit: int = 0,
                   progress: bool = True, weights: str = "4bit") -> dict:
    """lm-evaluation-harness's tasks ``names`` (notebook 06's ``benchmarks``: lm-eval's own, such as ``mmlu_pro``,
    or the shipped sets', ``helpers.lmeval``) for the base and every (arm, seed) adapter, each loaded as notebook 05
    trained it (``load_for_eval``: the base 4-bit or not, the adapter on top) and handed to lm-eval's model.
    ``limit``: questions per task (0: all); ``weights``: ``load_for_eval``'s (the adapter stays unmerged: lm-eval
    loads it). lm-eval's results for each model are written to
    ``06_evaluation/lm_eval/<model>/results.json``; returns ``{"base" or arm: {task: {metric: mean over
    seeds}}}`` for ``results.json`` and the report."""
    from tqdm.auto import tqdm

    from . import lmeval

    problem = lmeval.embeddings_problem(training["hp"].get("train_embeddings", False))
    if problem:
        raise ValueError(problem)
    out = stage_dir(run_name, STAGE) / "lm_eval"
    per_model: dict[str, list[dict]] = {}
    for arm, seed, adapter, key in tqdm([("base", None, None, None)] + adapters(run_name, training), desc="lm-eval",
                                        disable=not progress):
        model, tokenizer = load_for_eval(base_path, setup, adapter, key, weights)  # as notebook 05 trained it
        got = lmeval.evaluate_loaded(model, tokenizer, list(names), limit=limit or None, progress=progress)
        del model
        write_json(out / (arm if seed is None else f"{arm}_seed{seed}") / "results.json",
                   {k: got[k] for k in ("results", "versions", "n-shot", "higher_is_better", "n-samples") if k in got})
        per_model.setdefault(arm, []).append(lmeval.headline_metrics(got))
    return {arm: {task: {k: statistics.fmean(r[task][k] for r in runs) for k in runs[0][task]} for task in runs[0]}
            for arm, runs in per_model.items()}


def collect(scores: dict, families: dict, sets: dict[str, list], training: dict, arm_data: dict, setup,
            params: dict) -> dict:
    """The run's results: the base's scores, each arm's mean over seeds with its forgetting and standard errors,
    and how they were measured (set sizes, questions per headline family, match rule, informative families)."""
    base = scores[(None, None)]
    lab = params["lab"]
    results = {"n_general": len(sets["general"]), "n_domain": len(sets["domain"]),
               "eval_sets": "lab" if lab else {"general": params["eval_general"], "domain": params["eval_domain"]},
               "setup": asdict(setup), "seeds": training["seeds"],
               "answer_match": params["answer_match"], "eval_weights": params.get("eval_weights", "4bit"),
               "informative": families,
               "general_families": sorted({e.family for e in sets["general"]}),
               "base": {k: v for k, v in base.items() if k not in ("seed", "correct", "general_answer_ids")},
               "arms": {arm: arm_result([scores[(arm, m["seed"])] for m in ms], base, sets, arm_data[arm])
                        for arm, ms in training["arms"].items()}}
    if (passes := max(map(passes_of, arm_data.values()), default=1)) > 1:
        results["general_passes"] = passes  # notebook 04's, named in the report
    return add_uncertainty(add_forgetting(results), sets)


def add_uncertainty(results: dict, sets: dict[str, list]) -> dict:
    """Each model's standard error per measure (``general_se``, ``domain_se``, ``mc_general_se``, ``kl_drift_se``:
    the questions' and the seeds', ``uncertainty``), and the questions per family each headline measure averages
    over (``n_questions``)."""
    families = results.get("informative") or {}
    counts = {"general": uncertainty.family_counts(sets["general"], families.get("match")),
              "domain": uncertainty.family_counts(sets["domain"])}
    if "mc_general_accuracy" in results["base"]:
        counts["mc_general"] = uncertainty.family_counts(sets["general"], families.get("mc"))
    if "mc_domain_accuracy" in results["base"]:
        counts["mc_domain"] = uncertainty.family_counts(sets["domain"])
    results["n_questions"] = counts
    for _, m in reporting.model_rows(results):
        for measure, per in counts.items():
            fam = m["per_family_mc" if measure.startswith("mc") else "per_family"]
            std = m.get(f"{measure}_std", 0.0)
            m[f"{measure}_se"] = uncertainty.combined_se(uncertainty.questions_se(fam, per), std, m.get("n_seeds", 1))
        if "kl_drift" in m:
            m["kl_drift_se"] = uncertainty.combined_se(m.get("kl_drift_se_questions", 0.0), m.get("kl_drift_std", 0.0),
                                                       m.get("n_seeds", 1))
    return results


TABLE = ("general_accuracy", "general_std", "domain_accuracy", "domain_std", "forgetting", "mc_general_accuracy",
         "forgetting_mc", "kl_drift", "n_seeds")
SEEN = ("general_seen_in_training", "domain_seen_in_training", "general_accuracy", "general_accuracy_unseen",
        "forgetting", "forgetting_unseen", "domain_accuracy", "domain_accuracy_unseen")


def table(results: dict, columns=TABLE, base: bool = True):
    """One row per model (the base first, unless ``base`` is False; arms carried from an earlier evaluation marked
    ``(earlier)``), the measures that apply: a spread needs two seeds or more, multiple choice needs items with
    choices (none in the lab)."""
    import pandas as pd

    named = reporting.model_rows(results)[0 if base else 1:]
    rows = pd.DataFrame({reporting.label(name, m): {k: m.get(k) for k in columns} for name, m in named}).T
    if len(results["seeds"]) == 1:
        rows = rows.drop(columns=["general_std", "domain_std"], errors="ignore")
    return rows.dropna(axis=1, how="all")


CUT_OFF_SHARE = 0.10  # a model whose answers are cut off this often is scored partly on its answer length


def cut_off(scores: dict, sets: dict[str, list], max_new_tokens: int) -> list[str]:
    """A ``WARNING:`` line (printed, returned for the report) for each model and set where at least
    ``CUT_OFF_SHARE`` of the greedy answers were cut off at ``max_new_tokens`` before the model ended its turn: a
    cut-off answer counts as wrong, so these accuracies measure the answers' length too."""
    signs = {}
    for (arm, seed), s in scores.items():
        name = "base" if arm is None else f"{arm} (seed {seed})"
        for set_name, n in s.get("unfinished", {}).items():
            total = len(sets[set_name])
            signs[f"{name}: {n} of {total} {set_name} answers were cut off at answer_max_new_tokens = "
                  f"{max_new_tokens} and count as wrong; raise answer_max_new_tokens"] = n >= CUT_OFF_SHARE * total
    return trouble(signs)


def samples(scores: dict, training: dict, sets: dict[str, list]) -> list[dict]:
    """A few answers of each model (first seed): three general, two domain."""
    general = {e.family for e in sets["general"]}
    first = [("base", scores[(None, None)]), *[(a, scores[(a, ms[0]["seed"])]) for a, ms in training["arms"].items()]]
    return [{"model": name, **s} for name, m in first
            for s in [s for s in m["samples"] if s["family"] in general][:3]
            + [s for s in m["samples"] if s["family"] not in general][:2]]


SUMMARY = ("general_accuracy", "domain_accuracy", "general_accuracy_unseen", "general_seen_in_training",
           "domain_seen_in_training", "mc_general_accuracy", "mc_domain_accuracy", "kl_drift")


def save(run_name: str, params: dict, results: dict, training: dict, figures: list[str], warnings: list[str] = ()
         ) -> Path:
    """``results.json``, ``report.md``, and the stage's metrics and manifest; returns the report's path.
    ``warnings``: this notebook's ``WARNING:`` lines (evaluation sets cut, answers cut off), listed in the report."""
    finish(run_name, results)
    path = reporting.report(run_name, results, training, figures, list(warnings))
    metrics = {k: results[k] for k in ("n_general", "n_domain", "eval_sets", "checks")}
    metrics["summary"] = {name: {k: m[k] for k in SUMMARY if k in m} for name, m in reporting.model_rows(results)}
    metrics["warnings"] = list(warnings)
    finish_stage(run_name, STAGE, params, metrics, figures)
    return path
