"""Stage 04 (``notebooks/04_mixing.ipynb``): mix general data into the domain data, one dataset per comparison arm.

Arms (all in TRL's ``messages`` format, saved with ``datasets``; same domain rows and same total size in each):

* ``domain_only``: the domain rows, repeated to the common total size (the same number of training examples as
  the other arms, all of them domain: the usual fine-tune that forgets);
* ``public_mix``: domain + a public SFT set (the paper's ShareGPT/Alpaca baseline), at the same ratio;
* ``ours``: domain + the reconstructed-and-filtered data from notebook 03 (optionally stratified to the cluster
  shares that notebook 01 sampled, which undoes exact dedup flattening frequent clusters);
* ``oracle`` (lab only): domain + data drawn from the base model's true hidden mixture.

With ``general_share = s`` and ``n_domain`` domain rows, every arm has ``N = round(n_domain / (1 - s))`` rows.
``n_domain = 0`` takes the largest ``n_domain`` for which no mixed arm needs repeated general rows in one pass.

``general_passes = P`` (default 1) makes every arm ``P`` passes long, in order: pass ``p`` holds every domain row once
beside its own draw of general rows (the one-pass draw's size and cluster shares), shuffled within the pass, each
row marked with its ``pass``. The draws go round each pool (stratified: each cluster) in a shuffled order, so that a
general row comes back only after the rest of its pool. Notebook 05 trains such an arm pass after pass (a sequential
sampler) and, at ``domain_epochs = P``, sees each domain row once per pass as before, but meets general rows it has
not seen in every pass the pool allows, instead of one draw ``P`` times (``general_passes = 1``: an epoch-based run
over one mixed set, as the paper trains).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt

from . import arms as registry
from .datafiles import DataError, load_conversations
from .runs import read_json, read_jsonl, require, save_figure, stage_dir, trouble, write_json

STAGE = "04_mixing"


class Inputs(NamedTuple):
    domain: list[dict]                # the domain rows, as messages
    public: list[dict]                # the public SFT rows (empty: no public_mix arm)
    ours: list[dict]                  # notebook 03's selected answers, as messages
    ours_clusters: list[int]          # their notebook-01 clusters
    shares: dict[int, float] | None   # the cluster shares 01 sampled (stratify), else None
    sources: dict[str, str]           # the files read for domain_data and public_data


def read_inputs(run_name: str, lab: bool, domain_data: str, public_data: str, stratify: bool) -> Inputs:
    """What the arms are built from: the domain and public files (in the lab, notebook 00's when left empty), notebook
    03's selection and notebook 01's cluster shares."""
    if not (lab or domain_data):
        raise DataError("domain_data is empty: with lab = False, name your domain SFT file (e.g. "
                        "data/clinical_train.jsonl)")
    domain_source = domain_data or str(require(run_name, "00_lab", "domain_train.jsonl"))
    public_source = public_data or (str(require(run_name, "00_lab", "public_sft.jsonl")) if lab else "")
    ours, ours_clusters = general_rows_from_selected(run_name)
    return Inputs(load_conversations(domain_source), load_conversations(public_source) if public_source else [],
                  ours, ours_clusters, cluster_shares_sampled(run_name) if stratify else None,
                  {"domain_data": domain_source, "public_data": public_source})


def sizes(n_domain_available: int, n_general_available: int, general_share: float, n_domain: int = 0) -> dict:
    """How many domain and general rows each arm gets."""
    if not 0 < general_share < 1:
        raise ValueError(f"general_share must be between 0 and 1 (exclusive), got {general_share}")
    fit = int(n_general_available * (1 - general_share) / general_share + 1e-9)  # 120 * 0.2 / 0.8 is 29.99...
    if n_domain == 0:
        n_domain = min(n_domain_available, fit)
        if n_domain == 0:
            raise ValueError(f"{n_general_available} general row(s) at general_share={general_share} leave room for no "
                             f"domain row ({math.ceil(general_share / (1 - general_share) - 1e-9)} general rows per "
                             f"domain row): generate more general rows in notebooks 01-03, or lower general_share")
    if n_domain > n_domain_available:
        raise ValueError(f"n_domain={n_domain} but the domain data has {n_domain_available} rows; lower n_domain")
    total = round(n_domain / (1 - general_share))
    if total - n_domain > n_general_available:
        raise ValueError(f"n_domain={n_domain} at general_share={general_share} needs {total - n_domain} general rows, "
                         f"but only {n_general_available} were selected; lower n_domain (0 picks the largest that "
                         f"fits: {fit}) or generate more in notebooks 01-03")
    return {"n_domain": n_domain, "n_general": total - n_domain, "total": total,
            "n_domain_unused": n_domain_available - n_domain}


def _apportion(weights: dict[int, float], n: int) -> dict[int, int]:
    """``n`` split in proportion to ``weights`` (largest remainder), summing to ``n`` exactly."""
    total = sum(weights.values())
    quota = {c: n * w / total for c, w in weights.items()}
    counts = {c: int(q) for c, q in quota.items()}
    for c in sorted(quota, key=lambda c: quota[c] - counts[c], reverse=True)[: n - sum(counts.values())]:
        counts[c] += 1
    return counts


def stratified_sample(rows: list[dict], clusters: list[int], shares: dict[int, float], n: int, seed: int,
                      exact_shares: bool = False) -> list[dict]:
    """``n`` rows whose cluster shares follow ``shares`` as closely as the rows allow, with no row twice while
    ``rows`` has ``n`` or more: a cluster with fewer rows than its share asks for gives them all, and the rest of its
    quota goes to the other clusters in proportion to their shares. Rows are reused only when ``n > len(rows)``, or
    with ``exact_shares``, where a short cluster reuses its rows to keep its share."""
    return stratified_passes(rows, clusters, shares, n, seed, exact_shares)[0]


def stratified_passes(rows: list[dict], clusters: list[int], shares: dict[int, float], n: int, seed: int,
                      exact_shares: bool = False, passes: int = 1) -> list[list[dict]]:
    """``passes`` draws of ``n`` rows, each with ``stratified_sample``'s cluster counts: each cluster's rows in a
    shuffled order, taken round and round, so that within a cluster no row comes back before all the others were
    used (the first draw is ``stratified_sample``'s)."""
    rng = random.Random(seed)
    by = defaultdict(list)
    for r, c in zip(rows, clusters):
        by[c].append(r)
    weights = {c: shares.get(c, 0) for c in by}
    if not sum(weights.values()):
        weights = {c: 1.0 for c in by}
    counts = _apportion(weights, n)
    if n <= len(rows) and not exact_shares:
        full: set[int] = set()
        while over := sum(max(0, counts[c] - len(by[c])) for c in by):
            full |= {c for c in by if counts[c] >= len(by[c])}
            counts = {c: min(k, len(by[c])) for c, k in counts.items()}
            open_ = {c: weights[c] for c in by if c not in full and weights[c] > 0} or \
                {c: 1.0 for c in by if c not in full}
            for c, k in _apportion(open_, over).items():
                counts[c] += k
    out: list[list[dict]] = [[] for _ in range(passes)]
    for c in sorted(by):
        pool = by[c][:]
        rng.shuffle(pool)
        k = counts[c]
        cycle = [pool[i % len(pool)] for i in range(k * passes)]
        for p in range(passes):
            out[p] += cycle[p * k:(p + 1) * k]
    for picked in out:
        rng.shuffle(picked)
    return out


def _pick(pool: list[dict], clusters: list[int] | None, shares: dict[int, float] | None, n: int, seed: int,
          exact_shares: bool = False, passes: int = 1) -> list[list[dict]]:
    """``passes`` draws of ``n`` rows of ``pool`` for an arm that may reuse rows (the sweep, the ablation, a short
    pool, several passes): by ``shares`` over the clusters (``stratified_passes``), else a seeded shuffle of the pool
    taken round and round."""
    if shares:
        return stratified_passes(pool, clusters, shares, n, seed, exact_shares, passes)
    order = random.Random(seed + 1).sample(pool, len(pool))
    cycle = [order[i % len(order)] for i in range(n * passes)]
    return [cycle[p * n:(p + 1) * n] for p in range(passes)]


def reuse(draws: list[list[dict]]) -> float:
    """How often each general row the draws use is used, on average (1.0: none twice)."""
    rows = [id(r) for picked in draws for r in picked]
    return round(len(rows) / len(set(rows)), 2) if rows else 0.0


def cluster_shares_sampled(run_name: str) -> dict[int, float]:
    """Share of each 01 cluster among *all* usable samples (duplicates included), i.e. before dedup."""
    from .reconstruct_distribution import load_instructions, load_samples
    from .text import normalise

    cluster_of = {normalise(r["instruction"]): r["cluster"] for r in load_instructions(run_name)}
    counts = Counter(cluster_of[normalise(s["text"])] for s in load_samples(run_name)
                     if s["dropped"] in (None, "duplicate") and normalise(s["text"]) in cluster_of)
    n = sum(counts.values())
    return {c: k / n for c, k in counts.items()}


SHARE_TOLERANCE = 0.05  # a sweep arm whose whole rows miss its general share by more than this is a warning
FEW_DOMAIN_ROWS = 10  # fewer domain rows than this in the arms is a warning: the domain is a handful of facts


def build_arms(domain: list[dict], general: dict[str, list[dict]], general_share: float = 0.83, n_domain: int = 0,
               seed: int = 0, ours_clusters: list[int] | None = None, cluster_shares: dict[int, float] | None = None,
               sweep_shares: list[float] = (), unused_domain_expected: bool = False,
               ablation: dict[str, tuple[list[dict], list[int], dict[int, float] | None, bool]] | None = None,
               sdft: bool = False, general_passes: int = 1) -> tuple[dict[str, list[dict]], dict]:
    """``general`` maps arm name (``public_mix``, ``ours``, ``oracle``...) to its pool of general rows.

    ``sweep_shares`` adds one arm ``ours_g<percent>`` per general share: the same domain rows plus as many of ``ours``
    rows as that share needs (reused when the pool is short: a warning, and ``general_reused``), for the ratio sweep
    in notebook 06. The plan's
    ``sweep`` maps every arm of the sweep (``domain_only`` at 0 and ``ours`` included) to its general share.

    The arms' sizes follow ``ours``' pool (or the smallest pool without ``ours``); another arm's smaller pool is
    reused to that size, a warning (``general_reused`` in the plan: how often each row is used). Domain rows left
    unused (too few general rows to balance them at ``general_share``) are a warning, or a note where that is by
    design (``unused_domain_expected``: the lab's domain pool is larger than its general pool).

    ``ablation`` maps an arm name to ``(rows, cluster ids, cluster shares or None, exact_shares)``: arms of the same
    size as ``ours``, sampled like it (by the shares given, else uniformly), that do not set the sizes: a pool
    smaller than the arm reuses rows, recorded in the plan's ``ablation``.

    ``sdft`` adds ``sdft`` and ``sdft_ours``: the rows of ``domain_only`` and ``ours``, which notebook 05 trains with
    self-distillation (SDFT) instead of SFT (``arms.ARMS``' ``method``).

    ``general_passes``: how many passes every arm holds, in order (module docstring; rows marked with their
    ``pass``). ``general_reused`` records every arm whose general rows repeat, with how often each is used."""
    if isinstance(general_passes, bool) or not isinstance(general_passes, int) or general_passes < 1:
        raise ValueError(f"general_passes = {general_passes!r}: give a whole number of at least 1 (1: one draw of "
                         "general rows that every pass of notebook 05 repeats; notebook 05's domain_epochs: new "
                         "general rows for each pass over the domain rows, as far as the pool reaches)")
    passes = general_passes
    rng = random.Random(seed)
    # every mixed arm gets the same general rows count, set by the method's own pool (`ours`): a baseline's smaller
    # pool (a small public set) is reused to that size rather than capping every arm and dropping domain rows
    sizer = "ours" if "ours" in general else min(general, key=lambda name: len(general[name]))
    if not general[sizer]:
        raise ValueError(f"arm {sizer!r}: no general rows (notebook 03 selected none): the arms cannot be mixed")
    plan = sizes(len(domain), len(general[sizer]), general_share, n_domain)
    fix = ("generate more general rows (n_samples in 01, samples in 02)" if sizer == "ours"
           else f"give {sizer} a larger general set")
    unused = (f"only {plan['n_domain']} of the {len(domain)} domain rows are used: at general_share={general_share} "
              f"they need {plan['n_general']} general rows in every mixed arm, {sizer} has {len(general[sizer])}"
              f", and more domain rows would need more. To use more domain data, {fix} or lower general_share")
    short = {name: len(pool) for name, pool in general.items() if 0 < len(pool) < plan["n_general"]}
    over = f" over {passes} passes" if passes > 1 else ""
    reused = {f"{name} has {n} general rows for the {plan['n_general'] * passes} of every mixed arm{over}: each is "
              f"used about {plan['n_general'] * passes / n:.1f} times (its arm compares less varied general data); "
              "give it a larger set to compare at full variety": True for name, n in short.items()}
    few = (f"the arms hold only {plan['n_domain']} domain row(s), so domain_only repeats each about "
           f"{plan['total'] * passes // max(plan['n_domain'], 1)} times and the domain results rest on that few facts; "
           f"bring at least {FEW_DOMAIN_ROWS} domain rows for results that say something")
    plan["warnings"] = trouble({unused: plan["n_domain_unused"] > 0 and not unused_domain_expected,
                                few: plan["n_domain"] < FEW_DOMAIN_ROWS, **reused})
    plan["general_reused"] = {}
    plan["general_passes"] = passes
    if plan["n_domain_unused"] and unused_domain_expected:
        print(f"NOTE: {unused}.")
    domain_rows = rng.sample(domain, plan["n_domain"])
    repeated = (domain_rows * -(-plan["total"] * passes // len(domain_rows)))[: plan["total"] * passes]
    arms = {"domain_only": [{**r, "source": "domain"} for r in repeated]}

    def with_domain(name: str, draws: list[list[dict]]) -> list[dict]:
        """The arm's rows: one pass (shuffled at the end, below), or ``passes`` passes in order, each shuffled."""
        if (times := reuse(draws)) > 1 and name not in (ablation or {}):  # those: plan["ablation"]
            plan["general_reused"][name] = times
        if passes == 1:
            return [{**r, "source": "general"} for r in draws[0]] + [{**r, "source": "domain"} for r in domain_rows]
        rows = []
        for p, picked in enumerate(draws):
            block = ([{**r, "source": "general", "pass": p} for r in picked]
                     + [{**r, "source": "domain", "pass": p} for r in domain_rows])
            random.Random(seed + 2 + p).shuffle(block)
            rows += block
        return rows

    n_draw = plan["n_general"]  # every mixed arm's general rows in one pass
    for name, pool in general.items():
        if name == "ours" and cluster_shares:
            draws = stratified_passes(pool, ours_clusters, cluster_shares, n_draw, seed, passes=passes)
        elif not pool:
            raise ValueError(f"arm {name!r}: no general rows")
        elif n_draw > len(pool) or passes > 1:
            draws = _pick(pool, None, None, n_draw, seed, passes=passes)  # reused, as the warning says
        else:
            draws = [random.Random(seed + 1).sample(pool, n_draw)]
        arms[name] = with_domain(name, draws)
    if passes > 1:  # a baseline whose general rows come back more often than ours' compares less varied data
        base_reuse = plan["general_reused"].get(sizer, 1.0)
        plan["warnings"] += trouble({
            f"at general_passes={passes}, {name} uses each of its general rows about {times:.1f} times and {sizer} "
            f"about {base_reuse:.1f} times (its arm compares less varied general data); give it a larger set to "
            "compare at the same variety": times > 1.1 * base_reuse
            for name, times in plan["general_reused"].items() if name != sizer and name not in short})
    plan["ablation"] = {}
    for name, (pool, clusters, arm_shares, exact) in (ablation or {}).items():
        if not pool:
            raise ValueError(f"ablation arm {name!r}: notebook 03 selected no answers for it")
        draws = _pick(pool, clusters, arm_shares, n_draw, seed, exact, passes)
        arms[name] = with_domain(name, draws)
        picked = [r for d in draws for r in d]
        plan["ablation"][name] = {"pool": len(pool), "rows_reused": len(picked) - len({id(r) for r in picked})}
    plan["sweep"] = {"domain_only": 0.0, "ours": general_share} if sweep_shares else {}
    for share in sweep_shares:
        if not 0 < share < 1:
            raise ValueError(f"sweep_shares: every share must be between 0 and 1 (exclusive), got {share}")
        if math.isclose(share, general_share, abs_tol=1e-6):
            continue
        name, n_general = registry.sweep_name(share), round(plan["n_domain"] * share / (1 - share))
        if name in arms:
            raise ValueError(f"sweep_shares: {share} gives the arm name {name!r} twice or collides with "
                             f"general_share={general_share}; use shares at least a percent apart")
        arms[name] = with_domain(name, _pick(general["ours"], ours_clusters, cluster_shares, n_general, seed,
                                             passes=passes))
        plan["sweep"][name] = share
        got = n_general / (n_general + plan["n_domain"])  # the share whole rows allow
        plan["warnings"] += trouble({
            f"{name} asks for general share {share} but {plan['n_domain']} domain row(s) allow {got:.2f} "
            f"({n_general} general rows){': it trains as domain_only' if not n_general else ''}; this point of the "
            "trade-off needs more domain rows": abs(got - share) > SHARE_TOLERANCE})
        pool, times = len(general["ours"]), plan["general_reused"].get(name, 1.0)
        ours_times = f" (ours' about {plan['general_reused'].get('ours', 1.0):.1f})" if passes > 1 else ""
        plan["warnings"] += trouble({
            f"{name} (general share {share}) needs {n_general * passes} general rows{over} and ours has {pool}: each "
            f"is used about {times:.1f} times{ours_times}, so this point of the trade-off mixes the share with "
            "repeated general rows; generate more general rows (n_samples in 01, samples in 02) to separate them":
            (n_general > pool if passes == 1 else times > 1.1 * plan["general_reused"].get("ours", 1.0))})
    plan["sweep"] = dict(sorted(plan["sweep"].items(), key=lambda kv: kv[1]))
    for arm in registry.with_option("sdft") if sdft else ():
        arms[arm.name] = list(arms[arm.source])
    for rows in arms.values():
        if not rows or "pass" not in rows[0]:  # passes keep their order
            random.Random(seed + 2).shuffle(rows)
    return arms, plan


def ablation_pools(run_name: str, ours: list[dict], ours_clusters: list[int],
                   shares: dict[int, float] | None) -> dict[str, tuple[list[dict], list[int], dict | None, bool]]:
    """The ablation arms' pools for ``build_arms``: 03's ablation selections, sampled to the same cluster shares as
    ``ours``, and ``uniform_ours``: ours' own rows with every cluster of notebook 01 given the same share (the right
    answers, the wrong instruction distribution; a small cluster reuses its rows to keep its share)."""
    pools = {}
    for arm in registry.with_option("ablation"):
        if arm.rows == "selection":
            pools[arm.name] = (*general_rows_from_selected(run_name, arm.source), shares, False)
        elif arm.rows == "uniform_clusters":
            pools[arm.name] = (ours, ours_clusters, {c: 1.0 for c in set(ours_clusters)}, True)
    return pools


def save_arms(run_name: str, arms: dict[str, list[dict]]) -> dict[str, str]:
    from datasets import Dataset

    out = {}
    for name, rows in arms.items():
        path = stage_dir(run_name, STAGE) / "arms" / name
        Dataset.from_list(rows).save_to_disk(str(path))
        out[name] = str(path)
    # relative to the stage folder, so an outputs folder can move (e.g. from a GPU machine back to a laptop)
    write_json(stage_dir(run_name, STAGE) / "arms.json",
               {name: str(Path(p).relative_to(stage_dir(run_name, STAGE))) for name, p in out.items()})
    return out


def load_arms(run_name: str):
    """``{arm: datasets.Dataset}`` written by stage 04 (for notebook 05)."""
    from datasets import load_from_disk

    paths = read_json(require(run_name, STAGE, "arms.json"))
    return {name: load_from_disk(str(stage_dir(run_name, STAGE) / p)) for name, p in paths.items()}


def stats(arms: dict[str, list[dict]]) -> dict:
    table = {}
    for name, rows in arms.items():
        src = Counter(r["source"] for r in rows)
        uniq = len({json.dumps(r["messages"]) for r in rows})
        table[name] = {"n_general": src.get("general", 0), "n_domain": src.get("domain", 0), "n_rows": len(rows),
                       "unique_rows": uniq,
                       "mean_answer_words": round(sum(len(r["messages"][-1]["content"].split()) for r in rows)
                                                  / max(1, len(rows)), 2)}
    return table


def plot_composition(table: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(table)
    ax.barh(names, [table[n]["n_domain"] for n in names], label="domain", color="tab:red")
    ax.barh(names, [table[n]["n_general"] for n in names], left=[table[n]["n_domain"] for n in names],
            label="general", color="tab:blue")
    ax.set_xlabel("rows")
    ax.set_title("Arm composition")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # beside the bars, never over one
    return save_figure(fig, path)


def general_rows_from_selected(run_name: str, variant: str | None = None) -> tuple[list[dict], list[int]]:
    """Stage 03's selected answers as ``messages`` rows, with their stage-01 cluster ids; ``variant``: one of 03's
    ablation selections (``filtering.ABLATION``) instead."""
    from .reconstruct_distribution import load_instructions

    cluster = {r["id"]: r["cluster"] for r in load_instructions(run_name)}
    selected = read_jsonl(require(run_name, "03_filtering", f"selected_{variant}.jsonl" if variant else "selected.jsonl"))
    rows = [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["response"]}]}
            for r in selected]
    return rows, [cluster[r["instruction_id"]] for r in selected]
