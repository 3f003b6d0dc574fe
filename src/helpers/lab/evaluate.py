"""Exact-match evaluation against the lab's ground truth (the task parser and answer functions).

This module is evaluation: it may read the hidden mixture and the verifiers. Notebooks 01-05 must not import it
(``tests/test_lab_isolation.py`` enforces that), except in sections marked as lab-only measurements.
"""

from __future__ import annotations

from collections import defaultdict

from ..generate import generate
from . import tasks


def heldout_examples(families: dict[str, tasks.Family], n_per_family: int, seed: int) -> list[tasks.Example]:
    """Fresh instructions, ``n_per_family`` of each family (uniform, so every family is measured equally)."""
    out = []
    for i, name in enumerate(sorted(families)):
        out += tasks.sample_examples({name: 1.0}, n_per_family, seed=seed * 7919 + i)
    return out


def exact_match(model, tokenizer, examples: list[tasks.Example], *, batch_size: int = 128, max_new_tokens: int = 16,
                progress: bool | str = False) -> dict:
    """Greedy-decode every instruction and score exact match per family.

    Returns ``{"accuracy": mean over families, "per_family": {family: accuracy}, "n": count, "samples": [...]}``.
    """
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": e.instruction}], tokenize=False,
                                             add_generation_prompt=True) for e in examples]
    outs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
    hits: dict[str, list[bool]] = defaultdict(list)
    samples = []
    for e, o in zip(examples, outs):
        ok = o["text"] == e.response
        hits[e.family].append(ok)
        if len(samples) < 400:
            samples.append({"family": e.family, "instruction": e.instruction, "expected": e.response,
                            "output": o["text"], "correct": ok})
    per_family = {f: sum(v) / len(v) for f, v in sorted(hits.items())}
    return {"accuracy": sum(per_family.values()) / len(per_family), "per_family": per_family,
            "n": len(examples), "samples": samples}
