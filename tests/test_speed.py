"""Stage 05's speed plan (helpers.speed): adapter dtype, Liger and how many layers to checkpoint for a memory budget."""
from unittest import mock

import pytest

from helpers import models, speed as sp
from helpers.lab import zoo

BASE = str(zoo.ZOO_DIR / "base")
# notebook 05's parameters the plan reads, under their own names
HP = dict(lora_rank=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", train_embeddings=True,
          max_steps=3, train_batch_size=4, learning_rate=1e-3, max_length=64)
CPU_NF4 = models.Setup("cpu", "float32", "nf4")


def test_speed_plan_on_the_cpu_keeps_fp32_adapters_and_needs_no_checkpointing():
    plan = sp.speed_plan(BASE, CPU_NF4, HP)
    assert (plan.adapter_dtype, plan.liger, plan.checkpointed_layers) == ("float32", False, 0)
    assert plan.layers > 0 and 0 < plan.estimate_gib < plan.budget_gib
    assert sp.numerics(sp.text_config(BASE), CPU_NF4) == {"adapter_dtype": "float32", "liger": False}


def test_speed_plan_checkpoints_as_few_layers_as_the_budget_needs():
    from transformers import LlamaConfig

    # Llama-3.1-8B's shape, QLoRA at 2,048 tokens on a GPU (what bench/training.py measures)
    config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False)
    gpu = models.Setup("cuda", "bfloat16", "nf4")
    hp = {**HP, "lora_rank": 16, "train_embeddings": False, "train_batch_size": 1, "max_length": 2048}
    est = [sp.memory_estimate(config, gpu, hp, n, liger=True, adapter_bytes=2) / 2**30 for n in range(33)]
    # each checkpointed layer saves memory, once the first has paid for the one layer its recompute needs
    assert all(a > b for a, b in zip(est[1:], est[2:])) and est[1] >= est[0]
    assert sp.memory_estimate(config, gpu, hp, 0, liger=False, adapter_bytes=2) > \
        sp.memory_estimate(config, gpu, hp, 0, liger=True, adapter_bytes=2)  # Liger never materialises the logits
    # a larger rank, batch or length, or a trained embedding, needs more
    for more in ({"lora_rank": 64}, {"train_batch_size": 2}, {"max_length": 4096}, {"train_embeddings": True}):
        assert sp.memory_estimate(config, gpu, {**hp, **more}, 0, True, 2) > sp.memory_estimate(config, gpu, hp, 0, True, 2)
    # the plan takes the fewest checkpointed layers whose estimate fits in 90% of the budget
    for budget in (est[0] / 0.9 + 0.01, (est[10] + est[11]) / 2 / 0.9, est[32] / 0.9 - 0.01):
        need = next((n for n in range(33) if est[n] <= 0.9 * budget), 32)
        assert _plan_with(config, gpu, hp, budget).checkpointed_layers == need


def _plan_with(config, setup, hp, budget_gib, **kwargs):
    with mock.patch.object(sp, "text_config", return_value=config), \
            mock.patch.object(sp, "liger_available", return_value=True):
        return sp.speed_plan("unused", setup, hp, memory_budget_gib=budget_gib, **kwargs)


def test_cast_adapters_moves_only_the_trainable_weights():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].weight.requires_grad_(False)
    sp.cast_adapters(model, "bfloat16")
    assert model[0].weight.dtype == torch.float32 and model[1].weight.dtype == torch.bfloat16


def test_when_checkpointing_every_layer_is_not_enough_the_batch_is_split_into_micro_batches():
    """Issue 24: a batch of 8 x 2,048 tokens of the 8B shape that does not fit even with every layer checkpointed
    trains as 2 micro-batches of 4 (gradient accumulation: the same effective batch and steps), with the fewest
    checkpointed layers that fit at 4; with no room at all, one row at a time, every layer checkpointed."""
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False)
    gpu = models.Setup("cuda", "bfloat16", "nf4")
    hp = {**HP, "lora_rank": 16, "train_embeddings": False, "train_batch_size": 8, "max_length": 2048}

    def est(batch, n):
        return sp.memory_estimate(config, gpu, {**hp, "train_batch_size": batch}, n, liger=True, adapter_bytes=2) / 2**30

    budget = (est(8, 32) + est(4, 32)) / 2 / 0.9  # between: all checkpointed fits at 4 rows, not at 8
    plan = _plan_with(config, gpu, hp, budget)
    assert plan.accumulation == 2
    assert plan.checkpointed_layers == next(n for n in range(33) if est(4, n) <= 0.9 * budget)
    assert _plan_with(config, gpu, hp, est(8, 0) / 0.9 + 0.01).accumulation == 1  # room enough: the whole batch
    nothing = _plan_with(config, gpu, hp, 1.0)
    assert (nothing.accumulation, nothing.checkpointed_layers) == (8, 32)


def test_the_base_is_dequantised_only_where_that_costs_no_checkpointing():
    """Speed.dequantised: the 8B shape's base in bf16 (about 9.5 GiB more than in 4 bits) when the budget holds it
    with the layers the 4-bit plan checkpoints; never at the price of more checkpointing or micro-batches."""
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False)
    gpu = models.Setup("cuda", "bfloat16", "nf4")
    hp = {**HP, "lora_rank": 16, "train_embeddings": False, "train_batch_size": 1, "max_length": 2048}

    def est(n, dequantised):
        return sp.memory_estimate(config, gpu, hp, n, liger=True, adapter_bytes=2, dequantised=dequantised) / 2**30

    assert est(0, True) - est(0, False) > 9  # 2 bytes a linear weight against about half a byte
    roomy = _plan_with(config, gpu, hp, est(0, True) / 0.9 + 0.01)
    assert (roomy.dequantised, roomy.checkpointed_layers) == (True, 0) and roomy.estimate_gib == round(est(0, True), 2)
    between = _plan_with(config, gpu, hp, (est(0, False) + est(0, True)) / 2 / 0.9)
    assert (between.dequantised, between.checkpointed_layers) == (False, 0)
    assert not _plan_with(config, gpu, hp, 12).dequantised  # the 12 GiB budget of issue 24's 8B row
    assert not _plan_with(config, models.Setup("cuda", "bfloat16", "none"), hp, 200).dequantised  # nothing to do
    assert not _plan_with(config, gpu, hp, 200, dequantise=False).dequantised  # SDFT arms, side_by_side's packing
    # where the 4-bit plan checkpoints 10 layers, the dequantised weights would cost more: 10 stay, in 4 bits
    tight = _plan_with(config, gpu, hp, (est(9, False) + est(10, False)) / 2 / 0.9)
    assert (tight.checkpointed_layers, tight.dequantised) == (10, False)
    # micro-batches are not traded for it either
    eight = {**hp, "train_batch_size": 8}
    split = _plan_with(config, gpu, eight, sp.memory_estimate(config, gpu, {**hp, "train_batch_size": 4}, 32, True, 2)
                       / 2**30 / 0.9 + 0.01)
    assert (split.accumulation, split.dequantised) == (2, False)
    # on a CPU a dequantised weight takes 4 bytes (float32), not the GPU's 2
    cpu = models.Setup("cpu", "float32", "nf4")
    gap = sp.memory_estimate(config, cpu, hp, 0, False, 4, True) - sp.memory_estimate(config, cpu, hp, 0, False, 4)
    assert gap / 2**30 / (est(0, True) - est(0, False)) == pytest.approx((4 - 0.53) / (2 - 0.53))


def test_layers_are_graphed_where_a_step_can_replay_them():
    """Speed.graphed (helpers.layer_graphs): on a GPU, with no checkpointing, no micro-batches, no 4-bit layers and
    one rank; never on a CPU, nor for SDFT (``graphs=False``), nor together with torch.compile."""
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)  # SmolLM2-135M's shape
    gpu, bare = models.Setup("cuda", "bfloat16", "nf4"), models.Setup("cuda", "bfloat16", "none")
    hp = {**HP, "lora_rank": 16, "train_embeddings": False, "train_batch_size": 16, "max_length": 384}
    roomy = _plan_with(config, gpu, hp, 80)
    assert roomy.graphed and roomy.dequantised and _plan_with(config, bare, hp, 80).graphed
    assert not _plan_with(config, gpu, hp, 80, graphs=False).graphed  # SDFT arms
    assert not _plan_with(config, gpu, hp, 80, dequantise=False).graphed  # bitsandbytes' 4-bit layers
    assert not _plan_with(config, gpu, hp, 80, ranks=2).graphed  # DDP
    tight = _plan_with(config, gpu, hp, 1.0)  # checkpointing and micro-batches: a replay cannot recompute a layer
    assert tight.checkpointed_layers and not tight.graphed
    assert not _plan_with(config, models.Setup("cpu", "float32", "nf4"), hp, 80).graphed
    with mock.patch.dict("os.environ", {sp.GRAPHS_SWITCH: "0"}):  # the switch workers inherit
        assert not _plan_with(config, gpu, hp, 80).graphed
    with pytest.raises(ValueError, match="compiled and graphed are both set"):
        sp.Speed("bfloat16", True, 0, 30, 1.0, 80.0, compiled="regional", graphed=True)
