"""The lab tokenizer: a byte-level BPE trained on lab text, wrapped as a ``PreTrainedTokenizerFast``.

It behaves like a real instruct tokenizer: byte-level (any text round-trips), GPT-2-style pre-tokenisation (a
number with its leading space is one pre-token, so short numbers become single tokens), ChatML special tokens, and a chat template whose assistant turns carry
``{% generation %}`` markers so that TRL's ``assistant_only_loss`` and ``return_assistant_tokens_mask`` work.
There is no BOS token and no default system prompt.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .tasks import ALL_FAMILIES, sample_examples, uniform

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]

# ChatML. The assistant content and its closing <|im_end|> are inside {% generation %}: those are the tokens the
# model is trained to produce. The newline after <|im_end|> is outside (it is never generated: decoding stops at
# <|im_end|>).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """Exactly what ``CHAT_TEMPLATE`` renders, without Jinja (a test keeps the two equal)."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")


def training_corpus(n: int = 20_000, seed: int = 12345) -> list[str]:
    """Lab text for BPE training: every family (general, domain, public) uniformly, with the chat roles' names."""
    return [f"user\n{e.instruction}\nassistant\n{e.response}\n" for e in sample_examples(uniform(ALL_FAMILIES), n, seed)]


def build_tokenizer(vocab_size: int = 2048, n_texts: int = 20_000, seed: int = 12345) -> PreTrainedTokenizerFast:
    """Train the lab BPE deterministically and wrap it with the chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(n_texts, seed), trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=IM_END,
        extra_special_tokens=[IM_START],
        padding_side="left",
        model_max_length=128,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
