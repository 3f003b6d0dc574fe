"""Stage 06: how much each arm forgot, and how much domain it learnt.

The base model and every arm's adapter from stage 05 answer held-out general instructions (per family) and held-out
domain instructions, greedily; an answer counts when it equals the reference exactly. Forgetting is the base
model's general accuracy minus the arm's. With several seeds, an arm's numbers are the mean over seeds, with the
standard deviation beside them.

In the lab the held-out instructions and their references come from the lab's task families (the same
``n_eval_per_family`` / ``eval_seed`` as stage 00), which is why this module may read the ground truth
(``tests/test_lab_isolation.py``). With a real model they come from two files of questions with short reference
answers (``load_eval_set``), e.g. slices of benchmarks whose prompts ask for the bare answer; the scoring is the same.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import arms as registry
from . import qlora_training
from .chat import render_prompt
from .generate import generate, scoring_batches
from .lab.evaluate import heldout_sets  # noqa: F401 -- re-exported: the lab's held-out sets, the same as stage 00's
from .datafiles import DataError, fingerprint, looks_like_path, no_such_file, read_records, row_to_messages
from .models import load_tokenizer
from .text import answer_tokens, normalise_answer  # noqa: F401 -- re-exported until the split
from .runs import find_local, read_json, run_dir, save_figure, stage_dir, write_json

STAGE = "06_evaluation"


# ---------------------------------------------------------------------------------------------------------------
# Held-out sets and exact-match scoring
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalItem:
    """One held-out question: the family it is reported under, the instruction and the reference answer (the lab's
    ``tasks.Example`` has the same three fields)."""

    family: str
    instruction: str
    response: str
    where: str = field(default="", compare=False)  # file and line, for error messages
    aliases: tuple = field(default=(), compare=False)  # other accepted forms of the answer (lenient matching)
    choices: tuple = field(default=(), compare=False)  # options for multiple choice (the answer among them)
    label: int | None = field(default=None, compare=False)  # index of the answer in choices


def load_eval_set(source: str, default_family: str) -> list[EvalItem]:
    """Held-out questions from a JSONL, JSON, CSV or Parquet file (or a hub dataset id).

    Each row needs ``instruction`` and ``answer`` (``response`` or ``output`` also accepted; ``input`` is appended to
    the instruction as in Alpaca), or ``messages`` with one user turn and the assistant's reference answer; an
    optional ``family`` (e.g. ``gsm8k``, ``mmlu``) groups rows for the per-family figures, ``default_family`` otherwise.
    Exact match is strict: write instructions that ask for a short, canonical answer ("Answer with the number only.").
    A hub id is refused: export the split you mean to a file (a benchmark's train split is not a held-out set).
    """
    found = find_local(source)
    if found is None:
        if looks_like_path(source) or Path(source).suffix:
            raise no_such_file(source)
        raise DataError(f"{source}: evaluation sets are read from local files, not hub ids (which would give the "
                        "train split); export the held-out split first, e.g. load_dataset(id, config, "
                        "split='test').to_json('data/eval.jsonl'), and map its columns to instruction/answer")
    items = []
    for where, record in read_records(str(found)):
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with 'instruction' and 'answer'")
        answer = next((record[k] for k in ("answer", "response", "output") if record.get(k) not in (None, "")), None)
        if answer is None and not record.get("messages"):
            raise DataError(f"{where}: missing field 'answer' (each row needs 'instruction' and 'answer', or "
                            "'messages' ending with the reference answer)")
        if answer is not None:
            record = {**record, "response": answer}
        messages = row_to_messages(record, where)
        if [m["role"] for m in messages] != ["user", "assistant"]:
            raise DataError(f"{where}: an evaluation row is one user turn and its reference answer; got roles "
                            f"{[m['role'] for m in messages]}")
        family = str(record.get("family") or default_family)
        choices, label = tuple(str(c) for c in record.get("choices") or ()), record.get("label")
        if choices and not (isinstance(label, int) and 0 <= label < len(choices)):
            raise DataError(f"{where}: 'choices' needs 'label', the index of the answer among the {len(choices)} "
                            f"choices; got label {label!r}")
        items.append(EvalItem(family, messages[0]["content"], messages[1]["content"], where,
                              tuple(str(a) for a in record.get("aliases") or ()), choices, label))
    if not items:
        raise DataError(f"{source}: no rows")
    return items


def eval_sets(general: str, domain: str) -> dict[str, list[EvalItem]]:
    """``{"general": [...], "domain": [...]}`` from the two files of notebook 06's ``eval_general``/``eval_domain``."""
    missing = [name for name, value in (("eval_general", general), ("eval_domain", domain)) if not value]
    if missing:
        raise DataError(f"notebook 06 with lab = False needs {' and '.join(missing)}: a file of held-out questions "
                        "with reference answers (rows with 'instruction', 'answer' and optionally 'family')")
    sets = {"general": load_eval_set(general, "general"), "domain": load_eval_set(domain, "domain")}
    shared = {e.family for e in sets["general"]} & {e.family for e in sets["domain"]}
    if shared:
        raise DataError(f"family {sorted(shared)} occurs in both {general} and {domain}; give the domain rows "
                        "their own family names")
    return sets


def held_out(lab: bool, n_per_family: int, seed: int, general: str = "", domain: str = "") -> dict[str, list]:
    """Notebook 06's held-out sets: the lab's (``n_per_family``, ``seed``) or, with ``lab`` False, the two files
    (``n_per_family`` > 0 keeps that many questions of each family, drawn with ``seed``; 0 keeps them all)."""
    if not lab:
        sets = eval_sets(general, domain)
        return {name: per_family_sample(items, n_per_family, seed) for name, items in sets.items()}
    if general or domain:
        raise ValueError("eval_general / eval_domain are set but lab = True, which scores the lab's own held-out "
                         "sets: set lab = False to score your files")
    return heldout_sets(n_per_family, seed)


def per_family_sample(items: list, n_per_family: int, seed: int) -> list:
    """At most ``n_per_family`` items of each family (a seeded draw, kept in file order); all when it is 0."""
    import random

    if n_per_family <= 0:
        return items
    by: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by[item.family].append(i)
    rng = random.Random(seed)
    keep = {i for idx in by.values() for i in (rng.sample(idx, n_per_family) if len(idx) > n_per_family else idx)}
    return [item for i, item in enumerate(items) if i in keep]


MATCHES = ("exact", "lenient")


def exact_match(model, tokenizer, examples: list, *, batch_size: int = 128, max_new_tokens: int = 16,
                progress: bool | str = False, samples_per_family: int = 2, match: str = "exact") -> dict:
    """Greedy-decode every instruction and score exact match (surrounding whitespace ignored) per family.

    ``match="lenient"`` accepts the answer inside a sentence instead (``answer_matches``: normalised case and
    punctuation, aliases, no hedging between the item's choices); a real instruct model answers in sentences
    ("The capital of France is Paris."), which strict exact match scores 0.

    ``examples``: items with ``family``, ``instruction`` and ``response`` (``EvalItem`` or the lab's ``Example``).
    Returns ``{"accuracy": ..., "per_family": {family: accuracy}, "n": count, "correct": [bool per example],
    "samples": the first answers of each family}``. ``accuracy`` is the unweighted mean over families (each family
    counts the same however many questions it has; the lab's sets have equal families anyway).
    An answer counts only if the model also ended its turn (a cut-off answer is not a right one), so a reference
    needs fewer tokens than ``max_new_tokens``, room for the end token; a longer one is an error.
    """
    if match not in MATCHES:
        raise ValueError(f"answer_match must be one of {MATCHES}, got {match!r}")
    for e in examples:
        n_tokens = len(tokenizer(e.response, add_special_tokens=False)["input_ids"])
        if n_tokens >= max_new_tokens:
            where = getattr(e, "where", "") or f"family {e.family!r}"
            raise ValueError(f"{where}: the reference answer has {n_tokens} tokens and max_new_tokens = "
                             f"{max_new_tokens} leaves no room for the end of the turn, so it could never match; "
                             "raise max_new_tokens or shorten the answer")
    prompts = [render_prompt(tokenizer, e.instruction) for e in examples]
    outs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
    hits: dict[str, list[bool]] = defaultdict(list)
    correct, samples = [], []
    for e, o in zip(examples, outs):
        if match == "exact":
            ok = o["finished"] and o["text"].strip() == e.response.strip()
        else:
            ok = o["finished"] and answer_matches(o["text"], e.response, getattr(e, "aliases", ()), _distractors(e))
        if len(hits[e.family]) < samples_per_family:
            samples.append({"family": e.family, "instruction": e.instruction, "expected": e.response,
                            "output": o["text"], "correct": ok})
        hits[e.family].append(ok)
        correct.append(ok)
    per_family = {f: sum(v) / len(v) for f, v in sorted(hits.items())}
    return {"accuracy": sum(per_family.values()) / len(per_family), "per_family": per_family,
            "n": len(examples), "correct": correct, "samples": samples, "answer_ids": [o.get("ids") for o in outs]}


def score_sets(model, tokenizer, sets: dict[str, list], *, progress: bool | str = False,
               max_new_tokens: int = 16, match: str = "exact", mc: bool = True) -> dict:
    """Greedy answers to both held-out sets scored by ``match`` (accuracies are means over families), per-family
    accuracy, counts, whether each answer was right (``correct``: ``{"general": [...], "domain": [...]}``), the first
    answers of each family, and the general answers' token ids (``general_answer_ids``: the base's are the text
    ``drift_kl`` measures on). With ``mc`` and items that have ``choices``, also multiple choice by log-likelihood
    (``mc_general_accuracy``, ``mc_domain_accuracy``, ``per_family_mc``: length-normalised, as acc_norm)."""
    label = progress if isinstance(progress, str) else "evaluate"
    g = exact_match(model, tokenizer, sets["general"], max_new_tokens=max_new_tokens,
                    progress=progress and f"{label}: general", match=match)
    d = exact_match(model, tokenizer, sets["domain"], max_new_tokens=max_new_tokens,
                    progress=progress and f"{label}: domain", match=match)
    out = {"general_accuracy": g["accuracy"], "domain_accuracy": d["accuracy"],
           "per_family": {**g["per_family"], **d["per_family"]}, "n_general": g["n"], "n_domain": d["n"],
           "correct": {"general": g["correct"], "domain": d["correct"]}, "samples": g["samples"] + d["samples"],
           "general_answer_ids": g["answer_ids"]}
    if mc:
        for name, items in sets.items():
            if items and all(getattr(e, "choices", ()) for e in items):
                prompts = [render_prompt(tokenizer, e.instruction) for e in items]
                r = multiple_choice(model, tokenizer, prompts, items, delimiter="",
                                    progress=progress and f"{label}: {name} multiple choice")
                out[f"mc_{name}_accuracy"] = r["accuracy_norm"]
                out.setdefault("per_family_mc", {}).update(r["per_family_norm"])
    return out


def drift(model, tokenizer, sets: dict[str, list], base_answer_ids: list[list[int]], progress: bool | str = False
          ) -> float:
    """KL drift of an arm from the base (``drift_kl``) on the base's own greedy answers to the general held-out
    questions; the base is the arm's model with its adapter switched off, as it was scored."""
    prompts = [render_prompt(tokenizer, e.instruction) for e in sets["general"]]
    return drift_kl(model, tokenizer, prompts, answers=base_answer_ids, progress=progress)["kl"]


CHANCE_MARGIN = 0.10


def informative_families(base: dict, sets: dict[str, list]) -> dict[str, list[str]]:
    """Per general measure, the families where the base model scores at least ``CHANCE_MARGIN`` above chance (exact
    or lenient match: 0; multiple choice: one over the number of choices). Forgetting can only be seen where there
    is something to forget: the others are reported, and left out of the headline numbers."""
    general = {e.family for e in sets["general"]}
    n_choices = {e.family: len(e.choices) for e in sets["general"] if getattr(e, "choices", ())}
    out = {"match": sorted(f for f in general if base["per_family"][f] >= CHANCE_MARGIN)}
    if "per_family_mc" in base:
        out["mc"] = sorted(f for f in general if f in n_choices
                           and base["per_family_mc"][f] >= 1 / n_choices[f] + CHANCE_MARGIN)
    return out


def headline(result: dict, families: dict[str, list[str]]) -> dict:
    """Each general measure's mean over the informative families (``general_accuracy``: the answers;
    ``mc_general_accuracy``: multiple choice), replacing the means over every family; the latter are kept as
    ``*_all_families``."""
    out = dict(result)
    for measure, key, per in (("match", "general_accuracy", "per_family"), ("mc", "mc_general_accuracy",
                                                                           "per_family_mc")):
        if key not in result or measure not in families:
            continue
        out[f"{key}_all_families"] = result[key]
        fams = families[measure]
        out[key] = statistics.fmean(result[per][f] for f in fams) if fams else 0.0
    return out


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
            std_key = key.replace("accuracy", "std") if key.endswith("accuracy") else f"{key}_std"
            out[key], out[std_key] = _mean_std([r[key] for r in per_seed])
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


def sweep_points(results: dict, shares: dict[str, float]) -> list[tuple[str, float, dict]]:
    """``(arm, general_share, result)`` for the arms that form the ratio sweep, in order of share."""
    return sorted(((a, s, results["arms"][a]) for a, s in shares.items() if a in results["arms"]), key=lambda t: t[1])


# ---------------------------------------------------------------------------------------------------------------
# Figures and the report
# ---------------------------------------------------------------------------------------------------------------
def _models(results: dict) -> list[tuple[str, dict]]:
    return [("base", results["base"]), *results["arms"].items()]


def plot_bars(results: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    models = _models(results)
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(1.2 * len(models) + 2, 3.8))
    for k, (key, label) in enumerate([("general", "general"), ("domain", "domain")]):
        vals = [m[f"{key}_accuracy"] for _, m in models]
        errs = [m.get(f"{key}_std", 0.0) for _, m in models]
        ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, yerr=errs, capsize=3, label=label, color=f"C{k}")
    ax.set_xticks(x, [name for name, _ in models], rotation=20)
    match = results.get("answer_match", "exact")
    ax.set(ylim=(0, 1.05), ylabel=f"accuracy ({match} match)", title="General and domain accuracy (held-out, greedy)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # outside: never over a bar
    return save_figure(fig, path)


def plot_heatmap(results: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    models = _models(results)
    families = list(results["base"]["per_family"])
    grid = np.array([[m["per_family"][f] for f in families] for _, m in models])
    fig, ax = plt.subplots(figsize=(0.7 * len(families) + 2.5, 0.45 * len(models) + 1.5))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(families)), families, rotation=45, ha="right")
    ax.set_yticks(range(len(models)), [name for name, _ in models])
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="exact match")
    ax.set_title("Accuracy per task family")
    return save_figure(fig, path)


def plot_tradeoff(results: dict, path: Path, shares: dict[str, float] | None = None) -> Path:
    """General against domain accuracy per model; the ratio-sweep arms, if any, joined by a line in order of share."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = sweep_points(results, shares or {})
    if len(points) > 1:
        ax.plot([p[2]["domain_accuracy"] for p in points], [p[2]["general_accuracy"] for p in points],
                color="0.7", zorder=0, label="general share sweep")
        for arm, share, r in points:
            ax.annotate(f"{share:.0%}", (r["domain_accuracy"], r["general_accuracy"]), textcoords="offset points",
                        xytext=(5, -10), fontsize=8, color="0.4")
    models = _models(results)
    for i, (name, m) in enumerate(models):  # a shape per model, earlier ones larger: coinciding points stay visible
        ax.errorbar(m["domain_accuracy"], m["general_accuracy"], xerr=m.get("domain_std") or None,
                    yerr=m.get("general_std") or None, fmt="osD^vPX*h"[i % 9], color=f"C{i}", label=name, capsize=3,
                    markersize=11 - 6 * i / max(1, len(models) - 1), alpha=0.85)
    ax.set(xlabel="domain accuracy", ylabel="general accuracy", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05),
           title="Trade-off: up and to the right is better")
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


# The paper's ablation (its Table: general average over its benchmarks) beside the lab's arms that repeat each row
ABLATION_ROWS = [("base", "the base model, not fine-tuned", registry.BASE_PAPER_GENERAL),
                 *[(a.name, a.what, a.paper_general) for a in registry.ARMS.values()]]


def ablation_table(results: dict) -> list[dict]:
    """The ablation laid out like the paper's table, for the arms this run has; empty without ablation arms."""
    arms = results["arms"]
    if not registry.optional(arms):
        return []
    out = []
    for name, what, paper in ABLATION_ROWS:
        m = results["base"] if name == "base" else arms.get(name)
        if m is None:
            continue
        row = {"arm": name, "what": what, "general": m["general_accuracy"], "general_std": m.get("general_std"),
               "domain": m["domain_accuracy"], "domain_std": m.get("domain_std"),
               "forgetting_points": None if name == "base" else round(100 * m["forgetting"], 1),
               "seeds": m.get("n_seeds", 1), "paper_general_average": paper}
        out.append(row)
    return out


def plot_ablation(results: dict, path: Path) -> Path:
    """General accuracy of each ablation row (mean and seed std), the base as a line: which part of the method
    keeps what the base knew."""
    import matplotlib.pyplot as plt

    rows = [r for r in ablation_table(results) if r["arm"] != "base"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r["general"] for r in rows], xerr=[r["general_std"] or 0 for r in rows], capsize=3,
            color=[registry.get(r["arm"]).colour for r in rows])
    ax.axvline(results["base"]["general_accuracy"], color="k", ls="--", lw=1, label="base model")
    ax.set_yticks(y, [f"{r['arm']}: {r['what']}" for r in rows], fontsize=8)
    ax.set(xlim=(0, 1.05), xlabel="general accuracy (held-out, mean ± std over seeds)",
           title="The ablation: what keeps the base model's general skill")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def report(run_name: str, results: dict, training: dict, figures: list[str]) -> Path:
    """``outputs/<run>/report.md``: what was trained, the results table and what they say."""
    lines = [f"# Run `{run_name}`: forgetting and its mitigation", ""]
    setup = training["setup"]
    hp = training["hp"]
    rows = " (only the domain tokens' rows)" if hp.get("embedding_rows") == "domain" else ""  # check_hp: with embeddings
    lines += [f"Base model `{training['model']}`; {setup['quantization']} base, {setup['compute_dtype']} compute on "
              f"{setup['device']}; LoRA rank {hp['rank']}, {hp['max_steps']} steps of batch {hp['batch_size']}, "
              f"learning rate {hp['learning_rate']}, embeddings trained: {hp['train_embeddings']}"
              f"{rows}; "
              f"seeds {training['seeds']}. Held-out sets: {results['n_general']} general, {results['n_domain']} "
              f"domain instructions; greedy decoding, {results.get('answer_match', 'exact')} match.", ""]
    lines += ["| model | general | domain | forgetting (points) | general questions seen in training | "
              "forgetting on the unseen ones (points) | seeds |", "|---|---|---|---|---|---|---|"]
    for name, m in _models(results):
        def cell(key):
            std = m.get(key.replace("accuracy", "std"), 0.0)
            return f"{m[key]:.3f}" + (f" ± {std:.3f}" if m.get("n_seeds", 1) > 1 else "")

        def points(key):
            return f"{100 * m[key]:+.1f}" if key in m else "-"
        seen = f"{m['general_seen_in_training']:.0%}" if "general_seen_in_training" in m else "-"
        name = f"{name} (earlier)" if m.get("from_earlier_evaluation") else name
        lines.append(f"| {name} | {cell('general_accuracy')} | {cell('domain_accuracy')} | {points('forgetting')} | "
                     f"{seen} | {points('forgetting_unseen')} | {m.get('n_seeds', 1)} |")
    if "mc_general_accuracy" in results["base"]:
        lines += ["", "Multiple choice (log-likelihood of each option, length-normalised) and drift from the base "
                  "(mean per-token KL(base || arm) on the base's own answers to the general questions; 0 = unchanged):",
                  "", "| model | general MC | domain MC | forgetting MC (points) | KL drift |", "|---|---|---|---|---|"]
        for name, m in _models(results):
            def val(key, fmt="{:.3f}"):
                if key not in m:
                    return "-"
                std = m.get(key.replace("accuracy", "std") if key.endswith("accuracy") else f"{key}_std")
                return fmt.format(m[key]) + (f" ± {fmt.format(std)}" if m.get("n_seeds", 1) > 1 and std else "")
            forgot = f"{100 * m['forgetting_mc']:+.1f}" if "forgetting_mc" in m else "-"
            lines.append(f"| {name} | {val('mc_general_accuracy')} | {val('mc_domain_accuracy')} | {forgot} | "
                         f"{val('kl_drift', '{:.4f}')} |")
    if results.get("informative"):
        label = {"match": "answers", "mc": "multiple-choice"}
        general = sorted({f for f in results["base"]["per_family"] if f in results.get("general_families", [])})
        for measure, fams in results["informative"].items():
            left_out = [f for f in general if f not in fams]
            if left_out:
                lines += ["", f"Left out of the {label[measure]} headline (the base is within "
                          f"{100 * CHANCE_MARGIN:.0f} points of chance there, so nothing can be forgotten): "
                          f"{', '.join(left_out)}."]
    earlier = [name for name, m in results["arms"].items() if m.get("from_earlier_evaluation")]
    if earlier:
        lines += ["", f"(earlier): {', '.join(earlier)} come from an earlier evaluation of this run, with the same "
                  "held-out sets; notebook 05's last run did not list them, so they were trained with other "
                  "settings than the line above (their adapters are kept under 05_training)."]
    lines += ["", "Forgetting = base general accuracy - arm general accuracy (positive: the arm forgot). The unseen "
              "column compares the arm and the base on the held-out general questions that do not occur verbatim "
              "in the arm's training data.", ""]
    table = ablation_table(results)
    if table:
        def pm(v, sd):
            return f"{v:.3f}" + (f" ± {sd:.3f}" if sd else "")

        def forgot(r):
            return "-" if r["forgetting_points"] is None else f"{r['forgetting_points']:+.1f}"
        lines += ["## The ablation", "", "| arm | what | general | domain | forgetting (points) | the paper's general "
                  "average |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['arm']} | {r['what']} | {pm(r['general'], r['general_std'])} | "
                  f"{pm(r['domain'], r['domain_std'])} | {forgot(r)} | {r['paper_general_average'] or '-'} |"
                  for r in table]
        lines.append("")
    if results.get("checks"):
        lines += ["## The reproduction's targets, as measured", ""]
        verdict = {True: "met", False: "NOT met", None: "not measurable"}
        lines += [f"- {verdict[c['met']]}: {c['target']} (measured: {c['measured']})" for c in results["checks"]]
        lines.append("")
    lines += ["## Figures", ""] + [f"![{f}]({STAGE}/{f})" for f in figures]
    path = run_dir(run_name) / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def general_measure(results: dict) -> tuple[str, str]:
    """``(accuracy key, forgetting key)`` of the general measure the targets are checked on: the answers, unless
    no general family is informative for them (a base model at chance, notebook 06's ``informative``) while some is
    for multiple choice."""
    informative = results.get("informative") or {}
    if "match" in informative and not informative["match"] and informative.get("mc"):
        return "mc_general_accuracy", "forgetting_mc"
    return "general_accuracy", "forgetting"


def checks(results: dict) -> list[dict]:
    """The targets of the reproduction, evaluated on the measured numbers (they are reported, never tuned for).

    A target is "not measurable" (``met`` None) where the numbers cannot decide it: general targets when the base
    model is at chance on the general set, domain targets when ``domain_only`` learnt nothing measurable."""
    arms, base = results["arms"], results["base"]
    key, forgetting = general_measure(results)
    measure = "general accuracy" if key == "general_accuracy" else "general multiple-choice accuracy"
    informative = results.get("informative", {}).get("mc" if key.startswith("mc") else "match",
                                                      [True] if base[key] >= CHANCE_MARGIN else [])
    learnt = "domain_only" in arms and arms["domain_only"]["domain_accuracy"] >= CHANCE_MARGIN
    out = []
    eps = 1e-9  # 0.85 - 0.83 is 0.020000000000000018

    def add(target, measured, met):
        if not informative and "general" in target:
            measured = (f"{measured}; the base model scores {base[key]:.3f} on this general set, at chance in "
                        "every family, so it cannot show forgetting: uninformative")
            met = None
        elif not learnt and "domain accuracy" in target:
            measured = (f"{measured}; domain_only reaches {arms['domain_only']['domain_accuracy']:.3f} on the "
                        "domain set: nothing measurable was learnt")
            met = None
        out.append({"target": target, "measured": measured, "met": None if met is None else bool(met)})

    if "domain_only" in arms:
        f = arms["domain_only"][forgetting]
        add(f"domain_only loses >= 15 points of {measure}", f"{100 * f:.1f} points", f >= 0.15 - eps)
    if "ours" in arms:
        o = arms["ours"]
        add(f"ours keeps {measure} within 2 points of the base", f"{100 * (base[key] - o[key]):+.1f} points",
            o[forgetting] <= 0.02 + eps)
        if "domain_only" in arms:
            gap = arms["domain_only"]["domain_accuracy"] - o["domain_accuracy"]
            add("ours' domain accuracy within 2 points of domain_only", f"{100 * gap:+.1f} points below", gap <= 0.02 + eps)
        if "public_mix" in arms:
            add(f"ours beats public_mix on {measure}", f"{o[key]:.3f} vs {arms['public_mix'][key]:.3f}",
                o[key] > arms["public_mix"][key])
        if "oracle" in arms:
            ratio = o[key] / max(arms["oracle"][key], 1e-9)
            add(f"ours reaches >= 95% of oracle's {measure}", f"{ratio:.1%}", ratio >= 0.95 - eps)
    return out


SAME_EVALUATION = ("n_general", "n_domain", "eval_sets", "answer_match", "general_families")


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
    if any(earlier.get(k) != results.get(k) for k in SAME_EVALUATION) or \
            any(earlier.get("base", {}).get(k) != results["base"].get(k) for k in base_keys):
        return []
    carried = [arm for arm in earlier.get("arms", {}) if arm not in results["arms"]]
    for arm in carried:
        results["arms"][arm] = {**earlier["arms"][arm], "from_earlier_evaluation": True}
    return carried


def finish(run_name: str, results: dict) -> Path:
    return write_json(stage_dir(run_name, STAGE) / "results.json", results)


def eval_setup(recorded: dict) -> "qlora_training.Setup":
    """The setup stage 05 trained with, on this machine: the same quantisation, on the CPU if no GPU is visible
    (outputs trained on a GPU machine and copied back)."""
    import torch

    setup = qlora_training.Setup(**recorded)
    if setup.device == "cuda" and not torch.cuda.is_available():
        setup = qlora_training.Setup("cpu", "float32", setup.quantization,
                                     "trained on a GPU; evaluated on the CPU with the same quantisation")
    reason = qlora_training.bnb_4bit_works(setup.device) if setup.quantization == "nf4" else ""
    if reason:
        raise RuntimeError(f"notebook 05 trained on a 4-bit base, but here {reason}; evaluate where bitsandbytes "
                           "runs 4-bit (a CUDA GPU, or a CPU with bitsandbytes >= 0.50): scoring an unquantised base "
                           "would count quantisation error as forgetting")
    return setup


def check_trained_data(run_name: str, training: dict, arm_data: dict) -> None:
    """Refuse adapters trained on other data than notebook 04's current arms (04 rerun after 05)."""
    for arm, per_seed in training["arms"].items():
        if arm not in arm_data:
            raise RuntimeError(f"notebook 05 trained arm {arm!r}, which notebook 04's last run no longer builds; "
                               f"rerun notebooks/05_qlora_training.ipynb for run {run_name!r}")
        current = fingerprint(arm_data[arm])
        for m in per_seed:
            path = qlora_training.arm_dir(run_name, arm, m["seed"]) / "metrics.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: rerun notebooks/05_qlora_training.ipynb for run "
                                        f"{run_name!r} (arm {arm!r}, seed {m['seed']})")
            recorded = read_json(path)["settings"]["data"]
            if recorded != current:
                raise RuntimeError(f"arm {arm!r} (seed {m['seed']}): notebook 04's data changed after notebook 05 "
                                   f"trained it; rerun notebooks/05_qlora_training.ipynb for run {run_name!r}")


def load_for_eval(run_name: str, arm: str | None, seed: int | None, base_path: str, setup: "qlora_training.Setup",
                  expected_key: str | None = None):
    """``(model, tokenizer)`` for the base (``arm=None``) or an arm, loaded as stage 05 trained it."""
    tokenizer = load_tokenizer(base_path)
    if arm is None:
        model = qlora_training.load_base(base_path, setup).eval()
    else:
        model = qlora_training.load_adapted(run_name, arm, seed, base_path, setup, expected_key)
    return model, tokenizer


# ===============================================================================================================
# Benchmark scorers (real models): multiple choice by log-likelihood, answers inside sentences, drift from the base
#
# Pure functions over already-rendered prompt strings: the caller decides the frame (the model's chat template via
# ``chat.render_prompt``, or ``plain_prompt``'s "Question: ...\nAnswer:" for a base model). Prompts are tokenised with
# ``chat.encode_prompts`` (one BOS where the model expects one), as everywhere else in the package. Items are dicts
# (rows of ``helpers.benchmarks``' files) or objects with the same attributes (``EvalItem``: ``response`` is read as
# the answer). Accuracies are means over families, as in ``exact_match``.
# ===============================================================================================================


def _get(item, key: str, default=None):
    """A field of a dict row or an attribute of an item; ``answer`` falls back to ``response`` (``EvalItem``)."""
    keys = (key, "response") if key == "answer" else (key,)
    for k in keys:
        value = item.get(k) if isinstance(item, dict) else getattr(item, k, None)
        if value is not None:
            return value
    return default


def _family_means(items: list, correct: list[bool]) -> tuple[float, dict[str, float]]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for item, ok in zip(items, correct):
        hits[str(_get(item, "family", "all"))].append(bool(ok))
    per_family = {f: sum(v) / len(v) for f, v in sorted(hits.items())}
    return (statistics.fmean(per_family.values()) if per_family else 0.0), per_family


def _check_lengths(prompts: list, items: list) -> None:
    if len(prompts) != len(items):
        raise ValueError(f"{len(prompts)} prompts for {len(items)} items: give one rendered prompt per item")


# --- multiple choice by log-likelihood (lm-evaluation-harness, as it scores ARC) ---------------------------------
def plain_prompt(instruction: str) -> str:
    """The frame lm-evaluation-harness gives a base (non-chat) model: "Question: ...\nAnswer:" (score options with
    ``delimiter=" "``). For an instruct model, render with its chat template instead (``chat.render_prompt``,
    ``delimiter=""``)."""
    return f"Question: {instruction}\nAnswer:"


def _continuation_ids(tokenizer, prompts: list[str], options: list[list[str]],
                      delimiter: str) -> list[tuple[list[int], list[int]]]:
    """``(context ids, continuation ids)`` for every (prompt, option) pair, in order.

    As lm-evaluation-harness: trailing spaces of the prompt move to the continuation ("Answer: " + "Paris" is
    scored as "Answer:" + " Paris", the way a tokenizer that glues spaces to words would write it); the continuation
    is the tail of the joint encoding after the context's tokens, or the option encoded alone if the joint encoding
    does not start with them (a merge across the boundary). Newlines are not moved: a chat template's generation
    prompt ("...assistant\\n") stays what generation sees.
    """
    from .chat import encode_prompts

    contexts, joints = [], []
    for prompt, opts in zip(prompts, options):
        n = len(prompt) - len(prompt.rstrip(" "))
        context, lead = (prompt[:-n], prompt[-n:]) if n else (prompt, "")
        for option in opts:
            contexts.append(context)
            joints.append((context, lead + delimiter + option))
    context_ids = dict(zip(dict.fromkeys(contexts), encode_prompts(tokenizer, list(dict.fromkeys(contexts)))))
    whole = encode_prompts(tokenizer, [c + cont for c, cont in joints])
    alone = tokenizer([cont for _, cont in joints], add_special_tokens=False)["input_ids"]
    pairs = []
    for (context, cont_text), w, a in zip(joints, whole, alone):
        ctx = context_ids[context]
        cont = w[len(ctx):] if w[: len(ctx)] == ctx and len(w) > len(ctx) else a
        if not cont or not ctx:
            raise ValueError(f"cannot score {cont_text!r} after {context[-40:]!r}: an empty prompt or option")
        pairs.append((ctx, cont))
    return pairs


def _padded(pairs: list[tuple[list[int], list[int]]], pad: int):
    """Right-padded ids, attention mask and a mask of the positions whose next token is a continuation token."""
    import torch

    width = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    predicts = torch.zeros((len(pairs), width), dtype=torch.bool)
    for row, (p, a) in enumerate(pairs):
        ids[row, : len(p) + len(a)] = torch.tensor(p + a)
        mask[row, : len(p) + len(a)] = 1
        predicts[row, len(p) - 1 : len(p) + len(a) - 1] = True
    return ids, mask, predicts


def _token_logprobs(model, ids, mask, predicts) -> list[float]:
    """Per row: the summed log-probability of the tokens that follow the ``predicts`` positions."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    out = []
    for row in range(ids.shape[0]):
        pos = predicts[row].nonzero()[:, 0]
        logp = torch.log_softmax(logits[row, pos.to(device)].float(), dim=-1)
        out.append(float(logp.gather(-1, ids[row, pos + 1].to(device)[:, None]).sum()))
    return out


def option_logprobs(model, tokenizer, prompts: list[str], options: list[list[str]], *, delimiter: str = " ",
                    batch_size: int = 32, progress: bool | str = False) -> list[list[float]]:
    """The summed log-probability of each option as a continuation of its prompt (``prompt + delimiter + option``),
    one list per prompt. Batched (sorted by length, right-padded, attention-masked) on the model's device; the
    log-softmax is taken only at the continuation's positions (a real vocabulary makes full logits large).

    ``delimiter``: " " for a "Question: ...\\nAnswer:" frame (lm-evaluation-harness's ``target_delimiter``),
    "" after a chat template's generation prompt.
    """
    from tqdm.auto import tqdm

    if len(prompts) != len(options):
        raise ValueError(f"{len(prompts)} prompts for {len(options)} option lists")
    pairs = _continuation_ids(tokenizer, list(prompts), [list(o) for o in options], delimiter)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    flat = [0.0] * len(pairs)
    was_training = model.training
    model.eval()
    try:
        bar = tqdm(total=len(order), disable=not progress,
                   desc=progress if isinstance(progress, str) else "option log-probs")
        lengths = [len(p) + len(a) for p, a in pairs]
        for idx in scoring_batches(lengths, order, batch_size, model.config.vocab_size):
            bar.update(len(idx))
            for i, v in zip(idx, _token_logprobs(model, *_padded([pairs[i] for i in idx], pad))):
                flat[i] = v
        bar.close()
    finally:
        model.train(was_training)
    out, k = [], 0
    for opts in options:
        out.append(flat[k : k + len(opts)])
        k += len(opts)
    return out


def choose(logprobs: list[float], options: list[str]) -> tuple[int, int]:
    """``(pred, pred_norm)``: the option with the highest summed log-probability (``acc``) and the one with the
    highest log-probability per character of the option (``acc_norm``, lm-evaluation-harness's length
    normalisation); ties go to the first."""
    norm = [lp / max(len(o), 1) for lp, o in zip(logprobs, options)]
    return int(np.argmax(logprobs)), int(np.argmax(norm))


def multiple_choice(model, tokenizer, prompts: list[str], items: list, *, delimiter: str = " ",
                    batch_size: int = 32, progress: bool | str = False) -> dict:
    """Score 4-option (or any-option) questions the way lm-evaluation-harness scores ARC: the model's prediction is
    the option it finds most likely as a continuation of the prompt; no generation, so no format to follow.

    ``prompts[i]`` is the rendered question of ``items[i]`` (which has ``choices``, ``label`` and ``family``; the
    prompt may list the options or not, as the caller's frame decides). Returns ``{"accuracy", "accuracy_norm"}``
    (means over families), ``per_family`` / ``per_family_norm``, ``n``, per item ``pred`` / ``pred_norm`` (indices),
    ``correct`` / ``correct_norm`` and the options' ``logprobs``.
    """
    _check_lengths(prompts, items)
    options = [[str(c) for c in _get(item, "choices", [])] for item in items]
    if any(len(o) < 2 for o in options):
        raise ValueError("every item needs 'choices' (two or more options) and 'label'")
    logprobs = option_logprobs(model, tokenizer, prompts, options, delimiter=delimiter, batch_size=batch_size,
                               progress=progress)
    preds = [choose(lp, o) for lp, o in zip(logprobs, options)]
    labels = [int(_get(item, "label")) for item in items]
    correct = [p == y for (p, _), y in zip(preds, labels)]
    correct_norm = [q == y for (_, q), y in zip(preds, labels)]
    acc, per_family = _family_means(items, correct)
    acc_norm, per_family_norm = _family_means(items, correct_norm)
    return {"accuracy": acc, "accuracy_norm": acc_norm, "per_family": per_family, "per_family_norm": per_family_norm,
            "n": len(items), "pred": [p for p, _ in preds], "pred_norm": [q for _, q in preds],
            "correct": correct, "correct_norm": correct_norm, "logprobs": logprobs}


# --- answers inside sentences ----------------------------------------------------------------------------------
def _spans(words: list[str], phrase: list[str]) -> list[tuple[int, int]]:
    n = len(phrase)
    return [(i, i + n) for i in range(len(words) - n + 1) if n and words[i : i + n] == phrase]


def _inside(span: tuple[int, int], other: tuple[int, int]) -> bool:
    return other[0] <= span[0] and span[1] <= other[1] and span != other


def answer_matches(output: str, answer: str, aliases: list[str] | tuple = (),
                   distractors: list[str] | tuple = ()) -> bool:
    """Whether a free-text ``output`` gives ``answer`` (or one of its ``aliases``) and no other option.

    The rules, in order:

    1. Normalise the output and every reference the same way: Unicode accents dropped ("Bogotá" = "Bogota"), lower
       case, commas inside numbers dropped ("3,000" = "3000"), then split into words and numbers; everything else
       (punctuation, hyphens, apostrophes, surrounding whitespace) only separates words ("twenty-one" =
       "twenty one", "40mg" = "40 mg", "Paris." = "Paris"). A decimal point inside a number is kept ("2.5").
       Leading articles (a, an, the) are dropped from the answer, aliases and distractors ("The Hague" -> "hague").
    2. The answer or an alias must occur in the output as a whole-word sequence: "The capital of France is
       Paris." gives "Paris"; "14" does not give "4", "Parisian" does not give "Paris", "4.5" does not give "4".
    3. No distractor may occur as a whole-word sequence ("Paris or Lyon" hedges: wrong), with longest-match
       precedence: an answer occurrence inside a longer distractor occurrence does not count ("South Sudan" does not
       give "Sudan" when "South Sudan" is an option), and a distractor inside an answer occurrence does not count
       ("forty-one" is not hedging towards "forty"). A distractor that normalises to an answer form is ignored.
    4. Units are not converted: "40 mg" is given by "40 mg", "40mg" and "40 MG" (rule 1); "40 milligrams" or a
       bare "40" only where they are listed as aliases (``helpers.benchmarks`` lists both for doses). Number words
       are not numbers ("twelve" does not give "12") unless listed as aliases. Negation is not understood:
       "not Paris" gives "Paris" -- the instructions ask for the bare answer, so this is rare, but it is a limit.

    ``distractors`` are an item's other choices; without them only rules 1-2 apply.
    """
    words = answer_tokens(output, strip_articles=False)
    forms = [f for f in dict.fromkeys(tuple(answer_tokens(a)) for a in (answer, *aliases)) if f]
    others = [d for d in dict.fromkeys(tuple(answer_tokens(d)) for d in distractors) if d and d not in forms]
    hits = [s for f in forms for s in _spans(words, list(f))]
    wrong = [s for d in others for s in _spans(words, list(d))]
    hits_kept = [h for h in hits if not any(_inside(h, w) for w in wrong)]
    wrong_kept = [w for w in wrong if not any(_inside(w, h) for h in hits_kept)]
    return bool(hits_kept) and not wrong_kept


def _distractors(item) -> list[str]:
    """An item's choices other than its answer (by label when it has one, else by normal form)."""
    choices = [str(c) for c in _get(item, "choices", []) or []]
    label = _get(item, "label")
    if label is not None and 0 <= int(label) < len(choices):
        return [c for i, c in enumerate(choices) if i != int(label)]
    answer = normalise_answer(str(_get(item, "answer", "")))
    return [c for c in choices if normalise_answer(c) != answer]


def match_outputs(items: list, outputs: list[str]) -> dict:
    """``answer_matches`` for each (item, output): the item's ``answer``, ``aliases`` and, as distractors, its other
    ``choices``. Returns ``{"accuracy", "per_family", "n", "correct"}`` (accuracy: mean over families)."""
    _check_lengths(outputs, items)
    correct = [answer_matches(o, str(_get(item, "answer", "")), list(_get(item, "aliases", []) or []),
                              _distractors(item)) for item, o in zip(items, outputs)]
    acc, per_family = _family_means(items, correct)
    return {"accuracy": acc, "per_family": per_family, "n": len(items), "correct": correct}


# --- drift from the base: KL(base || tuned) on the base's own answers --------------------------------------------
@contextmanager
def _base_of(model, reference=None):
    """The base distribution: ``reference`` if given, else ``model`` with its peft adapter switched off (one model
    in memory; ``disable_adapter`` also switches off ``modules_to_save`` copies such as a trained embedding)."""
    if reference is not None:
        yield reference
        return
    if not hasattr(model, "disable_adapter"):
        raise TypeError(f"{type(model).__name__} has no adapter to switch off: pass the base model as reference=")
    with model.disable_adapter():
        yield model


def base_answer_ids(model, tokenizer, prompts: list[str], *, reference=None, max_new_tokens: int = 32,
                    batch_size: int = 64, progress: bool | str = False) -> list[list[int]]:
    """The base model's own greedy answers to ``prompts``, as token ids (stop token included when produced): the
    text ``drift_kl`` measures on. Compute them once and pass them to ``drift_kl`` for every arm."""
    with _base_of(model, reference) as base:
        was_training = base.training
        base.eval()
        try:
            outs = generate(base, tokenizer, list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size,
                            progress=progress and (progress if isinstance(progress, str) else "base answers"))
            return [o["ids"] for o in outs]
        finally:
            base.train(was_training)


def _logprobs_at(model, ids, mask, predicts):
    """Full next-token log-distributions (float32) of ``model`` at the ``predicts`` positions, flattened row by row."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return logits[predicts.to(device)].float().log_softmax(-1)


def drift_kl(model, tokenizer, prompts: list[str], *, reference=None, answers: list[list[int]] | None = None,
             max_new_tokens: int = 32, batch_size: int = 16, progress: bool | str = False) -> dict:
    """How far a fine-tuned model's next-token distribution moved from the base's, where the base is at home: the
    mean per-token KL(base || tuned) over the base's own greedy answers to ``prompts``.

    For each prompt, the base answers greedily (``base_answer_ids``, or ``answers`` computed before); both models then
    read prompt + answer, and at each answer token (the prompt and the padding are masked out) the KL between their
    full next-token distributions is taken. The base is ``reference`` if given (a separate model), else ``model``
    with its peft adapter switched off (``with model.disable_adapter():``, one model in memory). A model against
    itself gives 0 (up to float error); the number grows as training moves the model on the base's own text, which
    general-skill accuracy only sees when a greedy answer flips.

    Returns ``{"kl": mean over all answer tokens, "per_prompt": mean KL per prompt, "n_tokens", "answers"}``.
    """
    from tqdm.auto import tqdm

    from .chat import encode_prompts

    prompts = list(prompts)
    if answers is None:
        answers = base_answer_ids(model, tokenizer, prompts, reference=reference, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, progress=progress and "base answers")
    if len(answers) != len(prompts):
        raise ValueError(f"{len(answers)} answers for {len(prompts)} prompts")
    pairs = list(zip(encode_prompts(tokenizer, prompts), [list(a) for a in answers]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = [i for i in sorted(range(len(pairs)), key=lambda i: sum(map(len, pairs[i]))) if pairs[i][1]]
    sums, counts = [0.0] * len(pairs), [0] * len(pairs)
    models = [model] + ([reference] if reference is not None else [])
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        bar = tqdm(total=len(order), disable=not progress, desc=progress if isinstance(progress, str) else "drift KL")
        lengths = [sum(map(len, p)) for p in pairs]
        for idx in scoring_batches(lengths, order, batch_size, model.config.vocab_size):
            bar.update(len(idx))
            ids, mask, predicts = _padded([pairs[i] for i in idx], pad)
            with _base_of(model, reference) as base:  # the base pass inside the context, the tuned pass outside
                lb = _logprobs_at(base, ids, mask, predicts)
            lt = _logprobs_at(model, ids, mask, predicts)
            kl = (lb.exp() * (lb - lt.to(lb.device))).sum(-1).cpu()
            counts_here = predicts.sum(1).tolist()
            k = 0
            for i, c in zip(idx, counts_here):
                sums[i], counts[i] = float(kl[k : k + c].sum()), c
                k += c
        bar.close()
    finally:
        for m, t in zip(models, was_training):
            m.train(t)
    total = sum(counts)
    return {"kl": sum(sums) / total if total else 0.0,
            "per_prompt": [s / c if c else 0.0 for s, c in zip(sums, counts)],
            "n_tokens": total, "answers": answers}


# ---------------------------------------------------------------------------------------------------------------
# A model's scores on the shipped sets, from the command line
# ---------------------------------------------------------------------------------------------------------------
def baseline(model_name: str, general: str = "data/general_eval.jsonl", domain: str = "data/clinical_eval.jsonl",
             *, max_new_tokens: int = 48, n_per_family: int = 0, run_name: str = "lab", progress: bool = True) -> dict:
    """Every scorer on both sets for one model, per family: strict exact match, lenient match (the answer inside a
    sentence) and multiple choice (acc and acc_norm), greedy, with the model's chat template (or the few-shot frame
    for a model without one). Families at chance are marked: they cannot show forgetting."""
    from . import models
    from .chat import frame_for

    model, tokenizer = models.load(run_name, model_name)
    frame = frame_for(tokenizer)
    sets = {name: per_family_sample(items, n_per_family, 0) for name, items in eval_sets(general, domain).items()}
    out = {"model": model_name, "frame": frame.kind, "max_new_tokens": max_new_tokens, "sets": {}}
    for name, items in sets.items():
        prompts = [frame.render(tokenizer, e.instruction) for e in items]
        outs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=32,
                        stop_strings=frame.stop_strings, progress=progress and f"{name}: answers")
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
    """``python -m helpers.evaluation baseline MODEL [--n-per-family N]``: print a model's scores on the shipped
    general and clinical sets and write them to ``outputs/baselines/<model>.json``."""
    import argparse

    from .runs import outputs_root, safe_name

    parser = argparse.ArgumentParser(prog="python -m helpers.evaluation", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("baseline", help="every scorer on data/general_eval.jsonl and data/clinical_eval.jsonl")
    b.add_argument("model", help="a packaged model name (smollm2-135m-instruct, gemma-3-270m), a folder or a hub id")
    b.add_argument("--n-per-family", type=int, default=0, help="questions per family (0: all)")
    b.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    result = baseline(args.model, n_per_family=args.n_per_family, max_new_tokens=args.max_new_tokens)
    print(format_baseline(result))
    path = write_json(outputs_root() / "baselines" / f"{safe_name(args.model)}.json", result)
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
