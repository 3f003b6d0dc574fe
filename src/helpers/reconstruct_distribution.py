"""Stage 01 (``notebooks/01_reconstruct_distribution.ipynb``): sample the model's own instructions and describe them.

1. ``sample_instructions``: feed the pre-query template (``chat.prequery_template``) to a writer (the generation
   seam, ``writers``) and sample, stopping at the end-of-user-turn token; in chunks of ``SAMPLE_CHUNK`` samples, each
   with its own seed, which worker processes can share (``helpers.workers``: one per GPU) with the same result.
2. ``clean``: strip, drop truncated / empty / too short / too long / response-like texts, exact dedup. Every dropped
   row keeps its reason.
3. ``categorise``: MiniLM sentence embeddings, k-means with k by silhouette (or fixed), clusters labelled by top
   TF-IDF terms and the instruction nearest each centroid.

Outputs in ``outputs/<run>/01_reconstruct/``: ``samples.jsonl`` (every sample, kept or not, with its reason),
``instructions.jsonl`` (the kept ones, with cluster ids, for stage 02), ``clusters.json``, figures, metrics.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import workers as workers_service
from .chat import prequery_template  # noqa: F401  (re-exported for the notebook)
from .generate import compile_choice
from .runs import read_jsonl, require, save_figure, stage_dir, trouble, write_json, write_jsonl
from .text import normalise
from .writers import Writer

STAGE = "01_reconstruct"
RESPONSE_OPENERS = ("sure", "certainly", "of course", "here is", "here's", "here are", "i'm sorry", "i am sorry",
                    "as an ai", "i cannot", "i can't")


SAMPLE_CHUNK = 2048  # samples per chunk, the unit worker processes share: up to one chunk, sampling is as it was


def chunk_seed(seed: int, chunk: int) -> int:
    """Chunk ``chunk``'s sampling seed: ``seed`` itself for the first (so a run of up to ``SAMPLE_CHUNK`` samples
    draws what it drew before chunks existed), a hash of both for the others."""
    return seed if chunk == 0 else int(hashlib.sha256(f"{seed}/01/{chunk}".encode()).hexdigest()[:8], 16)


def sample_instructions(writer: Writer, n: int, *, temperature: float = 1.0, top_p: float = 1.0,
                        max_new_tokens: int = 64, batch_size: int = 256, seed: int = 0,
                        system_prompt: str | None = None, template_kwargs: dict | None = None,
                        progress: bool = True, workers: int = 1, chunk_size: int = SAMPLE_CHUNK,
                        compile: bool | str | None = None) -> tuple[list[dict], dict]:
    """``n`` instructions written by the model after its pre-query template. Returns rows and the template used
    (with ``workers``: the plan of where the chunks were sampled).

    ``writer`` (``writers.load``) runs the model whatever the backend; its tokenizer gives the template.
    ``max_new_tokens`` is the instruction length (notebook 01's ``instruction_max_new_tokens``). The samples are
    drawn in chunks of ``chunk_size``, each with its own seed (``chunk_seed``); ``workers`` > 1 (0: one per visible
    GPU; on a CPU one) splits the chunks among worker processes, each loading the model again from
    ``writer.source``, and gives the same rows as one process (on a GPU when the decode runs uncompiled: ``compile``,
    ``generate.generation_plan``'s choice; None decides by the job's size)."""
    pq = prequery_template(writer.tokenizer, system_prompt, **(template_kwargs or {}))
    sizes = [min(chunk_size, n - start) for start in range(0, n, chunk_size)]
    options = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "do_sample": True,
               "temperature": temperature, "top_p": top_p, "stop_token": pq.stop_token, "job_prompts": n,
               "compile": compile_choice(compile)}
    plan = workers_service.plan(len(sizes), workers, workers_service.device())
    if plan.workers > 1 and getattr(writer, "source", None) is None:
        raise ValueError(f"workers = {workers}: the worker processes load the model again, and this writer was not "
                         "made by writers.load (it has no source to load from); use one worker")
    workers_service.refuse_autosized_sharing(plan, workers, batch_size, "samplers")
    chunks = list(enumerate(sizes))
    if plan.workers > 1:
        print(f"{plan.workers} workers on {', '.join(sorted(set(plan.devices)))} ({plan.reason})")
        jobs = [(f"chunks {part + 1}/{plan.workers}", (writer.source, pq.text, chunks[part::plan.workers], seed,
                                                       options), {}) for part in range(plan.workers)]
        done = dict(pair for part in workers_service.run(sample_chunks, jobs, plan) for pair in part)
    else:
        done = dict(sample_chunks(writer, pq.text, chunks, seed, options, progress and "sample instructions"))
    outs = [o for c in range(len(sizes)) for o in done[c]]
    rows = [{"id": i, "text": o["text"], "finished": o["finished"], "new_tokens": o["new_tokens"]}
            for i, o in enumerate(outs)]
    return rows, {"prefix": pq.text, "stop_token": pq.stop_token,
                  **({"sampled_by": plan.as_dict()} if plan.workers > 1 else {})}


def sample_chunks(writer, prompt: str, chunks: list[tuple[int, int]], seed: int, options: dict,
                  progress: bool | str = False) -> list[tuple[int, list[dict]]]:
    """``(chunk, its samples)`` for each ``(chunk, size)`` of ``chunks``; ``writer``: a writer, or the ``source`` to
    load one from (in a worker process)."""
    if isinstance(writer, tuple):
        from .writers import load

        run_name, name, backend = writer
        writer = load(run_name, name, backend)
    return [(c, writer.write([prompt] * k, seed=chunk_seed(seed, c), progress=progress, **options))
            for c, k in chunks]


def drop_reason(text: str, finished: bool, min_words: int, max_words: int) -> str | None:
    """Why a sampled text is not a usable instruction, or ``None`` if it is."""
    if not finished:
        return "truncated"  # hit max_new_tokens before the end-of-turn token
    if not text.strip():
        return "empty"
    words = len(text.split())
    if words < min_words:
        return "too_short"
    if words > max_words:
        return "too_long"
    if normalise(text).startswith(RESPONSE_OPENERS) or not re.search(r"[^\W\d_]", text):
        return "looks_like_response"  # an answer, not a request (or no letters at all)
    return None


def clean(rows: list[dict], min_words: int = 3, max_words: int = 200) -> tuple[list[dict], Counter]:
    """Kept rows (stripped, exact-deduplicated) and a count of drop reasons. Rows get a ``dropped`` field."""
    seen: set[str] = set()
    kept, reasons = [], Counter()
    for row in rows:
        text = row["text"].strip()
        reason = drop_reason(text, row["finished"], min_words, max_words)
        if reason is None:
            key = normalise(text)
            reason = "duplicate" if key in seen else None
            seen.add(key)
        row["dropped"] = reason
        if reason:
            reasons[reason] += 1
        else:
            kept.append({"id": row["id"], "instruction": text})
    return kept, reasons


def categorise(texts: list[str], embeddings: np.ndarray, n_clusters: int = 0, k_min: int = 2, k_max: int = 16,
               seed: int = 0) -> dict:
    """k-means on the embeddings; ``n_clusters=0`` picks k in [k_min, k_max] by silhouette score."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import silhouette_score

    if len(texts) < 3:
        raise ValueError(f"only {len(texts)} instructions left after cleaning: sample more (n_samples) or relax "
                         "min_words/max_words")
    if not n_clusters and k_min > k_max:
        raise ValueError(f"k_min = {k_min} is above k_max = {k_max}: notebook 01 picks the number of clusters in "
                         "k_min..k_max; set k_min <= k_max, or n_clusters to fix it")
    k_max = min(k_max, len(texts) - 1)  # k-means needs fewer clusters than points
    candidates = [n_clusters] if n_clusters else list(range(max(2, min(k_min, k_max)), k_max + 1))
    fits, scores = {}, {}
    for k in candidates:
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(embeddings)
        fits[k] = km
        scores[k] = float(silhouette_score(embeddings, km.labels_, sample_size=min(2000, len(texts)), random_state=seed))
    k = max(scores, key=scores.get)
    km = fits[k]
    labels = km.labels_
    tfidf = TfidfVectorizer(token_pattern=r"(?u)\b[^\W\d_]{3,}\b", stop_words="english")
    weights = tfidf.fit_transform(texts)
    vocab = np.array(tfidf.get_feature_names_out())
    clusters = []
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        top = vocab[np.asarray(weights[idx].mean(axis=0)).ravel().argsort()[::-1][:4]]
        nearest = idx[np.argsort(((embeddings[idx] - km.cluster_centers_[c]) ** 2).sum(1))[:3]]
        clusters.append({"cluster": c, "size": int(len(idx)), "label": " / ".join(top),
                         "examples": [texts[i] for i in nearest]})
    clusters.sort(key=lambda c: -c["size"])
    return {"k": k, "labels": labels.tolist(), "silhouette": scores, "clusters": clusters}


def plot_clusters(texts: list[str], embeddings: np.ndarray, cat: dict, path: Path) -> Path:
    from sklearn.decomposition import PCA

    xy = PCA(n_components=2, random_state=0).fit_transform(embeddings)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), gridspec_kw={"width_ratios": [1.3, 1.3, 0.8]})
    sizes = cat["clusters"]
    colour = {c["cluster"]: f"C{i % 10}" for i, c in enumerate(sorted(sizes, key=lambda c: c["cluster"]))}
    axes[0].barh([f"{c['cluster']}: {c['label']}" for c in sizes][::-1], [c["size"] for c in sizes][::-1],
                 color=[colour[c["cluster"]] for c in sizes][::-1])
    axes[0].set_xlabel("instructions")
    axes[0].set_title(f"Cluster sizes (k = {cat['k']})")
    axes[0].tick_params(axis="y", labelsize=8)
    labels = np.asarray(cat["labels"])
    for cluster in sorted(colour):  # the same colour as the cluster's bar
        at = labels == cluster
        axes[1].scatter(xy[at, 0], xy[at, 1], color=colour[cluster], s=6, label=str(cluster))
    axes[1].legend(title="cluster", fontsize=7, title_fontsize=8, markerscale=2, loc="best", ncol=2)
    axes[1].set_title("Instructions, MiniLM embeddings, PCA to 2-D")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    ks = sorted(cat["silhouette"])
    axes[2].plot(ks, [cat["silhouette"][k] for k in ks], marker="o")
    axes[2].axvline(cat["k"], color="grey", ls="--")
    axes[2].set_xlabel("k")
    axes[2].set_title("Silhouette score")
    return save_figure(fig, path)


def save(run_name: str, samples: list[dict], kept: list[dict], cat: dict) -> Path:
    d = stage_dir(run_name, STAGE)
    write_jsonl(d / "samples.jsonl", samples)
    write_jsonl(d / "instructions.jsonl", ({**row, "cluster": label} for row, label in zip(kept, cat["labels"])))
    write_json(d / "clusters.json", {"k": cat["k"], "silhouette": cat["silhouette"], "clusters": cat["clusters"]})
    return d


def load_instructions(run_name: str) -> list[dict]:
    """Stage 01's kept instructions (``id``, ``instruction``, ``cluster``), for later stages."""
    return read_jsonl(require(run_name, STAGE, "instructions.jsonl"))


def load_samples(run_name: str) -> list[dict]:
    return read_jsonl(require(run_name, STAGE, "samples.jsonl"))


def metrics(samples: list[dict], kept: list[dict], reasons: Counter, cat: dict, prequery: dict) -> dict:
    """The stage's numbers, and its signs of trouble (printed, and listed under ``warnings``)."""
    n = max(len(samples), 1)
    silhouette = cat["silhouette"][cat["k"]]
    warnings = trouble({
        f"{reasons['truncated'] / n:.0%} of the samples hit instruction_max_new_tokens before the model ended the "
        "user turn (dropped as truncated); raise instruction_max_new_tokens": reasons["truncated"] / n > 0.2,
        f"only {len(kept)} of {len(samples)} samples were kept; look at the dropped ones above": len(kept) < 0.5 * n,
        f"the clusters barely separate (silhouette {silhouette:.2f}): read them as rough topics; notebook 04 samples "
        "`ours` by these clusters' shares (stratify = False samples uniformly instead)": silhouette < 0.1,
    })
    return {"n_sampled": len(samples), "n_kept": len(kept), "dropped": dict(reasons), "n_clusters": cat["k"],
            "silhouette": silhouette, "prequery": prequery, "new_tokens": sum(r["new_tokens"] for r in samples),
            "warnings": warnings}
