import random

from helpers.lab import tasks
from helpers.lab.tokenizer import IM_END, build_tokenizer, render_chat


def test_round_trip_on_lab_text_and_arbitrary_text(lab_tokenizer):
    texts = [e.instruction + " " + e.response for e in tasks.sample_examples(tasks.uniform(tasks.ALL_FAMILIES), 300, 4)]
    texts += ["Ünïcödé — 漢字 🙂", "  leading and trailing  ", "tabs\tand\nnewlines", "x" * 50, "3.14159 + 2e10"]
    for text in texts:
        ids = lab_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert lab_tokenizer.decode(ids) == text


def test_lab_words_are_single_tokens(lab_tokenizer):
    for word in tasks.WORDS:
        assert len(lab_tokenizer.tokenize(" " + word)) == 1
        assert len(lab_tokenizer.tokenize(word.upper())) == 1


def test_tokenizer_build_is_deterministic(lab_tokenizer):
    again = build_tokenizer(vocab_size=2048, n_texts=20_000, seed=12345)
    assert again.get_vocab() == lab_tokenizer.get_vocab()


def test_chat_template_matches_fast_renderer(lab_tokenizer):
    for e in tasks.sample_examples(tasks.uniform(tasks.ALL_FAMILIES), 200, 8):
        msgs = e.messages()
        assert lab_tokenizer.apply_chat_template(msgs, tokenize=False) == render_chat(msgs)
        assert lab_tokenizer.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True) == render_chat(
            msgs[:1], add_generation_prompt=True)


def test_assistant_mask_covers_exactly_the_assistant_tokens(lab_tokenizer):
    rng = random.Random(0)
    examples = tasks.sample_examples(tasks.uniform(tasks.ALL_FAMILIES), 100, 9)
    for e in examples:
        # single and multi-turn conversations, with and without a system turn
        msgs = e.messages()
        if rng.random() < 0.5:
            other = rng.choice(examples)
            msgs = [{"role": "system", "content": "Be brief."}] + msgs + other.messages()
        enc = lab_tokenizer.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = enc["input_ids"], enc["assistant_masks"]
        spans, cur = [], []
        for i, m in zip(ids, mask):
            if m:
                cur.append(i)
            elif cur:
                spans.append(cur)
                cur = []
        if cur:
            spans.append(cur)
        answers = [m["content"] + IM_END for m in msgs if m["role"] == "assistant"]
        assert [lab_tokenizer.decode(s) for s in spans] == answers


def test_generation_prompt_and_special_tokens(lab_tokenizer):
    text = lab_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert lab_tokenizer.eos_token == IM_END
    assert lab_tokenizer.bos_token is None  # no BOS: a rendered prompt tokenises without a doubled BOS
    assert lab_tokenizer.pad_token_id != lab_tokenizer.eos_token_id
    ids = lab_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert lab_tokenizer.decode(ids) == text
