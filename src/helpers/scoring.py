"""Scoring a model's answers against references: exact and lenient matching of greedy answers (``exact_match``,
``answer_matches``), both held-out sets at once with multiple choice where items have choices (``score_sets``), the
drift from the base (``drift``), and the chance rules that decide which families can show forgetting
(``informative_families``, ``headline``). A service: stage 00 measures the lab's zoo with it, stage 06 every arm."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from .chat import render_prompt
from .kl_drift import base_logprobs, drift_kl
from .loglik import _check_lengths, _family_means, _get, multiple_choice
from .text import answer_tokens, normalise_answer
from .writers import HFWriter


MATCHES = ("exact", "lenient")
ANSWER_BATCH = 128  # rows per batch of greedy answers (notebook 06's answer_batch_size)


def exact_match(model, tokenizer, examples: list, *, batch_size: int = ANSWER_BATCH, max_new_tokens: int = 16,
                progress: bool | str = False, samples_per_family: int = 2, match: str = "exact", writer=None,
                states=None) -> dict:
    """Greedy-decode every instruction and score exact match (surrounding whitespace ignored) per family.

    ``match="lenient"`` accepts the answer inside a sentence instead (``answer_matches``: normalised case and
    punctuation, aliases, no hedging between the item's choices); a real instruct model answers in sentences
    ("The capital of France is Paris."), which strict exact match scores 0.

    ``examples``: items with ``family``, ``instruction`` and ``response`` (``EvalItem`` or the lab's ``Example``).
    Returns ``{"accuracy": ..., "per_family": {family: accuracy}, "n": count, "correct": [bool per example],
    "samples": the first answers of each family, "unfinished": how many answers max_new_tokens cut off}``.
    ``accuracy`` is the unweighted mean over families (each family counts the same however many questions it has;
    the lab's sets have equal families anyway).
    An answer counts only if the model also ended its turn (a cut-off answer is not a right one), so a reference
    needs fewer tokens than ``max_new_tokens``, room for the end token; a longer one is an error.
    ``writer``: what writes the answers (``writers.Writer``; default: ``model`` itself through transformers).
    ``states``: the model's ``prompt_cache.PromptCache``, which its answers leave their prompts' pass in (through
    transformers only: another ``writer`` does not fill it).
    """
    if match not in MATCHES:
        raise ValueError(f"answer_match must be one of {MATCHES}, got {match!r}")
    for e in examples:
        n_tokens = len(tokenizer(e.response, add_special_tokens=False)["input_ids"])
        if n_tokens >= max_new_tokens:
            where = getattr(e, "where", "") or f"family {e.family!r}"
            raise ValueError(f"{where}: the reference answer has {n_tokens} tokens and max_new_tokens = "
                             f"{max_new_tokens} leaves no room for the end of the turn, so it could never match; "
                             "raise answer_max_new_tokens (notebook 06; --max-new-tokens for python -m helpers.baseline) "
                             "or shorten the answer")
    prompts = [render_prompt(tokenizer, e.instruction) for e in examples]
    kept = {"states": states} if states is not None and writer is None else {}  # transformers' path keeps them
    writer = writer or HFWriter(model, tokenizer)
    outs = writer.write(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, **kept)
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
            "n": len(examples), "correct": correct, "samples": samples, "answer_ids": [o.get("ids") for o in outs],
            "unfinished": sum(not o["finished"] for o in outs)}


def score_sets(model, tokenizer, sets: dict[str, list], *, progress: bool | str = False,
               max_new_tokens: int = 16, match: str = "exact", mc: bool = True,
               batch_size: int = ANSWER_BATCH, general: dict | None = None, states=None) -> dict:
    """Greedy answers to both held-out sets scored by ``match`` (accuracies are means over families), per-family
    accuracy, counts, whether each answer was right (``correct``: ``{"general": [...], "domain": [...]}``), the first
    answers of each family, how many answers ``max_new_tokens`` cut off per set (``unfinished``), and the general
    answers' token ids (``general_answer_ids``: the base's are the text ``drift_kl`` measures on). With ``mc`` and items that have ``choices``, also multiple choice by log-likelihood
    (``mc_general_accuracy``, ``mc_domain_accuracy``, ``per_family_mc``: length-normalised, as acc_norm).
    ``batch_size``: rows per batch of the greedy answers. ``general``: this model's ``general_answers``, computed
    before with the same settings (notebook 06 needs the base's alone first), so not computed again. ``states``: the
    model's ``prompt_cache.PromptCache``: each prompt's pass is run once for the answers and multiple choice."""
    label = progress if isinstance(progress, str) else "evaluate"
    g = general if general is not None else general_answers(
        model, tokenizer, sets, max_new_tokens=max_new_tokens, match=match, progress=progress and f"{label}: general",
        batch_size=batch_size, states=states)
    d = exact_match(model, tokenizer, sets["domain"], max_new_tokens=max_new_tokens,
                    progress=progress and f"{label}: domain", match=match, batch_size=batch_size, states=states)
    out = {"general_accuracy": g["accuracy"], "domain_accuracy": d["accuracy"],
           "per_family": {**g["per_family"], **d["per_family"]}, "n_general": g["n"], "n_domain": d["n"],
           "correct": {"general": g["correct"], "domain": d["correct"]}, "samples": g["samples"] + d["samples"],
           "general_answer_ids": g["answer_ids"], "unfinished": {"general": g["unfinished"], "domain": d["unfinished"]}}
    if mc:
        for name, items in sets.items():
            if items and all(getattr(e, "choices", ()) for e in items):
                prompts = [render_prompt(tokenizer, e.instruction) for e in items]
                r = multiple_choice(model, tokenizer, prompts, items, delimiter="",
                                    progress=progress and f"{label}: {name} multiple choice", states=states)
                out[f"mc_{name}_accuracy"] = r["accuracy_norm"]
                out.setdefault("per_family_mc", {}).update(r["per_family_norm"])
    return out


def general_answers(model, tokenizer, sets: dict[str, list], *, max_new_tokens: int, match: str,
                    progress: bool | str = False, batch_size: int = ANSWER_BATCH, states=None) -> dict:
    """The general set's greedy answers, scored (``exact_match``): ``score_sets``' general half, and the text the KL
    drift is measured on (its ``answer_ids``), which notebook 06 needs alone before it scores the base beside the
    adapters. One definition, so both are the same answers."""
    return exact_match(model, tokenizer, sets["general"], max_new_tokens=max_new_tokens, progress=progress,
                       match=match, batch_size=batch_size, states=states)


def drift(model, tokenizer, sets: dict[str, list], base_answer_ids: list[list[int]], progress: bool | str = False,
          reference_logprobs: list | None = None, states=None) -> dict:
    """KL drift of an arm from the base (``drift_kl``) on the base's own greedy answers to the general held-out
    questions; the base is the arm's model with its adapter switched off, as it was scored, or its pass computed
    once before (``reference_logprobs``: ``drift_reference``). Returns ``kl_drift`` and ``kl_drift_se_questions``,
    the standard error of its mean over questions (``uncertainty``). ``states``: the model's ``PromptCache``."""
    r = drift_kl(model, tokenizer, _drift_prompts(tokenizer, sets), answers=base_answer_ids, progress=progress,
                 reference_logprobs=reference_logprobs, states=states)
    # the mean is over answer tokens, so its error is a ratio estimator's: prompts weighted by their tokens
    pairs = [(m, len(a)) for m, a in zip(r["per_prompt"], base_answer_ids) if a]
    total = sum(c for _, c in pairs)
    se = math.sqrt(sum((c * (m - r["kl"])) ** 2 for m, c in pairs)) / total if len(pairs) > 1 else 0.0
    return {"kl_drift": r["kl"], "kl_drift_se_questions": se}


def drift_reference(base, tokenizer, sets: dict[str, list], base_answer_ids: list[list[int]], states=None) -> list:
    """The base's side of ``drift`` for every arm at once (``kl_drift.base_logprobs``; ``states``: the base's
    ``PromptCache``)."""
    return base_logprobs(base, tokenizer, _drift_prompts(tokenizer, sets), base_answer_ids, states=states)


def _drift_prompts(tokenizer, sets: dict[str, list]) -> list[str]:
    """The prompts ``drift`` measures on, and ``drift_reference`` precomputes the base's side of: one definition, so
    the two batch the same rows."""
    return [render_prompt(tokenizer, e.instruction) for e in sets["general"]]


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
       bare "40" only where they are listed as aliases (``helpers.shipped_data`` lists both for doses). Number words
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
