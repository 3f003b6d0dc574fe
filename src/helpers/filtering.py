"""Stage 03 (``notebooks/03_filtering.ipynb``): score every candidate response, keep the best, dedup.

The scorers (likelihood committee, LLM judges, reward model) and their registry live in the service
``helpers.committee``; this stage builds the ones notebook 03 names from its parameters (``score_candidates``) and
decides what to keep. The lab's verifier (ground truth) is not used here: notebook 03 computes it in a lab-only cell
to *measure* the selection, or as a scorer only when a preset asks for it explicitly.

Candidates that cannot be kept whatever their score (empty, unfinished, too long: ``format_reason``) are not scored
(``scorable``). Each scorer's scores are cached in ``scores/<scorer>.json``, keyed by the candidates and the scorer's
models and settings (``cached_scores``), so a rerun, or a failure in a later scorer, loses nothing computed.

``select`` keeps the best candidate per instruction, applies a minimum score and format filters, then removes
exact, MinHash and embedding near-duplicates. Every dropped row keeps its reason.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import committee
from . import workers as workers_service
from .runs import read_json, require, save_figure, stage_dir, trouble, write_json, write_jsonl
from .text import normalise

STAGE = "03_filtering"


# ----------------------------------------------------------------------------------------------------------------
# Scoring the candidates (the scorers: helpers.committee)
# ----------------------------------------------------------------------------------------------------------------
def format_reason(row: dict, max_response_words: int) -> str | None:
    if not row["response"].strip():
        return "empty_response"
    if not row.get("finished", True):
        return "unfinished"
    if len(row["response"].split()) > max_response_words:
        return "too_long"
    return None


def scorable(rows: list[dict], max_response_words: int) -> list[bool]:
    """Which candidates are worth scoring: the others are dropped by ``select`` for their form whatever their score."""
    return [format_reason(r, max_response_words) is None for r in rows]


def cached_scores(run_name: str, scorer, rows: list[dict], mask: list[bool],
                  need: tuple[str, ...] = (), workers: int = 1, build: tuple[str, dict] | None = None
                  ) -> tuple[list[float | None], dict]:
    """``scorer``'s scores of the rows where ``mask`` is true (``None`` elsewhere) and what it reported about them
    (judges: ``parse_rate``, ``parse_failures``), from
    ``03_filtering/scores/<scorer>.json`` when that file was computed for the same candidates, mask and scorer
    settings (its models' content, rubric...) and holding every report in ``need`` (e.g. ``per_model``, which
    caches written before it existed lack); else computed and written there. This key stays beside the manifest
    stamps because it is finer: a rerun of 03 with other filters reuses the scores, which the stamps cannot tell.

    ``workers`` > 1 (0: one per visible GPU; on a CPU one) splits the rows among worker processes
    (``helpers.workers``), each building the scorer from ``build`` (its name and notebook 03's parameters) and
    scoring its part: every scorer rates each row on its own. LLM judges then probe each part's first rows (a judge
    that cannot rate fails in the first worker that finds out), and their parse reports are added up over the
    parts (``merge_parts``)."""
    key = hashlib.sha256(json.dumps([scorer.name, scorer.config(), mask,
                                     [(r["instruction"], r["response"]) for r in rows]]).encode()).hexdigest()[:16]
    path = stage_dir(run_name, STAGE) / "scores" / f"{scorer.name}.json"
    reported = ("parse_rate", "parse_failures", "per_model")
    cached = read_json(path) if path.exists() else {}
    if cached.get("key") == key and all(k in cached for k in need):
        return cached["scores"], {k: cached[k] for k in reported if k in cached}
    picked = [r for r, m in zip(rows, mask) if m]

    def spread(values):  # one score per picked row -> one per row, None where unscored
        it = iter(values)
        return [next(it) if m else None for m in mask]

    plan = workers_service.plan(len(picked), workers if build is not None else 1, workers_service.device())
    if plan.workers > 1:
        k = plan.workers
        parts = [picked[len(picked) * i // k : len(picked) * (i + 1) // k] for i in range(k)]
        print(f"scoring in {k} workers on {', '.join(sorted(set(plan.devices)))} ({plan.reason})")
        values, per_model, extra = merge_parts(workers_service.run(
            score_part, [(f"{scorer.name} part {i + 1}/{k}", (*build, part), {}) for i, part in enumerate(parts)],
            plan))
        scores = spread(values)
    else:
        scores = spread(scorer.score(picked) if picked else [])
        per_model = dict(getattr(scorer, "per_model", None) or {})
        extra = {k: dict(getattr(scorer, k)) for k in ("parse_rate", "parse_failures") if hasattr(scorer, k)}
    if per_model:  # the likelihood committee: each model's own scores (the ablation's)
        extra["per_model"] = {name: spread(v) for name, v in per_model.items()}
    write_json(path, {"key": key, "scorer": scorer.name, "n_scored": len(picked), **extra, "scores": scores})
    return scores, extra


def score_part(name: str, params: dict, rows: list[dict]) -> dict:
    """One worker's share of ``cached_scores``: scorer ``name``, built from notebook 03's ``params``, on ``rows``:
    ``{"scores", "per_model"}``, and a judge's ``parse_failures`` with the rows it rated (``n``)."""
    scorer = committee.build(name, {**params, "progress": False})
    out = {"scores": scorer.score(rows), "per_model": dict(getattr(scorer, "per_model", None) or {}), "n": len(rows)}
    if hasattr(scorer, "parse_failures"):
        out["parse_failures"] = dict(scorer.parse_failures)
    return out


def merge_parts(done: list[dict]) -> tuple[list, dict, dict]:
    """The workers' parts (``score_part``'s results, in order) as one process would report them: the scores and
    each model's own in row order, and for judges the parse failures added up and each judge's readable share of
    all the rows."""
    values = [v for d in done for v in d["scores"]]
    per_model = {name: [v for d in done for v in d["per_model"][name]] for name in done[0]["per_model"]}
    if "parse_failures" not in done[0]:
        return values, per_model, {}
    failures = {j: sum(d["parse_failures"][j] for d in done) for j in done[0]["parse_failures"]}
    n = sum(d["n"] for d in done)
    return values, per_model, {"parse_rate": {j: 1 - f / max(n, 1) for j, f in failures.items()},
                               "parse_failures": failures}


def score_candidates(params: dict, rows: list[dict]) -> tuple[dict[str, list[float | None]], dict[str, dict]]:
    """Notebook 03's scoring: each scorer named in ``params["scorers"]``, built from the notebook's parameters
    (``committee.build``), scores the candidates worth scoring (``scorable``), through its cache (``cached_scores``).
    Returns each scorer's scores and its reports (judges: ``parse_rate``, ``parse_failures``; the likelihood
    committee: ``per_model``, required when ``params["ablation"]``). Scorers the notebook computes itself
    (``lab_verifier``, lab-only) are left out."""
    mask = scorable(rows, params["max_response_words"])
    print(f"{sum(mask):,} of {len(rows):,} candidates can be kept and are scored")
    scores, reports = {}, {}
    for name in params["scorers"]:
        scorer = committee.build(name, params)
        if scorer is None:
            continue
        need = ("per_model",) if name == "likelihood" and params["ablation"] else ()
        scores[name], reports[name] = cached_scores(params["run_name"], scorer, rows, mask, need,
                                                    params.get("score_workers", 1), (name, params))
        if "parse_rate" in reports[name]:
            print("readable ratings per judge:", {j: f"{r:.0%}" for j, r in reports[name]["parse_rate"].items()})
    return scores, reports


# ----------------------------------------------------------------------------------------------------------------
# Selection and dedup
# ----------------------------------------------------------------------------------------------------------------
def minhash_duplicates(texts: list[str], threshold: float = 0.9, num_perm: int = 128, ngram: int = 5) -> list[bool]:
    """True for each text that is a near-duplicate (estimated Jaccard >= threshold on character n-grams) of an
    earlier one."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dup = []
    for i, text in enumerate(texts):
        t = normalise(text)
        m = MinHash(num_perm=num_perm, seed=1)  # one vectorised update: the same hash values as one per n-gram
        m.update_batch([g.encode() for g in {t[j : j + ngram] for j in range(max(1, len(t) - ngram + 1))}])
        hit = bool(lsh.query(m))
        dup.append(hit)
        if not hit:
            lsh.insert(str(i), m)
    return dup


def embedding_duplicates(vectors: np.ndarray, threshold: float = 0.98) -> list[bool]:
    """True for each row whose cosine similarity to an earlier kept row is >= threshold (vectors unit-normalised)."""
    kept: list[int] = []
    dup = []
    for i in range(len(vectors)):
        hit = bool(kept) and float((vectors[kept] @ vectors[i]).max()) >= threshold
        dup.append(hit)
        if not hit:
            kept.append(i)
    return dup


SELECT_PARAMETERS = ("min_score", "max_response_words", "minhash_threshold", "embedding_threshold", "embedding_model")


def select_options(params: dict) -> dict:
    """``select``'s filters, from notebook 03's parameters."""
    return {k: params[k] for k in SELECT_PARAMETERS}


def select(rows: list[dict], scores: list[float | None], *, min_score: float | None = None,
           max_response_words: int = 200, minhash_threshold: float | None = 0.9,
           embedding_threshold: float | None = 0.98, embedding_model: str = "all-MiniLM-L6-v2") -> tuple[list[dict], Counter]:
    """Best candidate per instruction, filtered and deduplicated. Sets ``score`` and ``dropped`` on every row."""
    dropped: Counter = Counter()

    def drop(row, reason):
        row["dropped"] = reason
        dropped[reason] += 1

    by_instruction = defaultdict(list)
    for row, s in zip(rows, scores):
        row["score"], row["dropped"] = s, None
        reason = format_reason(row, max_response_words) or ("unscored" if s is None else None)
        if reason:
            drop(row, reason)
        else:
            by_instruction[row["instruction_id"]].append(row)
    if rows and not by_instruction and all(r["dropped"] != "unscored" for r in rows):
        raise ValueError(f"all {len(rows)} candidates were dropped for their form before scoring ({dict(dropped)}); "
                         "for 'unfinished', raise max_new_tokens in notebook 02's sampling; for 'too_long', raise "
                         "max_response_words")
    if rows and all(s is None for s in scores):
        raise ValueError(f"none of the {len(rows)} candidates got a score from the selecting scorer (the first in "
                         "scorers): LLM judges whose ratings never parse (see judge_parse_failures) or a verifier that "
                         "rejects every instruction; use stronger judges, or put likelihood or reward first in scorers")
    best = []
    for iid in sorted(by_instruction):
        group = by_instruction[iid]
        top = max(group, key=lambda r: r["score"])  # first of equals wins: deterministic
        for r in group:
            if r is not top:
                drop(r, "not_best")
        if min_score is not None and top["score"] < min_score:
            drop(top, "below_min_score")
        else:
            best.append(top)
    seen, kept = set(), []
    for r in best:
        key = (normalise(r["instruction"]), normalise(r["response"]))
        if key in seen:
            drop(r, "duplicate_exact")
        else:
            seen.add(key)
            kept.append(r)
    if minhash_threshold is not None and kept:
        flags = minhash_duplicates([r["instruction"] + "\n" + r["response"] for r in kept], minhash_threshold)
        for r, f in zip(kept, flags):
            if f:
                drop(r, "near_duplicate_minhash")
        kept = [r for r, f in zip(kept, flags) if not f]
    if embedding_threshold is not None and kept:
        from .embeddings import embed

        flags = embedding_duplicates(embed([r["instruction"] + "\n" + r["response"] for r in kept], embedding_model),
                                     embedding_threshold)
        for r, f in zip(kept, flags):
            if f:
                drop(r, "near_duplicate_embedding")
        kept = [r for r, f in zip(kept, flags) if not f]
    return kept, dropped


# ----------------------------------------------------------------------------------------------------------------
# The paper's ablation (lab-full): answers chosen with less of the method
# ----------------------------------------------------------------------------------------------------------------
ABLATION = {"1x1": "the base model's first answer to each instruction, unfiltered",
            "1x3_self": "the base model's three answers, the best by the base's own likelihood, filtered like ours",
            "weak": "the weakest generator's first answer to each instruction, unfiltered"}


def unfiltered(rows: list[dict], model: str) -> list[dict]:
    """One answer per instruction from ``model``: its first sample as it is (no scoring, no dedup, unfinished answers
    included, ``score`` None). Only empty answers are left out: there is nothing to train on."""
    return [{**r, "score": None} for r in rows if r["model"] == model and r["sample"] == 0 and r["response"].strip()]


def ablation_selections(rows: list[dict], per_model: dict[str, list[float | None]], base: str, weak: str,
                        **select_kwargs) -> dict[str, list[dict]]:
    """The answers of the paper's ablation (``ABLATION``), from the same candidates as ours: ``per_model`` is the
    likelihood committee's score of each candidate per model (notebook 03's ``scores/likelihood.json``), ``base``
    the model notebook 01 sampled from, ``weak`` the weakest generator. ``select_kwargs``: ``select``'s filters."""
    generators = sorted({r["model"] for r in rows})
    for role, name in (("base", base), ("weakest generator", weak)):
        if name not in generators:
            raise ValueError(f"ablation: the {role} {name!r} answered none of the candidates; notebook 02's "
                             f"generators were {generators}")
    if base not in per_model:
        raise ValueError(f"ablation: the self-filter needs the base model {base!r} in the likelihood committee "
                         f"(committee: {sorted(per_model)})")
    own = [i for i, r in enumerate(rows) if r["model"] == base]
    self_kept, _ = select([dict(rows[i]) for i in own], [per_model[base][i] for i in own], **select_kwargs)
    return {"1x1": unfiltered(rows, base), "1x3_self": self_kept, "weak": unfiltered(rows, weak)}


def run_ablation(params: dict, rows: list[dict], reports: dict[str, dict]) -> tuple[dict[str, int], str]:
    """Notebook 03's ablation (``params["ablation"]``): the variants of ``ablation_selections``, from the likelihood
    committee's scores per model (``score_candidates``' ``reports``), the base model notebook 01 sampled from and
    ``params["weak_generator"]``, filtered like ours, saved (``save_ablation``). Returns their sizes and the base."""
    run_name = params["run_name"]
    base = read_json(require(run_name, "01_reconstruct", "manifest.json"))["params"]["model"]
    if not params["weak_generator"]:
        raise ValueError("ablation = True needs weak_generator: the weakest of notebook 02's generators")
    per_model = reports.get("likelihood", {}).get("per_model", {})
    variants = ablation_selections(rows, per_model, base, params["weak_generator"], **select_options(params))
    return save_ablation(run_name, variants), base


def save_ablation(run_name: str, selections: dict[str, list[dict]]) -> dict[str, int]:
    """``03_filtering/selected_<variant>.jsonl`` per variant (the fields of ``selected.jsonl``); their sizes."""
    d = stage_dir(run_name, STAGE)
    for name, kept in selections.items():
        _write_selected(d / f"selected_{name}.jsonl", kept)
    return {name: len(kept) for name, kept in selections.items()}


# ----------------------------------------------------------------------------------------------------------------
# Figures, files, metrics
# ----------------------------------------------------------------------------------------------------------------
FUNNEL = ["empty_response", "unfinished", "too_long", "unscored", "not_best", "below_min_score", "duplicate_exact",
          "near_duplicate_minhash", "near_duplicate_embedding"]


def plot_funnel(n_candidates: int, dropped: Counter, path: Path) -> Path:
    labels, values, left = ["candidates"], [n_candidates], n_candidates
    for reason in FUNNEL:
        if dropped.get(reason):
            left -= dropped[reason]
            labels.append(f"- {reason}")
            values.append(left)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1))
    ax.barh(labels[::-1], values[::-1], color="tab:blue")
    for y, v in enumerate(values[::-1]):
        ax.text(v, y, f" {v:,}", va="center", fontsize=9)
    ax.set_xlabel("rows remaining")
    ax.set_title("Filtering funnel")
    return save_figure(fig, path)


def plot_scores(all_scores: dict[str, list[float | None]], path: Path, split: list[bool] | None = None,
                split_labels: tuple[str, str] = ("", "")) -> Path:
    """Histogram of each scorer's scores; with ``split``, two histograms (e.g. correct vs wrong, lab only)."""
    fig, axes = plt.subplots(1, len(all_scores), figsize=(5 * len(all_scores), 3.2), squeeze=False)
    for ax, (name, scores) in zip(axes[0], all_scores.items()):
        vals = np.array([np.nan if s is None else s for s in scores], dtype=float)
        ok = ~np.isnan(vals)
        bins = np.linspace(np.nanmin(vals), np.nanmax(vals), 40) if ok.any() else 10
        if split is None:
            ax.hist(vals[ok], bins=bins)
        else:
            sp = np.array(split)
            ax.hist(vals[ok & sp], bins=bins, alpha=0.6, label=split_labels[0])
            ax.hist(vals[ok & ~sp], bins=bins, alpha=0.6, label=split_labels[1])
            ax.legend()
        ax.set_title(f"{name} scores ({(~ok).sum()} missing)")
        ax.set_xlabel("score")
    return save_figure(fig, path)


def save(run_name: str, rows: list[dict], kept: list[dict]) -> Path:
    d = stage_dir(run_name, STAGE)
    write_jsonl(d / "candidates.jsonl", rows)
    _write_selected(d / "selected.jsonl", kept)
    return d


def _write_selected(path: Path, kept: list[dict]) -> Path:
    """The kept answers with the fields notebook 04 reads (``selected.jsonl`` and the ablation's variants)."""
    return write_jsonl(path, ({k: r[k] for k in ("instruction_id", "instruction", "response", "model", "sample",
                                                  "score")} for r in kept))


def metrics(rows: list[dict], kept: list[dict], dropped: Counter, primary: str, reports: dict[str, dict]) -> dict:
    """The stage's numbers; ``reports``: ``score_candidates``' reports (the judges' readable ratings)."""
    n_instructions = len({r["instruction_id"] for r in rows})
    judge_parse_rate = {j: rate for rep in reports.values() for j, rate in rep.get("parse_rate", {}).items()}
    judge_parse_failures = sum(sum(rep.get("parse_failures", {}).values()) for rep in reports.values())
    warnings = trouble({
        **{f"judge {j!r} gave a readable rating for only {rate:.0%} of the candidates (the rest count as missing)":
           rate < 0.9 for j, rate in judge_parse_rate.items()},
        f"only {len(kept)} of {n_instructions} instructions kept an answer; see the funnel for why":
            len(kept) < 0.5 * n_instructions,
    })
    return {"n_candidates": len(rows), "n_selected": len(kept), "n_instructions": n_instructions,
            "primary_scorer": primary, "judge_parse_failures": judge_parse_failures,
            "judge_parse_rate": judge_parse_rate, "dropped": dict(dropped),
            "selected_by_model": dict(Counter(r["model"] for r in kept)), "warnings": warnings}
