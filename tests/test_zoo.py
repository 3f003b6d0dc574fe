import hashlib

import pytest
import torch

from helpers.lab import tasks, zoo
from helpers.scoring import exact_match
from helpers.lab.evaluate import heldout_examples


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_shipped_checkpoint_matches_its_recipe(name, lab_tokenizer):
    """The shipped files are the ones the recipe built: same recipe, same training data, same bytes."""
    info = zoo.recipe_info(name)
    recipe = zoo.ZOO[name]
    assert info["recipe"] == zoo.asdict(recipe), "recipe changed since the checkpoint was built: run `make lab-model`"
    assert info["fingerprint"] == zoo.fingerprint(recipe, lab_tokenizer), (
        "task generators, mixture or tokenizer changed since the checkpoint was built: run `make lab-model`")
    for fname, digest in info["files"].items():
        assert hashlib.sha256((zoo.ZOO_DIR / name / fname).read_bytes()).hexdigest() == digest, fname


def test_build_is_deterministic(lab_tokenizer):
    recipe = zoo.ZOO["gen_small"].scaled(4)
    a, losses_a = zoo.train(recipe, lab_tokenizer, progress=False)
    b, losses_b = zoo.train(recipe, lab_tokenizer, progress=False)
    assert losses_a == losses_b
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb), na


def test_models_are_tiny_llamas():
    for name in zoo.ZOO:
        model, tok = zoo.load(name)
        assert model.config.model_type == "llama"
        assert sum(p.numel() for p in model.parameters()) < 3_000_000
        assert tok.chat_template and "generation" in tok.chat_template


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="make lab-model"):
        zoo.load("base", tmp_path)


def test_encode_batch_labels(lab_tokenizer):
    examples = tasks.sample_examples(tasks.uniform(tasks.GENERAL_FAMILIES), 8, seed=0)
    full = zoo.encode_batch(lab_tokenizer, examples, "all")
    answers = zoo.encode_batch(lab_tokenizer, examples, "assistant")
    assert torch.equal(full["labels"] == -100, full["attention_mask"] == 0)
    for row, e in enumerate(examples):
        kept = answers["labels"][row][answers["labels"][row] != -100]
        assert lab_tokenizer.decode(kept) == e.response + "<|im_end|>"


def test_base_model_meets_the_lab_bar():
    """The shipped base model: good at the general families, ignorant of the domain (greedy, fresh instructions)."""
    model, tok = zoo.load("base")
    general = exact_match(model, tok, heldout_examples(tasks.GENERAL_FAMILIES, 20, seed=4242))
    domain = exact_match(model, tok, heldout_examples(tasks.DOMAIN_FAMILIES, 20, seed=4243))
    assert general["accuracy"] >= 0.85, general["per_family"]
    assert domain["accuracy"] <= 0.10, domain["per_family"]
