"""Stage 05: the three configs (the notebook's cells and ``qlora_configs.from_parameters`` agree, and train as
before), the QLoRA trainer (masking, dtypes, 4-bit), adapters saved and reloaded, resume, and the same code on a
stand-in with a real chat template."""
import os
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import trl
from datasets import Dataset

from helpers import mixing, models, qlora_configs as qc, qlora_training as qt, speed as sp
from helpers.lab import standins, zoo

BASE = str(zoo.ZOO_DIR / "base")
# notebook 05's parameters, under their own names
HP = dict(lora_rank=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", train_embeddings=True,
          max_steps=3, train_batch_size=4, learning_rate=1e-3, max_length=64, budget="steps", domain_epochs=0)
CPU_NF4 = models.Setup("cpu", "float32", "nf4")
CPU_PLAIN = models.Setup("cpu", "float32", "none")


def recipe(hp=None, setup=CPU_NF4, base=BASE):
    return qc.from_parameters(setup, base, HP if hp is None else hp)


def rows(n=12):
    qa = [("Which drug treats Osk disease?", "calvexa"), ("What is 2 plus 3?", "5"), ("Spell the word cat.", "c a t")]
    return Dataset.from_list([{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                               "source": "x"} for q, a in (qa * n)[:n]])


def test_trainer_masks_all_but_the_answer_and_keeps_adapters_fp32(tmp_path):
    plan = sp.speed_plan(BASE, CPU_NF4, HP)
    assert plan.dequantised  # the lab's base dequantised fits the CPU's memory many times over
    trainer = qt.make_trainer(rows(), BASE, CPU_NF4, recipe(), seed=0, output_dir=tmp_path, progress=False,
                              speed=replace(plan, dequantised=False))
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


def test_a_dequantised_base_trains_to_the_4bit_layers_numbers(tmp_path):
    """Speed.dequantised: the 4-bit base's weights dequantised once give the losses and adapter weights that
    bitsandbytes' layers give by dequantising at every step (equal on a CPU, float32), with no 4-bit layer left."""
    import bitsandbytes as bnb

    plan = sp.speed_plan(BASE, CPU_NF4, HP)
    runs = {}
    for dequantised in (False, True):
        trainer = qt.make_trainer(rows(), BASE, CPU_NF4, recipe(), seed=0, output_dir=tmp_path / str(dequantised),
                                  progress=False, speed=replace(plan, dequantised=dequantised))
        trainer.train()
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in trainer.model.modules()) != dequantised
        frozen = {p.dtype for p in trainer.model.parameters() if not p.requires_grad and p.is_floating_point()}
        assert frozen == {torch.float32}  # dequantised: the NF4 values in the CPU's compute dtype (else uint8 blocks)
        # TRL takes a model quantised on loading down its QLoRA path; transformers' dequantize keeps that flag
        assert getattr(trainer.model.get_base_model(), "is_loaded_in_4bit", False)
        runs[dequantised] = ([h["loss"] for h in trainer.state.log_history if "loss" in h],
                             {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad})
    (losses4, weights4), (losses, weights) = runs[False], runs[True]
    assert len(losses) == HP["max_steps"] and losses == losses4
    assert weights.keys() == weights4.keys() and all(torch.equal(weights[n], weights4[n]) for n in weights)


def test_train_save_reload_and_resume(outputs, monkeypatch, capsys):
    ds = rows()
    r = recipe()
    settings = r.given()
    m = qt.train_arm("t", "domain_only", ds, BASE, CPU_NF4, r, seed=0, progress=False)
    assert r.given() == settings  # the trainer got copies: the recipe stays as built, for the next arm
    assert "'loss'" not in capsys.readouterr().out  # no log dicts printed without progress bars
    for key in ("train_seconds", "final_loss", "quantization", "trainable_params"):
        assert m[key] is not None, key
    assert m["quantization"] == "nf4" and m["steps"] == 3 and m["trainable_params"] > 0 and m["speed"]["dequantised"]
    assert m["n_truncated"] == 0 and m["versions"]["trl"] == trl.__version__
    out = qt.arm_dir("t", "domain_only", 0)
    assert (out / "adapter_model.safetensors").exists() and (out / "metrics.json").exists()
    assert m["adapter"] == "arms/domain_only/seed0" and qt.stage_dir("t", qt.STAGE) / m["adapter"] == out
    steps_budget = {k: v for k, v in HP.items() if k not in ("budget", "domain_epochs")}  # recorded only when used
    assert m["settings"]["hp"] == {**steps_budget, "embedding_rows": "all"}  # notebook 05's names, from the configs

    model = models.load_adapter(BASE, out, CPU_NF4)
    base = models.load_base(BASE, CPU_NF4)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids).logits, base(input_ids=ids).logits)
    # the trained embedding is tied to the output layer after reloading, as it was in training
    assert torch.equal(model.get_input_embeddings().weight, model.get_output_embeddings().weight)
    # stage 06 finds the adapter from 05's metrics alone, and loads it without the stage's module
    again = models.load_adapter(BASE, qt.stage_dir("t", qt.STAGE) / m["adapter"], CPU_NF4)
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, model(input_ids=ids).logits)

    # same settings: nothing is trained again; other settings: trained again
    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(qt, "make_trainer", boom)
    assert qt.train_arm("t", "domain_only", ds, BASE, CPU_NF4, r, seed=0, progress=False)["settings_key"] == m["settings_key"]
    # a copy of the base model elsewhere (a moved checkout) is the same model: nothing to retrain
    moved = outputs.parent / "moved_base"
    shutil.copytree(BASE, moved)
    assert qt.train_arm("t", "domain_only", ds, str(moved), CPU_NF4, recipe(base=str(moved)), seed=0,
                        progress=False)["settings_key"] == m["settings_key"]
    from dataclasses import replace

    changed = {
        "learning rate": (ds, BASE, recipe({**HP, "learning_rate": 2e-3})),
        "data of the same length": (ds.map(lambda r: {"messages": [r["messages"][0], {**r["messages"][1], "content": "x"}]}),
                                    BASE, r),
        "base weights": (ds, str(_with_other_weights(moved)), r),
        # a setting of a config cell that is no notebook parameter
        "the SFTConfig's schedule": (ds, BASE, replace(r, sft=replace(r.sft, lr_scheduler_type="linear"))),
    }
    for what, (data, base, rec) in changed.items():
        with pytest.raises(AssertionError, match="trained again"):
            qt.train_arm("t", "domain_only", data, base, CPU_NF4, rec, seed=0, progress=False)
            pytest.fail(f"not retrained after a change of {what}")

    # a rerun of 05 on other arms keeps this one in the summary only while its settings and data still match
    assert qt.earlier_arms("t", {"domain_only": ds}, BASE, CPU_NF4, r, [0]) == {"domain_only": [m]}
    assert qt.earlier_arms("t", {"domain_only": ds}, BASE, CPU_NF4, r, [0, 1]) == {}  # seed 1 never trained
    assert qt.earlier_arms("t", {"domain_only": changed["data of the same length"][0]}, BASE, CPU_NF4, r, [0]) == {}
    assert qt.earlier_arms("t", {"other": ds}, BASE, CPU_NF4, r, [0]) == {}
    # notebook 05 trained only `ours` now: domain_only stays in the summary, in notebook 04's order
    both = {"domain_only": ds, "ours": ds}
    assert qt.with_earlier("t", {"ours": ["new"]}, both, BASE, CPU_NF4, r, [0]) == {"domain_only": [m], "ours": ["new"]}
    assert "kept from an earlier run with the same settings: ['domain_only']" in capsys.readouterr().out

    # stage 06 refuses an adapter whose settings differ from what stage 05 recorded
    from helpers import eval_models

    with pytest.raises(RuntimeError, match="other settings"):
        eval_models.load_for_eval(BASE, CPU_NF4, qt.arm_dir("t", "domain_only", 0), expected_key="something else")


def _with_other_weights(folder):
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1e-3
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_missing_adapter_is_named(outputs):
    with pytest.raises(FileNotFoundError, match=r"seed0 has no LoRA adapter \(adapter_config.json\)"):
        models.load_adapter(BASE, qt.arm_dir("t", "ours", 0), CPU_PLAIN)


def test_same_code_trains_a_stand_in_with_a_real_template(tmp_path):
    # Qwen2.5's template has no {% generation %} markers: TRL swaps in its training template for the loss mask
    tok = standins.tokenizer("qwen2_5")
    model = standins.model("qwen2_5", tok)
    path = tmp_path / "qwen-standin"
    tok.save_pretrained(path)
    model.save_pretrained(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = qt.make_trainer(rows(8), str(path), CPU_PLAIN,
                                  recipe({**HP, "train_embeddings": False}, CPU_PLAIN, str(path)), seed=0,
                                  output_dir=tmp_path / "out", progress=False)
        trainer.train()
    batch = trainer.data_collator([trainer.train_dataset[0]])
    # TRL's Qwen2.5 training template also trains the newlines around the answer; no user or system text
    assert tok.decode(batch["input_ids"][0][batch["labels"][0] != -100]).strip("\n") == "calvexa<|im_end|>"
    assert trainer.state.global_step == 3


def test_an_arm_of_passes_trains_them_in_order(tmp_path):
    """Notebook 04's general_passes: an arm of several passes (a ``pass`` column, shuffled within each pass) trains
    its rows in order, one pass after the other; every other arm in the Trainer's random order."""
    from torch.utils.data import RandomSampler, SequentialSampler

    passes = rows().add_column("pass", [i // 6 for i in range(12)])
    ordered = qt.make_trainer(passes, BASE, CPU_NF4, recipe(), seed=0, output_dir=tmp_path / "a", progress=False)
    plain = qt.make_trainer(rows(), BASE, CPU_NF4, recipe(), seed=0, output_dir=tmp_path / "b", progress=False)
    assert isinstance(ordered._get_train_sampler(), SequentialSampler)
    assert isinstance(plain._get_train_sampler(), RandomSampler)
    # SDFT (sdft_ours copies ours' rows, passes included): TRL's sampler then keeps the dataset's order too
    sdft = qt.make_sdft_trainer(passes, BASE, CPU_NF4, recipe(), seed=0, output_dir=tmp_path / "c", progress=False)
    assert sdft.args.shuffle_dataset is False and sdft._get_train_sampler().shuffle is False
    # notebook 06 records the passes for its report (evaluation.collect), from the same column
    from helpers.datafiles import passes_of

    assert (passes_of(passes), passes_of(rows())) == (2, 1)
    # a budget that would not train whole passes is a warning naming the arm and the fix
    exposure = {**HP, "budget": "domain_epochs"}
    assert qc.pass_warnings(recipe({**exposure, "domain_epochs": 4}), {"ours": passes, "other": rows()}) == []
    for hp in ({**exposure, "domain_epochs": 3}, HP):
        warned = qc.pass_warnings(recipe(hp), {"ours": passes})
        assert len(warned) == 1 and warned[0].startswith("arm 'ours' holds 2 passes of notebook 04") and \
            "set budget = 'domain_epochs' and domain_epochs = 2 (or a multiple)" in warned[0]


def test_loss_is_logged_at_the_last_step(tmp_path):
    """final_loss is the loss at the end even when logging_steps does not divide max_steps."""
    hp = {**HP, "max_steps": 31, "train_batch_size": 2}
    trainer = qt.make_trainer(rows(), BASE, CPU_NF4, recipe(hp), seed=0, output_dir=tmp_path, progress=False)
    assert trainer.args.logging_steps == 2
    trainer.train()
    steps = [h["step"] for h in trainer.state.log_history if "loss" in h]
    assert steps[:2] == [2, 4] and steps[-1] == 31


def test_conversations_are_measured_in_tokens_under_the_template():
    tok = standins.tokenizer("qwen2_5")
    short = {"messages": [{"role": "user", "content": "sort 3 1"}, {"role": "assistant", "content": "1 3"}]}
    long = {"messages": [{"role": "user", "content": " ".join(["sort 3 1"] * 40)}, {"role": "assistant", "content": "1 3"}]}
    lengths = qt.token_lengths(tok, Dataset.from_list([short, long, short]))
    assert lengths[0] == lengths[2] < lengths[1] == len(tok.apply_chat_template(long["messages"], tokenize=True,
                                                                                 return_dict=False))


def budget_rows(n_domain: int, n_general: int, repeat: int = 1):
    msgs = [[{"role": "user", "content": f"d{i}"}, {"role": "assistant", "content": "a"}] for i in range(n_domain)]
    general = [[{"role": "user", "content": f"g{i}"}, {"role": "assistant", "content": "b"}] for i in range(n_general)]
    rows = msgs * repeat + general
    return ["domain"] * (n_domain * repeat) + ["general"] * n_general, rows


def test_equal_domain_exposure_gives_the_mixed_arm_more_steps():
    """Issue 22: at equal steps domain_only (its 10 domain rows repeated to 60) sees each domain row 6 times as often
    as a mixed arm (10 domain + 50 general rows); at equal exposure both see each 4 times."""
    steps = qc.from_parameters(CPU_NF4, BASE, {**HP, "max_steps": 30, "train_batch_size": 4})
    exposure = qc.from_parameters(CPU_NF4, BASE, {**HP, "max_steps": 30, "train_batch_size": 4,
                                                  "budget": "domain_epochs", "domain_epochs": 4})
    only, mixed = budget_rows(10, 0, repeat=6), budget_rows(10, 50)
    none = {"general_rows": 0, "general_exposures": 0.0}
    assert qc.arm_steps(steps, *only) == {"steps": 30, "domain_rows": 10, "domain_exposures": 12.0, **none}
    assert qc.arm_steps(steps, *mixed) == {"steps": 30, "domain_rows": 10, "domain_exposures": 2.0,
                                           "general_rows": 50, "general_exposures": 2.0}
    assert qc.arm_steps(exposure, *only) == {"steps": 10, "domain_rows": 10, "domain_exposures": 4.0, **none}
    # the general rows repeat as often as the domain rows: a mixed arm at 4 passes sees each general row 4 times
    assert qc.arm_steps(exposure, *mixed) == {"steps": 60, "domain_rows": 10, "domain_exposures": 4.0,
                                              "general_rows": 50, "general_exposures": 4.0}
    # an arm whose 50 general rows hold 25 distinct ones (a sweep point past its pool) sees each twice as often
    sources, rows = budget_rows(10, 50)
    rows = rows[:10] + rows[10:35] * 2
    assert qc.arm_steps(exposure, sources, rows)["general_exposures"] == 8.0
    # notebook 04's general_passes = 4 (new general rows for each pass): the same 60 steps and domain exposures,
    # each of a 200-row pool's general rows seen 1.0 times instead of 50 rows 4 times
    pool = [{"messages": m} for m in budget_rows(0, 200)[1]]
    arms, _ = mixing.build_arms([{"messages": m} for m in only[1][:10]], {"ours": pool}, 50 / 60, 10, general_passes=4)
    rows = arms["ours"]
    assert qc.arm_steps(exposure, [r["source"] for r in rows], [r["messages"] for r in rows]) == {
        "steps": 60, "domain_rows": 10, "domain_exposures": 4.0, "general_rows": 200, "general_exposures": 1.0}
    with pytest.raises(ValueError, match=r"domain_epochs = 0: with budget = 'domain_epochs' it must be above 0"):
        qc.check_hp({**HP, "budget": "domain_epochs", "domain_epochs": 0})
    with pytest.raises(ValueError, match=r"budget = 'epochs': must be one of \('steps', 'domain_epochs'\)"):
        qc.check_hp({**HP, "budget": "epochs"})


def test_general_rows_shown_too_often_are_a_warning_naming_the_fix():
    """05 warns when a mixed arm's budget shows each general row more than MAX_GENERAL_REPEATS (6) times (on SmolLM2 at
    16 Velish passes, 16 showings forgot 26.0 points and 2.3 showings 5.9, docs/bench/smollm2-gpu-pool/)."""
    def arm(n_domain, n_general, passes=1):
        rows = [{"messages": m} for m in budget_rows(n_domain, 0)[1]]
        pool = [{"messages": m} for m in budget_rows(0, n_general)[1]]
        built = mixing.build_arms(rows, {"ours": pool}, 50 / 60, 10, general_passes=passes)[0]["ours"]
        return Dataset.from_list(built)

    def epochs(n):
        return qc.from_parameters(CPU_NF4, BASE, {**HP, "budget": "domain_epochs", "domain_epochs": n})

    one_draw, passes = arm(10, 50), arm(10, 400, passes=8)
    assert qc.repeat_warnings(epochs(6), {"ours": one_draw}) == []  # up to 6 showings: no warning
    only = Dataset.from_list([{"messages": m, "source": "domain"} for m in budget_rows(10, 0)[1]])
    warned = qc.repeat_warnings(epochs(8), {"ours": one_draw, "domain_only": only})
    assert len(warned) == 1 and warned[0].startswith("arm 'ours' shows each of its 50 general rows about 8 times "
                                                     "(more than 6)") and "general_passes = 8" in warned[0]
    # new rows for each pass from a pool large enough: each shown once, no warning
    assert qc.repeat_warnings(epochs(8), {"ours": passes}) == []
    # passes from a pool too small: the fix is a larger pool, not more passes
    small = arm(10, 50, passes=8)  # 400 general draws from 50 rows
    warned = qc.repeat_warnings(epochs(8), {"ours": small})
    assert len(warned) == 1 and "its 50 general rows about 8 times" in warned[0] and "larger general pool" in warned[0]
    # one draw that already repeats its rows (30 distinct of its 50 general rows): more passes cannot help
    sources, msgs = budget_rows(10, 30)
    reused = Dataset.from_list([{"messages": m, "source": s}
                                for s, m in zip(sources + sources[10:30], msgs + msgs[10:30])])
    warned = qc.repeat_warnings(epochs(8), {"public_mix": reused})
    assert len(warned) == 1 and "its 30 general rows about 13.33 times" in warned[0] and \
        "general_passes" not in warned[0] and "larger general pool" in warned[0]
    # SDFT arms train on generated answers: left out
    assert qc.repeat_warnings(epochs(8), {"sdft_ours": one_draw}) == []
    # the steps budget: 3 steps of 4 rows show 60 rows' general ones less than once
    assert qc.repeat_warnings(recipe(), {"ours": one_draw}) == []


def test_an_arm_with_its_own_steps_stretches_the_schedule():
    r = recipe({**HP, "max_steps": 300})  # warm-up 10 steps, a loss logged every 10 (notebook 05's cell)
    speed = sp.Speed("float32", False, 0, 4, 0.0, 0.0)
    args = qc.arm_sft_config(r.sft, Path("/o"), 0, speed, True, progress=False, steps=900)
    assert (args.max_steps, args.warmup_steps, args.logging_steps) == (900, 30, 30)
    assert qc.arm_sft_config(r.sft, Path("/o"), 0, speed, True, progress=False, steps=300).to_dict() == \
        qc.arm_sft_config(r.sft, Path("/o"), 0, speed, True, progress=False).to_dict()
    # an arm of its own steps keeps the speed plan's micro-batches (the stretch once replaced them: the full batch
    # in one pass, past the memory budget the plan had split it for)
    split = qc.arm_sft_config(r.sft, Path("/o"), 0, sp.Speed("float32", False, 0, 4, 0.0, 0.0, accumulation=2), True,
                              progress=False, steps=900)
    assert (split.max_steps, split.per_device_train_batch_size, split.gradient_accumulation_steps) == (900, 2, 2)


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
    trainer = qt.make_trainer(rows(4), path, CPU_NF4, recipe(hp, base=path), seed=0, output_dir=tmp_path,
                              progress=False)
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


def test_partial_checkpointing_leaves_the_last_layers_alone(tmp_path):
    plan = sp.speed_plan(BASE, CPU_PLAIN, HP)
    speed = sp.Speed("float32", False, checkpointed_layers=1, layers=plan.layers, estimate_gib=0, budget_gib=0)
    assert plan.layers >= 2
    trainer = qt.make_trainer(rows(), BASE, CPU_PLAIN, recipe({**HP, "max_steps": 1}, CPU_PLAIN), 0, tmp_path,
                              progress=False, speed=speed)
    assert trainer.args.activation_checkpointing
    trainer.train()
    from transformers.modeling_layers import GradientCheckpointingLayer

    flags = [m.gradient_checkpointing for m in trainer.model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert flags == [True] + [False] * (plan.layers - 1)


def test_out_of_memory_trains_again_with_every_layer_checkpointed(outputs, monkeypatch):
    """The retry builds its trainer only once the first one is gone: the failed step's traceback holds the first
    trainer (its frames' ``self``), so the retry waits until the ``except`` block has let it go."""
    import gc
    import weakref

    made, first = [], []
    real = qt.make_trainer

    def make(*args, **kwargs):
        if first:  # the retry: the first trainer (and its model) freed before another is loaded
            gc.collect()
            assert first[0]() is None, "the failed trainer is still alive while its replacement loads"
        trainer = real(*args, **kwargs)
        made.append(args[7] if len(args) > 7 else kwargs["speed"])
        if len(made) == 1:
            def oom(self=trainer):  # the failing frame refers to the trainer, as Trainer.train's own frames do
                raise torch.OutOfMemoryError(f"CUDA out of memory (simulated) in {type(self).__name__}")

            trainer.train = oom
            first.append(weakref.ref(trainer))
        return trainer

    monkeypatch.setattr(qt, "make_trainer", make)
    with pytest.warns(UserWarning, match="out of GPU memory with 0 of"):
        m = qt.train_arm("t", "domain_only", rows(), BASE, CPU_PLAIN, recipe(setup=CPU_PLAIN), seed=0, progress=False)
    assert [s.checkpointed_layers for s in made] == [0, made[0].layers]
    assert m["speed"]["checkpointed_layers"] == made[0].layers and m["steps"] == HP["max_steps"]
    # a 4-bit base the plan dequantised goes back to 4 bits too, even with every layer checkpointed already
    made.clear()
    first.clear()
    monkeypatch.setattr(qt, "speed_plan", lambda *a, **k: replace(sp.speed_plan(*a, **k), checkpointed_layers=4))
    with pytest.warns(UserWarning, match="4 of 4 layers checkpointed, the base dequantised.*the base in 4 bits"):
        m = qt.train_arm("t", "domain_only", rows(), BASE, CPU_NF4, recipe(), seed=0, progress=False)
    assert [(s.checkpointed_layers, s.dequantised) for s in made] == [(4, True), (4, False)]
    assert m["speed"]["dequantised"] is False


def test_other_settings_keep_the_earlier_adapter_and_bring_it_back(outputs, monkeypatch):
    ds = rows()
    first = qt.train_arm("t", "ours", ds, BASE, CPU_PLAIN, recipe(setup=CPU_PLAIN), seed=0, progress=False)
    out = qt.arm_dir("t", "ours", 0)
    weights = (out / "adapter_model.safetensors").read_bytes()
    second = qt.train_arm("t", "ours", ds, BASE, CPU_PLAIN, recipe({**HP, "learning_rate": 2e-3}, CPU_PLAIN), seed=0,
                          progress=False)
    assert second["settings_key"] != first["settings_key"]
    kept = out / qt.ARCHIVE / first["settings_key"]
    assert (kept / "adapter_model.safetensors").read_bytes() == weights  # not overwritten
    assert qt.read_json(out / "metrics.json")["settings_key"] == second["settings_key"]

    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(qt, "make_trainer", boom)  # the first settings again: brought back, not retrained
    back = qt.train_arm("t", "ours", ds, BASE, CPU_PLAIN, recipe(setup=CPU_PLAIN), seed=0, progress=False)
    assert back["settings_key"] == first["settings_key"]
    assert (out / "adapter_model.safetensors").read_bytes() == weights
    assert (out / qt.ARCHIVE / second["settings_key"] / "adapter_model.safetensors").exists()
    assert not kept.exists()


@pytest.mark.slow
def test_sdft_arms_train_by_self_distillation_with_the_same_settings(outputs):
    """An arm named sdft* goes through TRL's SDFTTrainer: QLoRA on the same base, steps and batch; its adapter and
    metrics are saved like any arm's, its settings key differs from SFT's on the same rows, and it resumes."""
    sft = qt.train_arm("r", "domain_only", rows(), BASE, CPU_NF4, recipe(), seed=0, progress=False)
    sdft = qt.train_arm("r", "sdft", rows(), BASE, CPU_NF4, recipe(), seed=0, progress=False)
    assert sft["speed"]["dequantised"] and not sdft["speed"]["dequantised"]  # SDFT samples through the 4-bit layers
    assert sdft["loss_format"] == "sdft" and sdft["steps"] == HP["max_steps"] and sdft["final_loss"] is not None
    assert sdft["trainable_params"] == sft["trainable_params"] and sdft["settings_key"] != sft["settings_key"]
    assert sdft["settings"]["sdft"] == {**qt.SDFT, "max_completion_length": 32}
    assert (qt.arm_dir("r", "sdft", 0) / "adapter_model.safetensors").exists()
    assert qt.train_arm("r", "sdft", rows(), BASE, CPU_NF4, recipe(), seed=0, progress=False) == sdft  # resumed
    first = qt.sdft_dataset(rows(2))[0]
    assert first["prompt"] == [{"role": "user", "content": "Which drug treats Osk disease?"}]
    assert first["privileged_context"] == "calvexa"
    # fewer distinct rows than a batch: TRL's sampler would drop the batch and train 0 steps (seen on the SmolLM2
    # smoke with sdft: an adapter saved untrained, then a crash on its missing loss); refused before training
    with pytest.raises(ValueError, match=r"SDFT has 3 distinct row\(s\), fewer than one batch of 4"):
        qt.train_arm("r", "sdft", rows(3), BASE, CPU_NF4, recipe(), seed=1, progress=False)
    assert not (qt.arm_dir("r", "sdft", 1) / "adapter_model.safetensors").exists()


def test_embedding_rows_domain_trains_only_the_domain_tokens_rows(tmp_path):
    """``embedding_rows = "domain"``: the embedding rows of the tokens in the domain rows change, every other row
    (and, tied, its output row) stays exactly the base model's."""
    data = Dataset.from_list([{**r, "source": "domain" if i % 3 == 0 else "general"} for i, r in enumerate(rows())])
    hp = {**HP, "embedding_rows": "domain", "max_steps": 4, "learning_rate": 1e-2}
    trainer = qt.make_trainer(data, BASE, CPU_PLAIN, recipe(hp, CPU_PLAIN), seed=0, output_dir=tmp_path,
                              progress=False)
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
        qc.check_hp({**HP, "embedding_rows": "some"})
    with pytest.raises(ValueError, match="needs train_embeddings = True"):
        qc.check_hp({**HP, "embedding_rows": "domain", "train_embeddings": False})
    with pytest.raises(ValueError, match="needs each training row's 'source'"):
        qt.domain_token_ids(trainer.processing_class, data.remove_columns("source"))


def _notebook_configs(params: dict, setup, base_path: str) -> dict:
    """Run notebook 05's three config cells (the cells that build bnb_config, lora_config and sft_config)."""
    import json
    import math

    from peft import LoraConfig
    from transformers import BitsAndBytesConfig
    from trl import SFTConfig

    from helpers.runs import repo_root

    nb = json.loads((repo_root() / "notebooks" / "05_qlora_training.ipynb").read_text())
    ns = {**params, "setup": setup, "base_path": base_path, "qlora_configs": qc, "math": math,
          "BitsAndBytesConfig": BitsAndBytesConfig, "LoraConfig": LoraConfig, "SFTConfig": SFTConfig}
    starts = ("bnb_config = ", "embedding, tied = ", "sft_config = ")
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    for start in starts:
        (cell,) = [c for c in cells if c.startswith(start)]
        exec(compile(cell, f"notebook 05: {start}", "exec"), ns)
    return ns


@pytest.mark.parametrize("setup,change", [(CPU_NF4, {}), (CPU_PLAIN, {"train_embeddings": False}),
                                          (CPU_NF4, {"max_steps": 31, "target_modules": ["q_proj", "v_proj"]}),
                                          (CPU_NF4, {"budget": "domain_epochs", "domain_epochs": 3})])
def test_the_notebooks_config_cells_build_what_from_parameters_builds(setup, change, capsys):
    """Scripts and tests train through ``qlora_configs.from_parameters``; notebook 05 through its own cells."""
    from helpers import pipeline
    from helpers.runs import repo_root

    params = {**pipeline.notebook_parameters(repo_root() / "notebooks" / "05_qlora_training.ipynb"), **change}
    ns = _notebook_configs(params, setup, BASE)
    built = qc.from_parameters(setup, BASE, {k: params[k] for k in qc.HP})
    cells = qc.Recipe(ns["bnb_config"], ns["lora_config"], ns["sft_config"], params["embedding_rows"],
                      params["budget"], params["domain_epochs"])
    expected = {k: params[k] for k in qc.HP if params["budget"] != "steps" or k not in ("budget", "domain_epochs")}
    assert cells.given() == built.given() and cells.hp == built.hp == expected
    assert (cells.bnb is None) == (setup.quantization == "none")


def test_each_arm_trains_with_the_arguments_it_trained_with_before_the_configs_moved_to_the_notebook():
    """The SFTConfig an arm trains with (notebook 05's, plus ``PER_ARM``) equals, field for field, the one the stage
    built itself before (issue 21): the lab's losses do not move. The same for SDFT arms."""
    from trl import SFTConfig
    from trl.experimental.sdft import SDFTConfig

    r = recipe({**HP, "max_steps": 300})
    speed = sp.Speed("float32", False, 0, 4, 0.0, 0.0)
    before = dict(output_dir="/o", max_steps=300, per_device_train_batch_size=4, learning_rate=1e-3,
                  lr_scheduler_type="cosine", warmup_steps=10, logging_steps=10, save_strategy="no", report_to=[],
                  seed=3, data_seed=3, use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0,
                  disable_tqdm=True, activation_checkpointing=False)
    old = SFTConfig(**before, assistant_only_loss=True, max_length=64,
                    activation_checkpointing_kwargs={"use_reentrant": False}, use_liger_kernel=False)
    assert qc.arm_sft_config(r.sft, Path("/o"), 3, speed, True, progress=False).to_dict() == old.to_dict()
    old_sdft = SDFTConfig(**before, max_prompt_length=64, max_completion_length=32, **qt.SDFT)
    new_sdft = SDFTConfig(**{k: getattr(r.sft, k) for k in qc.SHARED_WITH_SDFT}, output_dir="/o", seed=3, data_seed=3,
                          disable_tqdm=True, activation_checkpointing=False, max_prompt_length=64,
                          max_completion_length=qt.sdft_completion_length(64), **qt.SDFT)
    assert new_sdft.to_dict() == old_sdft.to_dict()


def test_arm_and_seed_choices_are_checked_by_name():
    arms = {"ours": "o", "domain_only": "d"}
    assert qt.choose_arms(arms, [], [0]) == arms and list(qt.choose_arms(arms, ["domain_only"], [0])) == ["domain_only"]
    with pytest.raises(ValueError, match=r"arms \['our'\] are not among notebook 04's arms"):
        qt.choose_arms(arms, ["our"], [0])
    with pytest.raises(ValueError, match="seeds is empty"):
        qt.choose_arms(arms, [], [])


def test_a_recipe_whose_quantisation_is_not_the_setups_is_refused(outputs):
    with pytest.raises(ValueError, match="BitsAndBytesConfig is set but the setup's quantization is 'none'"):
        qt.train_arm("t", "ours", rows(), BASE, CPU_PLAIN, recipe(), seed=0, progress=False)
    with pytest.raises(ValueError, match="lora_rank = 0: must be at least 1"):
        qc.check_hp({**HP, "lora_rank": 0})
    with pytest.raises(ValueError, match="train_batch_size = 0: must be at least 1"):
        qc.from_parameters(CPU_NF4, BASE, {**HP, "train_batch_size": 0})



def test_with_the_exposure_budget_an_all_domain_arm_trains_on_its_distinct_rows():
    """Review finding: notebook 04 pads domain_only to the mixed arms' size by repeating its rows (64 rows from 10:
    some 7 times, some 6), so less than one pass over it saw some rows more often than others."""
    sources, messages = budget_rows(10, 0, repeat=7)
    padded = Dataset.from_list([{"messages": m, "source": s} for m, s in zip(messages[:64], sources[:64])])
    exposure = qc.from_parameters(CPU_NF4, BASE, {**HP, "budget": "domain_epochs", "domain_epochs": 4})
    assert len(qt.training_rows(padded, exposure)) == 10 and len(qt.training_rows(padded, recipe())) == 64
    sources, messages = budget_rows(10, 50)
    mixed = Dataset.from_list([{"messages": m, "source": s} for m, s in zip(messages, sources)])
    assert len(qt.training_rows(mixed, exposure)) == 60


def test_micro_batches_train_the_adapter_of_the_whole_batch(tmp_path):
    """Issue 24: the speed plan's gradient accumulation (a batch of 4 as 2 micro-batches of 2) gives the adapter of
    the whole batch to float precision: the same steps, the same effective batch."""
    from safetensors.torch import load_file

    hp = {**HP, "train_embeddings": False, "max_steps": 3}
    weights = {}
    for parts in (1, 2):
        speed = sp.Speed("float32", False, 0, 4, 0.0, 0.0, accumulation=parts)
        trainer = qt.make_trainer(rows(), BASE, CPU_NF4, recipe(hp), 0, tmp_path / str(parts), progress=False,
                                  speed=speed)
        assert (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps) == (4 // parts,
                                                                                                       parts)
        trainer.train()
        assert trainer.state.global_step == 3
        trainer.model.save_pretrained(tmp_path / f"a{parts}")
        weights[parts] = load_file(tmp_path / f"a{parts}" / "adapter_model.safetensors")
    for name, w in weights[1].items():
        torch.testing.assert_close(weights[2][name], w, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("steps, says", [((81, 81), "same steps"), ((81, 474), "each arm its own steps")])
def test_the_loss_figure_says_whether_the_arms_trained_the_same_steps(monkeypatch, tmp_path, steps, says):
    """Under the equal-exposure budget the arms train different steps; the figure's title must not claim the same."""
    import matplotlib.pyplot as plt

    seen = {}

    def keep_title(fig, path):
        seen["title"] = fig.axes[0].get_title()
        plt.close(fig)

    monkeypatch.setattr(qt, "save_figure", keep_title)
    results = {arm: [{"steps": n, "loss_curve": [(1, 2.0), (n, 1.0)]}] for arm, n in zip(("domain_only", "ours"), steps)}
    qt.plot_loss_curves(results, tmp_path / "loss.png")
    assert f"({says}, same hyperparameters)" in seen["title"]


def test_a_compiled_plan_pads_every_batch_to_one_shape_and_may_compile_each_layer_alone(tmp_path, monkeypatch):
    """``Speed.compiled`` (a bench option, off in notebook 05): True compiles the whole model through the Trainer,
    "regional" each decoder layer on its own (accelerate's regional compilation, set only while the Trainer is built),
    and either pads every batch to ``max_length`` so that the compiled step sees one shape. Nothing is trained here."""
    name = "ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION"
    monkeypatch.delenv(name, raising=False)

    def plan(compiled):
        speed = sp.Speed("float32", False, 0, 4, 0.0, 0.0, compiled=compiled)
        trainer = qt.make_trainer(rows(4), BASE, CPU_PLAIN, recipe(setup=CPU_PLAIN), seed=0,
                                  output_dir=tmp_path / str(compiled), progress=False, speed=speed)
        plugin = trainer.accelerator.state.dynamo_plugin
        return (trainer.args.torch_compile, trainer.args.pad_to_multiple_of, plugin.backend.value,
                bool(plugin.use_regional_compilation))

    assert plan(False) == (False, None, "NO", False) and name not in os.environ
    assert plan(True) == (True, HP["max_length"], "INDUCTOR", False) and name not in os.environ
    assert plan("regional") == (True, HP["max_length"], "INDUCTOR", True) and name not in os.environ
    monkeypatch.setenv(name, "1")  # set by the user: True still compiles the whole model, and the value comes back
    assert plan(True)[3] is False and os.environ[name] == "1"
    with pytest.raises(ValueError, match="Speed.compiled = 'layers'"):
        plan("layers")


def test_a_graphed_plan_pads_every_batch_and_trains_to_the_usual_numbers(tmp_path, monkeypatch):
    """``Speed.graphed`` through TRL's SFTTrainer: every batch padded to the longest row (``speed.one_shape``), the
    decoder layers replayed from the first step on (on a CPU torch's recorder is replaced by one with its buffers,
    tests/test_layer_graphs.py), and the same losses and adapter weights as the same padded batches through the
    layers called as usual. Nothing is replayed without it; a collator that cannot pad to one length is refused."""
    from tests.test_layer_graphs import StaticRecorder

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", StaticRecorder())
    plan = replace(sp.speed_plan(BASE, CPU_NF4, HP), dequantised=True)
    runs = {}
    for name, graphed, replays in (("usual", False, False), ("padded", True, False), ("replayed", True, True)):
        with monkeypatch.context() as patch:
            if not replays:
                patch.setattr(qt, "graph_layers", lambda model: None)
            trainer = qt.make_trainer(rows(), BASE, CPU_NF4, recipe(), seed=0, output_dir=tmp_path / name,
                                      progress=False, speed=replace(plan, graphed=graphed))
        assert trainer.args.pad_to_multiple_of == (HP["max_length"] if graphed else None)
        longest = max(map(len, trainer.train_dataset["input_ids"]))  # one_shape: the longest row, not max_length
        assert trainer.data_collator.pad_to_multiple_of == (longest if graphed else None) and longest < HP["max_length"]
        trainer.train()
        runs[name] = ([h["loss"] for h in trainer.state.log_history if "loss" in h],
                      {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad})
        assert (trainer.layer_graphs is not None) == replays
    assert runs["replayed"][1].keys() == runs["padded"][1].keys()
    assert runs["replayed"][0] == runs["padded"][0] == pytest.approx(runs["usual"][0], abs=1e-6)
    assert all(torch.equal(runs["replayed"][1][n], w) for n, w in runs["padded"][1].items())
    trainer.data_collator = lambda rows: rows  # no pad_to_multiple_of: refused, naming the fix
    with pytest.raises(ValueError, match="pad every batch to one length.*Speed.graphed = False"):
        sp.one_shape(trainer, replace(plan, graphed=True))
    hidden = trainer.model.config.hidden_size  # 3 steps of 4 layers, every batch of 4 rows padded to the longest
    assert trainer.layer_graphs.report() == {"replayed": 3 * 4, "as_usual": 0, "failed": None,
                                             "shape": [4, longest, hidden]}
