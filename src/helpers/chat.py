"""Chat-template utilities: the pre-query template, prompt rendering, and BOS-safe encoding.

**Pre-query template** (Magpie, arXiv 2406.08464): the text a chat template writes *before* the user's message —
e.g. ``<|im_start|>user\\n`` for ChatML. Fed that alone, an instruct model writes an instruction as it would expect
a user to; sampling many gives an estimate of its instruction distribution. Magpie hard-codes one per model family,
and appending a user-turn header after the generation prompt (as some pipelines do) gives a malformed prompt.
Here it is *derived* from the tokenizer's own template: render a conversation whose only user message is a sentinel,
with ``add_generation_prompt=False``, and cut just before the sentinel. Whatever the template injects first (a
default system turn, a date header, a BOS token) is kept, since that is what the model saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

SENTINEL = "XQZSENTINEL7311"


@dataclass(frozen=True)
class PreQuery:
    text: str  # the prefix to feed the model
    stop_token: str  # the token that ends the user turn (generation stops there)


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool, **template_kwargs) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template: use an instruct model's "
            "tokenizer, or set tokenizer.chat_template to its template (e.g. a .jinja file)")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             **template_kwargs)
    except Exception as err:  # jinja syntax errors, templates that raise on unexpected roles, ...
        raise ValueError(f"the chat template of {getattr(tokenizer, 'name_or_path', '')!r} failed to render "
                         f"{messages!r}: {type(err).__name__}: {err}") from err


def special_strings(tokenizer) -> list[str]:
    """Every special or added token string the tokenizer knows, longest first."""
    added = [t.content if hasattr(t, "content") else str(t) for t in tokenizer.added_tokens_decoder.values()]
    return sorted(set(added) | set(tokenizer.all_special_tokens), key=len, reverse=True)


def prequery_template(tokenizer, system_prompt: str | None = None, **template_kwargs) -> PreQuery:
    """Derive the pre-query prefix and the end-of-user-turn token from ``tokenizer``'s chat template.

    ``system_prompt`` adds a system turn (otherwise the template's default, if any, is kept). ``template_kwargs``
    reach the template (e.g. ``date_string="26 Jul 2024"`` for Llama 3.2, whose default is today's date).
    """
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": SENTINEL}]
    text = _render(tokenizer, messages, False, **template_kwargs)
    if text.count(SENTINEL) != 1:
        raise ValueError(
            f"the chat template of {getattr(tokenizer, 'name_or_path', '')!r} does not write a user message's text "
            f"verbatim (found the sentinel {text.count(SENTINEL)} times in {text!r}); it may expect content as a "
            "list of parts (vision models) -- pass a text-only template")
    prefix = text[: text.index(SENTINEL)]
    # What ends the user turn: the first special token after the message when an assistant turn follows.
    suffix = _render(tokenizer, messages, True, **template_kwargs).split(SENTINEL, 1)[1]
    specials = special_strings(tokenizer)
    hits = [(suffix.find(s), -len(s), s) for s in specials if s and s in suffix]
    if not hits:
        raise ValueError(f"no special token ends the user turn in {suffix!r}: cannot tell where an instruction stops")
    return PreQuery(prefix, min(hits)[2])


def render_prompt(tokenizer, instruction: str, system_prompt: str | None = None, **template_kwargs) -> str:
    """The text a model continues to answer ``instruction`` (its own chat template, generation prompt added)."""
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": instruction}]
    return _render(tokenizer, messages, True, **template_kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Prompt frames: a chat template, or a few-shot frame for pretrained models (URIAL-style)
# ----------------------------------------------------------------------------------------------------------------
FEWSHOT_EXAMPLES = (
    ("Name the three primary colours of paint.", "Red, yellow and blue."),
    ("Write one sentence about the sea.", "The sea covers most of the Earth and is home to countless creatures."),
    ("What is 6 times 7?", "6 times 7 is 42."),
)
FEWSHOT_STOP = "\nQuestion:"


@dataclass(frozen=True)
class Frame:
    """How a model is asked something: ``"chat"`` (its chat template) or ``"fewshot"``.

    A pretrained model has no chat template, but it continues a document: a few question/answer pairs followed by a
    new question make it answer (URIAL, arXiv 2312.01552, and SSR use the same idea). It never ends a turn, so its
    answer is cut where it starts the frame's next question (``stop_strings``)."""

    kind: str

    def render(self, tokenizer, instruction: str) -> str:
        if self.kind == "chat":
            return render_prompt(tokenizer, instruction)
        shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEWSHOT_EXAMPLES)
        return f"{shots}Question: {instruction}\nAnswer:"

    @property
    def stop_strings(self) -> list[str] | None:
        return [FEWSHOT_STOP] if self.kind == "fewshot" else None

    def answer_suffix(self, tokenizer, stop_token: str | None = None) -> str:
        """What follows a complete answer: the end-of-turn token, or the frame's next question."""
        return (stop_token or tokenizer.eos_token) if self.kind == "chat" else "\n" + FEWSHOT_STOP

    def answer_prefix(self) -> str:
        """What precedes the answer after the rendered prompt (the few-shot frame puts a space after 'Answer:')."""
        return "" if self.kind == "chat" else " "


FRAMES = ("auto", "chat", "fewshot")


def frame_for(tokenizer, kind: str = "auto") -> Frame:
    """``auto``: the chat template when the tokenizer has one, else the few-shot frame."""
    if kind not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {kind!r}")
    if kind == "auto":
        kind = "chat" if getattr(tokenizer, "chat_template", None) else "fewshot"
    return Frame(kind)


def encode_prompts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of already-rendered prompts, each with exactly one BOS where the model expects one.

    A rendered template usually starts with its BOS as text; tokenising it with special tokens on would add a
    second. Without them, a tokenizer whose template omits BOS but whose model expects one (it adds it by default)
    would get none. So: encode without special tokens, then prepend BOS only if the tokenizer adds one by default
    and the text did not bring it.
    """
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is None:
        return encoded
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    if not probe or probe[0] != bos:
        return encoded
    return [ids if ids and ids[0] == bos else [bos] + ids for ids in encoded]


def encode_prompt(tokenizer, text: str) -> list[int]:
    """``encode_prompts`` for one prompt."""
    return encode_prompts(tokenizer, [text])[0]
