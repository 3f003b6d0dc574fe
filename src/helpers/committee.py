"""The response scorers of stage 03 (``filtering``): "how good is this answer to this instruction?".

Scorers share one interface (``Scorer``): ``scorer.score(rows) -> list[float | None]`` (``None``: no score for that
row), with ``rows`` holding ``instruction`` and ``response``; higher is better. ``config()`` names the models and
settings the scores depend on (``filtering.cached_scores`` keys its cache with it).

* ``LikelihoodCommittee``: mean token log-probability of the response (and what ends it) given the instruction,
  averaged over committee models (``response_logprobs``). Tiny lab models cannot follow a rubric; this needs no
  instruction following at all.
* ``JudgeCommittee``: the paper's filter. Each judge model rates each response 1-5 with a rubric prompt (``RUBRIC``),
  written through the generation seam (``writers``); ratings are parsed robustly (``parse_rating``); an unparseable
  rating is missing and counted; scores are averaged over the judges that gave one.
* ``RewardModel``: a sequence-classification reward model, batched with attention masks.
* ``lab_verifier``: the lab's ground truth (its ``LabVerifier``) is not here; stages 01-05 may not
  read it, so notebook 03 computes it in a cell marked lab-only, and only when a preset names it.

``SCORERS`` is the one registry: a scorer's name, how notebook 03's parameters build it and which parameter names
its models (the pipeline's preflight checks those, ``MODEL_KEYS``). To add a scorer: a class here and its line in
``SCORERS``, its parameters in notebook 03's parameters cell, a test. Nothing else names it.

Importing this module loads no torch (the pipeline reads the registry before any notebook runs).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Protocol

from . import models
from .chat import encode_prompts, frame_for, render_prompt


class Scorer(Protocol):
    name: str

    def config(self) -> dict: ...

    def score(self, rows: list[dict]) -> list[float | None]: ...


@dataclass(frozen=True)
class Registered:
    """A scorer as notebook 03 knows it. ``build(params)``: the scorer from the notebook's settled parameters
    (``pipeline.settle_parameters``), or ``None`` where the notebook computes it in a lab-only cell; ``models``: the
    parameter that names the models it reads; ``lab_only``: it exists only with ``lab = True``."""

    build: Callable[[dict], Scorer] | None
    models: str | None = None
    lab_only: bool = False


SCORERS: dict[str, Registered] = {
    "likelihood": Registered(lambda p: LikelihoodCommittee(p["run_name"], p["committee"], p["scoring_batch_size"],
                                                           p["progress"]), models="committee"),
    "judge": Registered(lambda p: JudgeCommittee(p["run_name"], p["judges"], max_new_tokens=p["judge_max_new_tokens"],
                                                 batch_size=p["scoring_batch_size"], progress=p["progress"],
                                                 backend=p["backend"]), models="judges"),
    "reward": Registered(lambda p: RewardModel(p["reward_model"], progress=p["progress"]), models="reward_model"),
    "lab_verifier": Registered(None, lab_only=True),  # the lab's LabVerifier, in 03's lab-only cell
}

MODEL_KEYS = {r.models: name for name, r in SCORERS.items() if r.models}  # parameter -> the scorer that reads it


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
    for s in scorers:
        if SCORERS[s].lab_only and not lab:
            raise ValueError(f"scorers: {s} reads the lab's ground truth and exists only with lab = True")


def build(name: str, params: dict) -> Scorer | None:
    """The scorer ``name`` built from notebook 03's parameters; ``None`` for one the notebook computes itself."""
    make = SCORERS[name].build
    return make(params) if make else None


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

    Each judge is a writer (``writers.load`` on ``backend``: the generation seam) answering the rubric in at most
    ``max_new_tokens`` tokens (notebook 03's ``judge_max_new_tokens``). It first rates ``probe_size`` candidates; if
    fewer than ``min_parse_rate`` of its answers hold a readable rating, it stops there (``JudgeError``) and shows the
    judge's raw answers, instead of rating every candidate for nothing. ``parse_rate`` records each judge's share of
    readable ratings."""

    name = "judge"

    def __init__(self, run_name: str, judges: list[str], rubric: str = RUBRIC, max_new_tokens: int = 24,
                 batch_size: int = 128, progress: bool = True, probe_size: int = 32, min_parse_rate: float = 0.5,
                 backend: str = "hf"):
        if not judges:
            raise ValueError("judges is empty: name at least one judge model for the judge scorer")
        self.run_name, self.judges, self.rubric = run_name, judges, rubric
        self.max_new_tokens, self.batch_size, self.progress = max_new_tokens, batch_size, progress
        self.probe_size, self.min_parse_rate, self.backend = probe_size, min_parse_rate, backend
        self.parse_failures: Counter = Counter()
        self.parse_rate: dict[str, float] = {}
        self.raw: dict[str, list[str]] = {}

    def config(self) -> dict:
        # a backend other than "hf" writes other ratings, so it enters the cache key; "hf" leaves the key as it was
        return {"judges": {j: models.model_fingerprint(models.resolve(self.run_name, j)) for j in self.judges},
                "rubric": self.rubric, "max_new_tokens": self.max_new_tokens,
                **({"backend": self.backend} if self.backend != "hf" else {})}

    def _rate(self, writer, rows: list[dict], label: str | bool) -> list[str]:
        prompts = [render_prompt(writer.tokenizer, self.rubric.format(instruction=r["instruction"],
                                                                      response=r["response"])) for r in rows]
        outs = writer.write(prompts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, progress=label)
        return [o["text"] for o in outs]

    def score(self, rows: list[dict]) -> list[float | None]:
        from . import writers

        ratings = []
        for judge in self.judges:
            writer = writers.load(self.run_name, judge, self.backend)
            head = self._rate(writer, rows[: self.probe_size], False)
            readable = sum(parse_rating(t) is not None for t in head)
            if head and readable < self.min_parse_rate * len(head):
                shown = "\n".join(f"  {t!r}" for t in head[:8])
                raise JudgeError(
                    f"judge {judge!r} gave a readable 1-5 rating for {readable} of the first {len(head)} candidates "
                    f"(min_parse_rate = {self.min_parse_rate}); stopped before rating the other "
                    f"{len(rows) - len(head)}."
                    f" Its answers:\n{shown}\nUse a stronger judge, adapt the rubric, or put 'likelihood' first in "
                    "scorers")
            self.raw[judge] = head + self._rate(writer, rows[len(head):], self.progress and f"judge {judge}")
            parsed = [parse_rating(t) for t in self.raw[judge]]
            self.parse_failures[judge] = sum(p is None for p in parsed)
            self.parse_rate[judge] = 1 - self.parse_failures[judge] / max(len(rows), 1)
            ratings.append(parsed)
            del writer
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
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        from .models import SAFE_LOADING

        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, **SAFE_LOADING).to(self.device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size, self.progress = batch_size, progress

    def config(self) -> dict:
        return {"reward_model": models.model_fingerprint(self.path)}

    def score(self, rows: list[dict]) -> list[float | None]:
        import torch
        from tqdm.auto import tqdm

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
    from tqdm.auto import tqdm

    from .generate import scoring_batches
    from .loglik import batch_width, padded, target_logprobs

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
    for idx in scoring_batches(lengths, order, batch_size, batch_width(model)):
        bar.update(len(idx))
        ids, mask, predicts = padded([pairs[i] for i in idx], pad)  # predicts: where a response token comes next
        logp = target_logprobs(model, ids, mask, predicts).split(predicts.sum(1).tolist())
        for i, v in zip(idx, logp):
            out[i] = float(v.mean())
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
        import numpy as np

        for name in self.committee:
            model, tok = models.load(self.run_name, name)
            self.per_model[name] = response_logprobs(model, tok, rows, self.batch_size,
                                                     progress=self.progress and f"log-probs {name}")
            del model
        return [float(np.mean([self.per_model[n][i] for n in self.committee])) for i in range(len(rows))]
