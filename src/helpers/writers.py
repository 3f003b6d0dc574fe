"""The generation seam: "a model that writes answers to prompts", whatever runs it.

Stages 01, 02, 03 (the LLM judge) and 06 ask a ``Writer`` for continuations of already-rendered prompts and never
call a backend themselves. ``HFWriter`` (transformers' ``generate``, batched by ``generate.generate``) is the first
backend; another one (vLLM, a multi-GPU runner) is a class with the same ``write`` method registered in ``BACKENDS``.

To add a backend: a class with ``tokenizer``, ``write(prompts, **options)`` returning ``generate.generate``'s dicts
(``text``, ``prompt_tokens``, ``new_tokens``, ``finished``, ``ids``) and a ``load(run_name, name)`` classmethod; add it
to ``BACKENDS``. Nothing else changes.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from .generate import generate


class Writer(Protocol):
    tokenizer: object

    def write(self, prompts: Sequence[str], *, max_new_tokens: int, do_sample: bool = False, temperature: float = 1.0,
              top_p: float = 1.0, seed: int = 0, stop_token: str | None = None,
              stop_strings: Sequence[str] | None = None, batch_size: int | None = None, progress: bool | str = False,
              job_prompts: int | None = None, compile: bool | None = None) -> list[dict]:
        """One continuation per prompt, in order: dicts with ``text``, ``prompt_tokens``, ``new_tokens``,
        ``finished`` and ``ids`` (see ``generate.generate``)."""


class HFWriter:
    """A transformers model and its tokenizer (already loaded: a base, a model with an adapter, a lab model)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.source = None  # (run_name, name, backend) when made by ``load``: how a worker process loads it again

    @classmethod
    def load(cls, run_name: str, name: str, **kwargs) -> "HFWriter":
        from . import models

        writer = cls(*models.load(run_name, name, **kwargs))
        writer.source = (run_name, name, "hf") if not kwargs else None
        return writer

    def write(self, prompts: Sequence[str], **options) -> list[dict]:
        return generate(self.model, self.tokenizer, prompts, **options)


BACKENDS = {"hf": HFWriter}


def load(run_name: str, name: str, backend: str = "hf", **kwargs) -> Writer:
    """The writer for model ``name`` (a lab zoo name, a packaged model, a folder or a hub id) on ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"generation backend {backend!r} is unknown; the backends are {', '.join(BACKENDS)}")
    return BACKENDS[backend].load(run_name, name, **kwargs)
