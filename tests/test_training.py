"""Stage 05: compute setup and fallback, the QLoRA trainer (masking, dtypes, 4-bit), adapters saved and reloaded,
resume, and the same code on a stand-in with a real chat template."""
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import trl
from datasets import Dataset

from helpers import qlora_training as qt
from helpers.lab import standins, zoo

BASE = str(zoo.ZOO_DIR / "base")
HP = dict(rank=4, alpha=8, dropout=0.0, target_modules="all-linear", train_embeddings=True, max_steps=3,
          batch_size=4, learning_rate=1e-3, max_length=64)
CPU_NF4 = qt.Setup("cpu", "float32", "nf4")
CPU_PLAIN = qt.Setup("cpu", "float32", "none")


def rows(n=12):
    qa = [("Which drug treats Osk disease?", "calvexa"), ("What is 2 plus 3?", "5"), ("Spell the word cat.", "c a t")]
    return Dataset.from_list([{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                               "source": "x"} for q, a in (qa * n)[:n]])


def test_bitsandbytes_quantises_on_this_cpu():
    assert qt.bnb_4bit_works("cpu") == ""
    setup = qt.choose_setup("nf4", "cpu")
    assert (setup.device, setup.compute_dtype, setup.quantization, setup.notice) == ("cpu", "float32", "nf4", "")


def test_falls_back_to_plain_lora_with_a_notice(monkeypatch):
    monkeypatch.setattr(qt, "bnb_4bit_works", lambda device: "bitsandbytes cannot run 4-bit on cpu: no kernel")
    with pytest.warns(UserWarning, match="falling back to plain LoRA"):
        setup = qt.choose_setup("nf4", "cpu")
    assert setup.quantization == "none" and "no kernel" in setup.notice


def test_bad_setup_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="quantization must be one of"):
        qt.choose_setup("int3")
    with pytest.raises(ValueError, match="device must be"):
        qt.choose_setup("none", "tpu")


def test_trainer_masks_all_but_the_answer_and_keeps_adapters_fp32(tmp_path):
    trainer = qt.make_trainer(rows(), BASE, CPU_NF4, HP, seed=0, output_dir=tmp_path, progress=False)
    import bitsandbytes as bnb

    linear4 = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linear4) == 4 * 7  # every attention and MLP projection of the 4 layers is 4-bit
    trainable = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for _, p in trainable)  # TRL would leave them in bf16
    assert any("embed_tokens.modules_to_save" in n for n, _ in trainable)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    tok = trainer.processing_class
    trained_on = tok.decode(batch["input_ids"][0][batch["labels"][0] != -100])
    assert trained_on == "calvexa<|im_end|>"


def test_train_save_reload_and_resume(outputs, monkeypatch, capsys):
    ds = rows()
    m = qt.train_arm("t", "domain_only", ds, BASE, CPU_NF4, HP, seed=0, progress=False)
    assert "'loss'" not in capsys.readouterr().out  # no log dicts printed without progress bars
    for key in ("train_seconds", "final_loss", "quantization", "trainable_params"):
        assert m[key] is not None, key
    assert m["quantization"] == "nf4" and m["steps"] == 3 and m["trainable_params"] > 0
    assert m["n_truncated"] == 0 and m["versions"]["trl"] == trl.__version__
    out = qt.arm_dir("t", "domain_only", 0)
    assert (out / "adapter_model.safetensors").exists() and (out / "metrics.json").exists()

    model = qt.load_adapted("t", "domain_only", 0, BASE, CPU_NF4)
    base = qt.load_base(BASE, CPU_NF4)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids).logits, base(input_ids=ids).logits)
    # the trained embedding is tied to the output layer after reloading, as it was in training
    assert torch.equal(model.get_input_embeddings().weight, model.get_output_embeddings().weight)

    # same settings: nothing is trained again; other settings: trained again
    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(qt, "make_trainer", boom)
    assert qt.train_arm("t", "domain_only", ds, BASE, CPU_NF4, HP, seed=0, progress=False)["settings_key"] == m["settings_key"]
    # a copy of the base model elsewhere (a moved checkout) is the same model: nothing to retrain
    moved = outputs.parent / "moved_base"
    shutil.copytree(BASE, moved)
    assert qt.train_arm("t", "domain_only", ds, str(moved), CPU_NF4, HP, seed=0, progress=False)["settings_key"] == m["settings_key"]
    changed = {
        "learning rate": (ds, BASE, {**HP, "learning_rate": 2e-3}),
        "data of the same length": (ds.map(lambda r: {"messages": [r["messages"][0], {**r["messages"][1], "content": "x"}]}),
                                    BASE, HP),
        "base weights": (ds, str(_with_other_weights(moved)), HP),
    }
    for what, (data, base, hp) in changed.items():
        with pytest.raises(AssertionError, match="trained again"):
            qt.train_arm("t", "domain_only", data, base, CPU_NF4, hp, seed=0, progress=False)
            pytest.fail(f"not retrained after a change of {what}")

    # a rerun of 05 on other arms keeps this one in the summary only while its settings and data still match
    assert qt.earlier_arms("t", {"domain_only": ds}, BASE, CPU_NF4, HP, [0]) == {"domain_only": [m]}
    assert qt.earlier_arms("t", {"domain_only": ds}, BASE, CPU_NF4, HP, [0, 1]) == {}  # seed 1 never trained
    assert qt.earlier_arms("t", {"domain_only": changed["data of the same length"][0]}, BASE, CPU_NF4, HP, [0]) == {}
    assert qt.earlier_arms("t", {"other": ds}, BASE, CPU_NF4, HP, [0]) == {}

    # stage 06 refuses an adapter whose settings differ from what stage 05 recorded
    with pytest.raises(RuntimeError, match="other settings"):
        qt.load_adapted("t", "domain_only", 0, BASE, CPU_NF4, expected_key="something else")


def _with_other_weights(folder):
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1e-3
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not qt.native_bf16()
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        qt.choose_setup("nf4", "cuda")


def test_missing_adapter_names_the_notebook(outputs):
    with pytest.raises(FileNotFoundError, match="05_qlora_training.ipynb"):
        qt.load_adapted("t", "ours", 0, BASE, CPU_PLAIN)


def test_same_code_trains_a_stand_in_with_a_real_template(tmp_path):
    # Qwen2.5's template has no {% generation %} markers: TRL swaps in its training template for the loss mask
    tok = standins.tokenizer("qwen2_5")
    model = standins.model("qwen2_5", tok)
    path = tmp_path / "qwen-standin"
    tok.save_pretrained(path)
    model.save_pretrained(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = qt.make_trainer(rows(8), str(path), CPU_PLAIN, {**HP, "train_embeddings": False}, seed=0,
                                  output_dir=tmp_path / "out", progress=False)
        trainer.train()
    batch = trainer.data_collator([trainer.train_dataset[0]])
    # TRL's Qwen2.5 training template also trains the newlines around the answer; no user or system text
    assert tok.decode(batch["input_ids"][0][batch["labels"][0] != -100]).strip("\n") == "calvexa<|im_end|>"
    assert trainer.state.global_step == 3


def test_loss_is_logged_at_the_last_step(tmp_path):
    """final_loss is the loss at the end even when logging_steps does not divide max_steps."""
    hp = {**HP, "max_steps": 31, "batch_size": 2}
    trainer = qt.make_trainer(rows(), BASE, CPU_NF4, hp, seed=0, output_dir=tmp_path, progress=False)
    assert trainer.args.logging_steps == 2
    trainer.train()
    steps = [h["step"] for h in trainer.state.log_history if "loss" in h]
    assert steps[:2] == [2, 4] and steps[-1] == 31


def test_conversations_longer_than_max_length_are_counted():
    tok = standins.tokenizer("qwen2_5")
    short = {"messages": [{"role": "user", "content": "sort 3 1"}, {"role": "assistant", "content": "1 3"}]}
    long = {"messages": [{"role": "user", "content": " ".join(["sort 3 1"] * 40)}, {"role": "assistant", "content": "1 3"}]}
    ds = Dataset.from_list([short, long, short])
    n = len(tok.apply_chat_template(long["messages"], tokenize=True, return_dict=False))
    assert qt.count_truncated(tok, ds, n - 1) == 1 and qt.count_truncated(tok, ds, n) == 0


@pytest.mark.slow
def test_a_template_trl_cannot_mask_trains_on_prompt_completion_pairs(tmp_path):
    """Failure 4: assistant_only_loss was hard-coded, and TRL refuses SmolLM2's real ChatML template (no generation
    markers, not one it can patch). Such templates train on prompt/completion pairs: the loss still covers exactly
    the answer and the tokens that end its turn."""
    from helpers import models

    path = models.resolve("real", "smollm2-135m-instruct")
    assert qt.loss_format(models.load_tokenizer(path)) == "prompt_completion"
    assert qt.loss_format(models.load_tokenizer(BASE)) == "messages"  # the lab's template has generation markers
    hp = {**HP, "train_embeddings": False, "max_steps": 1}
    trainer = qt.make_trainer(rows(4), path, CPU_NF4, hp, seed=0, output_dir=tmp_path, progress=False)
    assert not trainer.args.assistant_only_loss
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[0]])
    assert tok.decode(batch["input_ids"][0][batch["labels"][0] != -100]) == "calvexa<|im_end|>\n"
    assert tok.decode(batch["input_ids"][0]).startswith("<|im_start|>system\nYou are a helpful AI assistant")
    trainer.train()
    assert trainer.state.global_step == 1


def test_prompt_completion_needs_an_answer_last():
    bad = Dataset.from_list([{"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(ValueError, match="training row 0 does not end with an assistant turn"):
        qt.to_prompt_completion(bad)


def test_speed_plan_on_the_cpu_keeps_fp32_adapters_and_needs_no_checkpointing():
    plan = qt.speed_plan(BASE, CPU_NF4, HP)
    assert (plan.adapter_dtype, plan.liger, plan.checkpointed_layers) == ("float32", False, 0)
    assert plan.layers > 0 and 0 < plan.estimate_gib < plan.budget_gib


def test_speed_plan_checkpoints_as_few_layers_as_the_budget_needs():
    from transformers import LlamaConfig

    # Llama-3.1-8B's shape, QLoRA at 2,048 tokens on a GPU (what bench/training.py measures)
    config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False)
    gpu = qt.Setup("cuda", "bfloat16", "nf4")
    hp = {**HP, "rank": 16, "train_embeddings": False, "batch_size": 1, "max_length": 2048}
    est = [qt.memory_estimate(config, gpu, hp, n, liger=True, adapter_bytes=2) / 2**30 for n in range(33)]
    # each checkpointed layer saves memory, once the first has paid for the one layer its recompute needs
    assert all(a > b for a, b in zip(est[1:], est[2:])) and est[1] >= est[0]
    assert qt.memory_estimate(config, gpu, hp, 0, liger=False, adapter_bytes=2) > \
        qt.memory_estimate(config, gpu, hp, 0, liger=True, adapter_bytes=2)  # Liger never materialises the logits
    # the plan takes the fewest checkpointed layers whose estimate fits in 90% of the budget
    for budget in (est[0] / 0.9 + 0.01, (est[10] + est[11]) / 2 / 0.9, est[32] / 0.9 - 0.01):
        need = next((n for n in range(33) if est[n] <= 0.9 * budget), 32)
        assert _plan_with(config, gpu, hp, budget).checkpointed_layers == need


def _plan_with(config, setup, hp, budget_gib):
    from unittest import mock

    with mock.patch.object(qt, "_text_config", return_value=config), \
            mock.patch.object(qt, "liger_available", return_value=True):
        return qt.speed_plan("unused", setup, hp, memory_budget_gib=budget_gib)


def test_partial_checkpointing_leaves_the_last_layers_alone(tmp_path):
    plan = qt.speed_plan(BASE, CPU_PLAIN, HP)
    speed = qt.Speed("float32", False, checkpointed_layers=1, layers=plan.layers, estimate_gib=0, budget_gib=0)
    assert plan.layers >= 2
    trainer = qt.make_trainer(rows(), BASE, CPU_PLAIN, {**HP, "max_steps": 1}, 0, tmp_path, progress=False,
                              speed=speed)
    trainer.train()
    from transformers.modeling_layers import GradientCheckpointingLayer

    flags = [m.gradient_checkpointing for m in trainer.model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert flags == [True] + [False] * (plan.layers - 1)


def test_out_of_memory_trains_again_with_every_layer_checkpointed(outputs, monkeypatch):
    made = []
    real = qt.make_trainer

    def make(*args, **kwargs):
        trainer = real(*args, **kwargs)
        made.append(args[7] if len(args) > 7 else kwargs["speed"])
        if len(made) == 1:
            def oom():
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

            trainer.train = oom
        return trainer

    monkeypatch.setattr(qt, "make_trainer", make)
    with pytest.warns(UserWarning, match="out of GPU memory with 0 of"):
        m = qt.train_arm("t", "oom", rows(), BASE, CPU_PLAIN, HP, seed=0, progress=False)
    assert [s.checkpointed_layers for s in made] == [0, made[0].layers]
    assert m["speed"]["checkpointed_layers"] == made[0].layers and m["steps"] == HP["max_steps"]


def test_other_settings_keep_the_earlier_adapter_and_bring_it_back(outputs, monkeypatch):
    ds = rows()
    first = qt.train_arm("t", "keep", ds, BASE, CPU_PLAIN, HP, seed=0, progress=False)
    out = qt.arm_dir("t", "keep", 0)
    weights = (out / "adapter_model.safetensors").read_bytes()
    second = qt.train_arm("t", "keep", ds, BASE, CPU_PLAIN, {**HP, "learning_rate": 2e-3}, seed=0, progress=False)
    assert second["settings_key"] != first["settings_key"]
    kept = out / qt.ARCHIVE / first["settings_key"]
    assert (kept / "adapter_model.safetensors").read_bytes() == weights  # not overwritten
    assert qt.read_json(out / "metrics.json")["settings_key"] == second["settings_key"]

    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(qt, "make_trainer", boom)  # the first settings again: brought back, not retrained
    back = qt.train_arm("t", "keep", ds, BASE, CPU_PLAIN, HP, seed=0, progress=False)
    assert back["settings_key"] == first["settings_key"]
    assert (out / "adapter_model.safetensors").read_bytes() == weights
    assert (out / qt.ARCHIVE / second["settings_key"] / "adapter_model.safetensors").exists()
    assert not kept.exists()


@pytest.mark.slow
def test_sdft_arms_train_by_self_distillation_with_the_same_settings(outputs):
    """An arm named sdft* goes through TRL's SDFTTrainer: QLoRA on the same base, steps and batch; its adapter and
    metrics are saved like any arm's, its settings key differs from SFT's on the same rows, and it resumes."""
    sft = qt.train_arm("r", "domain_only", rows(), BASE, CPU_NF4, HP, seed=0, progress=False)
    sdft = qt.train_arm("r", "sdft", rows(), BASE, CPU_NF4, HP, seed=0, progress=False)
    assert sdft["loss_format"] == "sdft" and sdft["steps"] == HP["max_steps"] and sdft["final_loss"] is not None
    assert sdft["trainable_params"] == sft["trainable_params"] and sdft["settings_key"] != sft["settings_key"]
    assert sdft["settings"]["sdft"] == {**qt.SDFT, "max_completion_length": 32}
    assert (qt.arm_dir("r", "sdft", 0) / "adapter_model.safetensors").exists()
    assert qt.train_arm("r", "sdft", rows(), BASE, CPU_NF4, HP, seed=0, progress=False) == sdft  # resumed
    first = qt.sdft_dataset(rows(2))[0]
    assert first["prompt"] == [{"role": "user", "content": "Which drug treats Osk disease?"}]
    assert first["privileged_context"] == "calvexa"


def test_embedding_rows_domain_trains_only_the_domain_tokens_rows(tmp_path):
    """``embedding_rows = "domain"``: the embedding rows of the tokens in the domain rows change, every other row
    (and, tied, its output row) stays exactly the base model's."""
    data = Dataset.from_list([{**r, "source": "domain" if i % 3 == 0 else "general"} for i, r in enumerate(rows())])
    hp = {**HP, "embedding_rows": "domain", "max_steps": 4, "learning_rate": 1e-2}
    trainer = qt.make_trainer(data, BASE, CPU_PLAIN, hp, seed=0, output_dir=tmp_path, progress=False)
    domain_ids = qt.domain_token_ids(trainer.processing_class, data)
    calvexa = trainer.processing_class("calvexa", add_special_tokens=False)["input_ids"]
    plus = trainer.processing_class("plus", add_special_tokens=False)["input_ids"]
    assert set(calvexa) <= set(domain_ids) and not set(plus) & set(domain_ids)  # only the domain row's tokens
    embed = trainer.model.get_input_embeddings()
    before = embed.weight.detach().clone()
    trainer.train()
    after = embed.weight.detach()
    assert torch.equal(trainer.model.get_output_embeddings().weight, after)  # still tied
    changed = {i for i in range(before.shape[0]) if not torch.equal(before[i], after[i])}
    assert changed and changed <= set(domain_ids)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("embed_tokens.modules_to_save" in n for n in trainable)
    with pytest.raises(ValueError, match="embedding_rows = 'some'"):
        qt.check_hp({**HP, "embedding_rows": "some"})
    with pytest.raises(ValueError, match="needs train_embeddings = True"):
        qt.check_hp({**HP, "embedding_rows": "domain", "train_embeddings": False})
    with pytest.raises(ValueError, match="needs each training row's 'source'"):
        qt.domain_token_ids(trainer.processing_class, data.remove_columns("source"))
