"""Offline stand-ins for real model families: their chat templates (the ``.jinja`` files TRL ships) and special
tokens on top of the lab's byte-level BPE, and tiny randomly initialised models of their architectures.

They let the code that real presets run (pre-query derivation, prompt rendering, generation with each model's own
template) be tested without a model hub. The special-token strings and BOS behaviour follow the real tokenizers.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, processors
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from .zoo import ZOO_DIR

# template file (in trl/chat_templates) -> bos, eos, other special tokens, whether the tokenizer adds BOS itself,
# and the architecture of the family's models.
FAMILIES = {
    "qwen2_5": dict(bos=None, eos="<|im_end|>", specials=["<|im_start|>", "<|endoftext|>"], add_bos=False, arch="qwen2"),
    "qwen3": dict(bos=None, eos="<|im_end|>", specials=["<|im_start|>", "<|endoftext|>"], add_bos=False, arch="qwen3"),
    "llama3": dict(bos="<|begin_of_text|>", eos="<|eot_id|>", specials=["<|start_header_id|>", "<|end_header_id|>"],
                   add_bos=True, arch="llama"),
    "llama3_1": dict(bos="<|begin_of_text|>", eos="<|eot_id|>", specials=["<|start_header_id|>", "<|end_header_id|>"],
                     add_bos=True, arch="llama"),
    "llama3_2": dict(bos="<|begin_of_text|>", eos="<|eot_id|>", specials=["<|start_header_id|>", "<|end_header_id|>"],
                     add_bos=True, arch="llama"),
    "gemma": dict(bos="<bos>", eos="<eos>", specials=["<start_of_turn>", "<end_of_turn>"], add_bos=True, arch="gemma"),
    "gemma3": dict(bos="<bos>", eos="<eos>", specials=["<start_of_turn>", "<end_of_turn>"], add_bos=True, arch="gemma"),
    "phi3": dict(bos="<s>", eos="<|endoftext|>", specials=["<|user|>", "<|assistant|>", "<|end|>", "<|system|>"],
                 add_bos=False, arch="phi3"),
    "phi3_5": dict(bos="<s>", eos="<|endoftext|>", specials=["<|user|>", "<|assistant|>", "<|end|>", "<|system|>"],
                   add_bos=False, arch="phi3"),
    "cohere": dict(bos="<BOS_TOKEN>", eos="<|END_OF_TURN_TOKEN|>",
                   specials=["<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>"],
                   add_bos=True, arch="cohere"),
    "deepseekv3": dict(bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", specials=["<｜User｜>", "<｜Assistant｜>"],
                       add_bos=True, arch="llama"),
    "lfm2": dict(bos="<|startoftext|>", eos="<|im_end|>", specials=["<|im_start|>"], add_bos=True, arch="llama"),
    "glm4moe": dict(bos=None, eos="<|endoftext|>", specials=["[gMASK]", "<sop>", "<|user|>", "<|assistant|>",
                                                            "<|system|>", "<|observation|>"], add_bos=False, arch="llama"),
}
PAD = "<|stand_in_pad|>"


def template_path(family: str) -> Path:
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / f"{family}.jinja"
    if not path.exists():
        raise FileNotFoundError(f"trl ships no chat template {path.name}; families: {sorted(FAMILIES)}")
    return path


def tokenizer(family: str) -> PreTrainedTokenizerFast:
    """A tokenizer with ``family``'s real chat template and special tokens (lab BPE underneath)."""
    spec = FAMILIES[family]
    tok = Tokenizer.from_file(str(ZOO_DIR / "base" / "tokenizer.json"))
    tok.add_special_tokens([t for t in [spec["bos"], spec["eos"], PAD, *spec["specials"]] if t])
    if spec["add_bos"]:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A $B", special_tokens=[(spec["bos"], tok.token_to_id(spec["bos"]))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"], pad_token=PAD,
                                   extra_special_tokens=spec["specials"], padding_side="left")
    fast.chat_template = template_path(family).read_text()
    fast.name_or_path = f"stand-in:{family}"
    return fast


def model(family: str, tok: PreTrainedTokenizerFast, seed: int = 0):
    """A tiny randomly initialised model of ``family``'s architecture (a few hundred thousand parameters)."""
    import torch

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        FAMILIES[family]["arch"], vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True)
    m = AutoModelForCausalLM.from_config(config)
    m.generation_config.pad_token_id = tok.pad_token_id
    m.generation_config.eos_token_id = tok.eos_token_id
    return m.eval()
