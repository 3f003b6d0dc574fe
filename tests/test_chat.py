"""Pre-query template derivation on the lab template and on real chat templates shipped inside trl."""
import pytest

from helpers.chat import encode_prompt, prequery_template, render_prompt
from helpers.lab import standins, zoo

LLAMA31_SYSTEM = ("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                  "Today Date: 26 Jul 2024\n\n<|eot_id|>")
EXPECTED = {  # family: (pre-query template, end-of-user-turn token), as the real models' templates render them
    "qwen2_5": ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\n", "<|im_end|>"),
    "qwen3": ("<|im_start|>user\n", "<|im_end|>"),
    "llama3": ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "llama3_1": ("<|begin_of_text|>" + LLAMA31_SYSTEM + "<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "llama3_2": ("<|begin_of_text|>" + LLAMA31_SYSTEM + "<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "gemma": ("<bos><start_of_turn>user\n", "<end_of_turn>"),
    "gemma3": ("<bos><start_of_turn>user\n", "<end_of_turn>"),
    "phi3": ("<|user|>\n", "<|end|>"),
    "phi3_5": ("<|user|>\n", "<|end|>"),
    "cohere": ("<BOS_TOKEN><|START_OF_TURN_TOKEN|><|USER_TOKEN|>", "<|END_OF_TURN_TOKEN|>"),
    "deepseekv3": ("<｜begin▁of▁sentence｜><｜User｜>", "<｜Assistant｜>"),
    "lfm2": ("<|startoftext|><|im_start|>user\n", "<|im_end|>"),
    "glm4moe": ("[gMASK]<sop><|user|>\n", "<|assistant|>"),
}


def test_lab_prequery():
    _, tok = zoo.load("base")
    pq = prequery_template(tok)
    assert (pq.text, pq.stop_token) == ("<|im_start|>user\n", "<|im_end|>")


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_real_template_prequery(family):
    tok = standins.tokenizer(family)
    pq = prequery_template(tok, date_string="26 Jul 2024")  # Llama 3.2 otherwise writes today's date
    assert (pq.text, pq.stop_token) == EXPECTED[family]
    # the prefix really is the start of a rendered conversation
    assert render_prompt(tok, "Hello there", date_string="26 Jul 2024").startswith(pq.text)
    # tokenised for the model: exactly one BOS, first, for families that use one
    ids = encode_prompt(tok, pq.text)
    if tok.bos_token_id is not None and standins.FAMILIES[family]["add_bos"]:
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        naive = tok(pq.text)["input_ids"]  # what a plain call does: the template's BOS plus the tokenizer's
        assert naive[:2] == [tok.bos_token_id, tok.bos_token_id]
    assert tok.decode(ids) == pq.text


def test_bos_added_when_the_template_omits_it():
    tok = standins.tokenizer("llama3")
    ids = encode_prompt(tok, "<|start_header_id|>user<|end_header_id|>\n\nhi")
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1


def test_system_prompt_replaces_the_default():
    tok = standins.tokenizer("qwen2_5")
    pq = prequery_template(tok, system_prompt="Be brief.")
    assert pq.text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"


BROKEN_TEMPLATES = {
    "missing": (None, "has no chat template"),
    "malformed": ("{% for m in messages %}{{ m.content }", "failed to render"),
    # a vision template expects content as a list of parts and drops a plain string
    "drops the text": (standins.template_path("smolvlm").read_text(), "does not write a user message's text verbatim"),
    "no turn-end token": ("{% for m in messages %}User: {{ m.content }}\n{% endfor %}"
                          "{% if add_generation_prompt %}Bot:{% endif %}", "no special token ends the user turn"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TEMPLATES))
def test_broken_template_is_a_clear_error(case):
    template, message = BROKEN_TEMPLATES[case]
    tok = standins.tokenizer("qwen3")
    tok.chat_template = template
    with pytest.raises(ValueError, match=message):
        prequery_template(tok)
