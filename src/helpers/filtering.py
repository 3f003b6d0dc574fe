"""Stage 03 (``notebooks/03_filtering.ipynb``): score every candidate response, keep the best, dedup.

Scorers share one interface: ``scorer.score(rows) -> list[float | None]`` (``None``: no score for that row), with
``rows`` holding ``instruction`` and ``response``. Higher is better.

* ``JudgeCommittee``: the paper's filter. Each judge model rates each response 1-5 with a rubric prompt; ratings
  are parsed robustly (``parse_rating``); an unparseable rating is missing and counted; scores are averaged over
  the judges that gave one.
* ``RewardModel``: a sequence-classification reward model, batched with attention masks.
* ``LikelihoodCommittee``: mean token log-probability of the response (and its end-of-turn token) given the
  instruction, averaged over committee models. Tiny lab models cannot follow a rubric; this needs no instruction
  following at all.
* The lab's verifier (ground truth) is not here: it lives in the lab's evaluation module and is used to *measure* the
  selection, or as a scorer only when a preset asks for it explicitly.

Candidates that cannot be kept whatever their score (empty, unfinished, too long: ``format_reason``) are not scored
(``scorable``). Each scorer's scores are cached in ``scores/<scorer>.json``, keyed by the candidates and the scorer's
models and settings (``cached_scores``), so a rerun, or a failure in a later scorer, loses nothing computed.

``select`` keeps the best candidate per instruction, applies a minimum score and format filters, then removes
exact, MinHash and embedding near-duplicates. Every dropped row keeps its reason.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Protocol

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from . import models
from .chat import encode_prompts, frame_for, render_prompt
from .generate import generate, scoring_batches
from .runs import read_jsonl, require, save_figure, stage_dir, trouble, write_jsonl
from .text import normalise

STAGE = "03_filtering"


SCORERS = ("likelihood", "judge", "reward", "lab_verifier")


def check_scorers(scorers, lab: bool) -> None:
    """Notebook 03's ``scorers``: a non-empty list of known names (``lab_verifier`` only in the lab)."""
    if isinstance(scorers, str) or not isinstance(scorers, (list, tuple)):
        raise ValueError(f"scorers = {scorers!r}: expected a list of scorer names, e.g. [\"likelihood\"]")
    if not scorers:
        raise ValueError("scorers = []: name at least one scorer (the first selects the kept answers), e.g. "
                         f"[\"likelihood\"]; choose from {list(SCORERS)}")
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown:
        raise ValueError(f"scorers: unknown {unknown}; choose from {list(SCORERS)}")
    if "lab_verifier" in scorers and not lab:
        raise ValueError("scorers: lab_verifier reads the lab's ground truth and exists only with lab = True")


class Scorer(Protocol):
    name: str

    def score(self, rows: list[dict]) -> list[float | None]: ...


# ----------------------------------------------------------------------------------------------------------------
# LLM-judge committee
# ----------------------------------------------------------------------------------------------------------------
RUBRIC = """Rate the response to the instruction on a scale of 1 to 5.
5: fully correct, complete and directly answers the instruction.
4: correct with minor flaws in form.
3: partly correct or incomplete.
2: mostly wrong or off-topic.
1: wrong, empty or harmful.

Instruction: {instruction}
Response: {response}

Reply with "Rating:" followed by one digit from 1 to 5."""

_NUM = r"(\d+(?:\.\d+)?)"


def parse_rating(text: str, low: float = 1, high: float = 5) -> float | None:
    """The 1-5 rating in a judge's free-text answer, or ``None``.

    Understands "Rating: 4", "**Score: 3**", "4/5", "8/10" (rescaled), "4 out of 5", "[[3]]" and a bare number;
    a number outside [low, high] or text with no rating is ``None``.
    """
    if not text:
        return None
    t = text.replace("*", " ")
    value = None
    if m := re.search(_NUM + r"\s*(?:/|out of)\s*(\d+)", t, re.I):
        num, den = float(m.group(1)), float(m.group(2))
        value = num if den == high else (num / den * high if den > 0 and num <= den else None)
    elif m := re.search(r"\b(?:rating|score|grade)\b\W{0,6}" + _NUM, t, re.I):
        value = float(m.group(1))
    elif m := re.search(r"\[\[\s*" + _NUM + r"\s*\]\]", t):
        value = float(m.group(1))
    elif m := re.fullmatch(r"\W*" + _NUM + r"\W*", t.strip()):
        value = float(m.group(1))
    if value is None or not (low <= value <= high):
        return None
    return value


class JudgeError(RuntimeError):
    pass


class JudgeCommittee:
    """LLM judges rating each response with ``rubric``; a response's score is the mean over the judges that gave one.

    Each judge first rates ``probe_size`` candidates; if fewer than ``min_parse_rate`` of its answers hold a
    readable rating, it stops there (``JudgeError``) and shows the judge's raw answers, instead of rating every
    candidate for nothing. ``parse_rate`` records each judge's share of readable ratings."""

    name = "judge"

    def __init__(self, run_name: str, judges: list[str], rubric: str = RUBRIC, max_new_tokens: int = 24,
                 batch_size: int = 128, progress: bool = True, probe_size: int = 32, min_parse_rate: float = 0.5):
        if not judges:
            raise ValueError("judges is empty: name at least one judge model for the judge scorer")
        self.run_name, self.judges, self.rubric = run_name, judges, rubric
        self.max_new_tokens, self.batch_size, self.progress = max_new_tokens, batch_size, progress
        self.probe_size, self.min_parse_rate = probe_size, min_parse_rate
        self.parse_failures: Counter = Counter()
        self.parse_rate: dict[str, float] = {}
        self.raw: dict[str, list[str]] = {}

    def config(self) -> dict:
        return {"judges": {j: models.model_fingerprint(models.resolve(self.run_name, j)) for j in self.judges},
                "rubric": self.rubric, "max_new_tokens": self.max_new_tokens}

    def _rate(self, model, tok, rows: list[dict], label: str | bool) -> list[str]:
        prompts = [render_prompt(tok, self.rubric.format(instruction=r["instruction"], response=r["response"]))
                   for r in rows]
        outs = generate(model, tok, prompts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                        progress=label)
        return [o["text"] for o in outs]

    def score(self, rows: list[dict]) -> list[float | None]:
        ratings = []
        for judge in self.judges:
            model, tok = models.load(self.run_name, judge)
            head = self._rate(model, tok, rows[: self.probe_size], False)
            readable = sum(parse_rating(t) is not None for t in head)
            if head and readable < self.min_parse_rate * len(head):
                shown = "\n".join(f"  {t!r}" for t in head[:8])
                raise JudgeError(
                    f"judge {judge!r} gave a readable 1-5 rating for {readable} of the first {len(head)} candidates "
                    f"(min_parse_rate = {self.min_parse_rate}); stopped before rating the other "
                    f"{len(rows) - len(head)}."
                    f" Its answers:\n{shown}\nUse a stronger judge, adapt the rubric, or put 'likelihood' first in "
                    "scorers")
            self.raw[judge] = head + self._rate(model, tok, rows[len(head):], self.progress and f"judge {judge}")
            parsed = [parse_rating(t) for t in self.raw[judge]]
            self.parse_failures[judge] = sum(p is None for p in parsed)
            self.parse_rate[judge] = 1 - self.parse_failures[judge] / max(len(rows), 1)
            ratings.append(parsed)
            del model
        return [_mean([r[i] for r in ratings]) for i in range(len(rows))]


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


# ----------------------------------------------------------------------------------------------------------------
# Reward model
# ----------------------------------------------------------------------------------------------------------------
class RewardModel:
    name = "reward"

    def __init__(self, path: str, batch_size: int = 64, device: str | None = None, progress: bool = True):
        if not path:
            raise ValueError("the reward scorer needs reward_model: the path or hub id of a sequence-classification "
                             "reward model")
        self.path = path
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(self.device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size, self.progress = batch_size, progress

    def config(self) -> dict:
        return {"reward_model": models.model_fingerprint(self.path)}

    def score(self, rows: list[dict]) -> list[float | None]:
        tok = self.tokenizer
        texts = [tok.apply_chat_template([{"role": "user", "content": r["instruction"]},
                                          {"role": "assistant", "content": r["response"]}], tokenize=False)
                 for r in rows]
        ids = encode_prompts(tok, texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        scores: list[float | None] = [None] * len(rows)
        for start in tqdm(range(0, len(order), self.batch_size), desc="reward model", disable=not self.progress):
            idx = order[start : start + self.batch_size]
            batch = tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(input_ids=batch["input_ids"].to(self.device),
                                    attention_mask=batch["attention_mask"].to(self.device)).logits
            for i, v in zip(idx, logits[:, 0].float().tolist()):
                scores[i] = v
        return scores


# ----------------------------------------------------------------------------------------------------------------
# Likelihood committee
# ----------------------------------------------------------------------------------------------------------------
def response_logprobs(model, tokenizer, rows: list[dict], batch_size: int = 256, progress: bool | str = False,
                      stop_token: str | None = None, frame: str = "auto") -> list[float]:
    """Mean log-probability per token of each response plus what ends it, given its prompt.

    With a chat template (``frame`` ``"auto"`` or ``"chat"``) the prompt is the rendered instruction and the response
    ends with the end-of-turn token; a model without one (a pretrained model) is asked in the few-shot frame, and the
    response ends where the frame's next question starts (``chat.Frame``)."""
    device = next(model.parameters()).device
    asked = frame_for(tokenizer, frame)
    suffix, prefix = asked.answer_suffix(tokenizer, stop_token), asked.answer_prefix()
    instructions = list(dict.fromkeys(r["instruction"] for r in rows))  # each prompt rendered and encoded once
    prompt_ids = dict(zip(instructions, encode_prompts(tokenizer, [asked.render(tokenizer, i) for i in instructions])))
    answers = tokenizer([prefix + r["response"] + suffix for r in rows], add_special_tokens=False)["input_ids"]
    pairs = [(prompt_ids[r["instruction"]], a) for r, a in zip(rows, answers)]
    lengths = [len(p) + len(a) for p, a in pairs]
    order = sorted(range(len(pairs)), key=lambda i: lengths[i])
    out = [0.0] * len(rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=len(order), desc=progress if isinstance(progress, str) else "log-probs", disable=not progress)
    for idx in scoring_batches(lengths, order, batch_size, model.config.vocab_size):
        bar.update(len(idx))
        width = max(len(pairs[i][0]) + len(pairs[i][1]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        target = torch.zeros((len(idx), width), dtype=torch.bool)
        for row, i in enumerate(idx):
            p, a = pairs[i]
            ids[row, : len(p) + len(a)] = torch.tensor(p + a)
            mask[row, : len(p) + len(a)] = 1
            target[row, len(p) : len(p) + len(a)] = True
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0].cpu()
        tgt = target[:, 1:]
        means = (logp * tgt).sum(1) / tgt.sum(1)
        for i, v in zip(idx, means.tolist()):
            out[i] = v
    bar.close()
    return out


class LikelihoodCommittee:
    name = "likelihood"

    def __init__(self, run_name: str, committee: list[str], batch_size: int = 256, progress: bool = True):
        if not committee:
            raise ValueError("committee is empty: name at least one model for the likelihood scorer")
        self.run_name, self.committee, self.batch_size, self.progress = run_name, committee, batch_size, progress
        self.per_model: dict[str, list[float]] = {}

    def config(self) -> dict:
        return {"committee": {n: models.model_fingerprint(models.resolve(self.run_name, n)) for n in self.committee}}

    def score(self, rows: list[dict]) -> list[float | None]:
        for name in self.committee:
            model, tok = models.load(self.run_name, name)
            self.per_model[name] = response_logprobs(model, tok, rows, self.batch_size,
                                                     progress=self.progress and f"log-probs {name}")
            del model
        return [float(np.mean([self.per_model[n][i] for n in self.committee])) for i in range(len(rows))]


# ----------------------------------------------------------------------------------------------------------------
# Selection and dedup
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
                  need: tuple[str, ...] = ()) -> tuple[list[float | None], dict]:
    """``scorer``'s scores of the rows where ``mask`` is true (``None`` elsewhere) and what it reported about them
    (judges: ``parse_rate``, ``parse_failures``), from
    ``03_filtering/scores/<scorer>.json`` when that file was computed for the same candidates, mask and scorer
    settings (its models' content, rubric...) and holding every report in ``need`` (e.g. ``per_model``, which
    caches written before it existed lack); else computed and written there."""
    import hashlib
    import json

    from .runs import read_json, write_json

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

    scores = spread(scorer.score(picked) if picked else [])
    extra = {k: dict(getattr(scorer, k)) for k in ("parse_rate", "parse_failures") if hasattr(scorer, k)}
    if getattr(scorer, "per_model", None):  # the likelihood committee: each model's own scores (the ablation's)
        extra["per_model"] = {name: spread(v) for name, v in scorer.per_model.items()}
    write_json(path, {"key": key, "scorer": scorer.name, "n_scored": len(picked), **extra, "scores": scores})
    return scores, extra


def minhash_duplicates(texts: list[str], threshold: float = 0.9, num_perm: int = 128, ngram: int = 5) -> list[bool]:
    """True for each text that is a near-duplicate (estimated Jaccard >= threshold on character n-grams) of an
    earlier one."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dup = []
    for i, text in enumerate(texts):
        t = normalise(text)
        m = MinHash(num_perm=num_perm, seed=1)
        for g in {t[j : j + ngram] for j in range(max(1, len(t) - ngram + 1))}:
            m.update(g.encode())
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


def load_selected(run_name: str) -> list[dict]:
    return read_jsonl(require(run_name, STAGE, "selected.jsonl"))


def metrics(rows: list[dict], kept: list[dict], dropped: Counter, judge_parse_failures: int, primary: str,
            judge_parse_rate: dict[str, float] | None = None) -> dict:
    n_instructions = len({r["instruction_id"] for r in rows})
    warnings = trouble({
        **{f"judge {j!r} gave a readable rating for only {rate:.0%} of the candidates (the rest count as missing)":
           rate < 0.9 for j, rate in (judge_parse_rate or {}).items()},
        f"only {len(kept)} of {n_instructions} instructions kept an answer; see the funnel for why":
            len(kept) < 0.5 * n_instructions,
    })
    return {"n_candidates": len(rows), "n_selected": len(kept), "n_instructions": n_instructions,
            "primary_scorer": primary, "judge_parse_failures": judge_parse_failures,
            "judge_parse_rate": judge_parse_rate or {}, "dropped": dict(dropped),
            "selected_by_model": dict(Counter(r["model"] for r in kept)), "warnings": warnings}
