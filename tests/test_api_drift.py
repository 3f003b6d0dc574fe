"""Every keyword we pass to transformers / tokenizers / papermill still exists in the pinned versions.

When a library renames or drops a keyword, it is often silently swallowed by **kwargs; these tests fail instead.
Keep one entry per call site (file and function in the comment).
"""
import inspect

import datasets
import papermill
from datasketch import MinHash, MinHashLSH
import pytest
from sentence_transformers import SentenceTransformer
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import silhouette_score
from tokenizers import processors, trainers
from peft import LoraConfig, PeftModel
from transformers import AutoConfig, BitsAndBytesConfig, GenerationConfig, LlamaConfig, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer


def params_of(fn):
    return set(inspect.signature(fn).parameters)


CALLS = {
    # helpers/pipeline.py: run()
    "papermill.execute_notebook": (papermill.execute_notebook,
                                   {"parameters", "kernel_name", "cwd", "progress_bar", "log_output"}),
    # helpers/pipeline.py: notebook_parameters()
    "papermill.inspect_notebook": (papermill.inspect_notebook, {"notebook_path"}),
    # helpers/lab/tokenizer.py: build_tokenizer()
    "tokenizers.trainers.BpeTrainer": (trainers.BpeTrainer,
                                       {"vocab_size", "special_tokens", "initial_alphabet", "show_progress"}),
    # helpers/lab/tokenizer.py: wrap() -- PreTrainedTokenizerFast takes these through **kwargs, checked below
    # helpers/lab/standins.py: tokenizer()
    "tokenizers.processors.TemplateProcessing": (processors.TemplateProcessing, {"single", "pair", "special_tokens"}),
    # helpers/embeddings.py
    "SentenceTransformer": (SentenceTransformer.__init__, {"device"}),
    "SentenceTransformer.encode": (SentenceTransformer.encode, {"batch_size", "normalize_embeddings",
                                                                "convert_to_numpy", "show_progress_bar"}),
    # helpers/reconstruct_distribution.py: categorise(), plot_clusters()
    "KMeans": (KMeans.__init__, {"n_clusters", "n_init", "random_state"}),
    "silhouette_score": (silhouette_score, {"sample_size", "random_state"}),
    "TfidfVectorizer": (TfidfVectorizer.__init__, {"token_pattern", "stop_words"}),
    "PCA": (PCA.__init__, {"n_components", "random_state"}),
    # helpers/filtering.py: minhash_duplicates()
    "datasketch.MinHash": (MinHash.__init__, {"num_perm", "seed"}),
    "datasketch.MinHashLSH": (MinHashLSH.__init__, {"threshold", "num_perm"}),
    # helpers/committee.py: RewardModel.score()
    "tokenizer.pad": (PreTrainedTokenizerFast.pad, {"return_tensors"}),
    # helpers/mixing.py
    "datasets.load_dataset": (datasets.load_dataset, {"split"}),
    "datasets.load_from_disk": (datasets.load_from_disk, {"dataset_path"}),
    # helpers/lab/zoo.py + lab_world + chat.py + committee.py (RewardModel.score): apply_chat_template(...)
    "apply_chat_template": (PreTrainedTokenizerFast.apply_chat_template,
                            {"tokenize", "add_generation_prompt", "return_dict", "return_assistant_tokens_mask"}),
    # helpers/placement.py: weights_gib() -- compute_module_sizes(empty, dtype=...)[""]
    "accelerate.utils.compute_module_sizes": (__import__("accelerate.utils").utils.compute_module_sizes,
                                              {"model", "dtype"}),
    # helpers/placement.py: free_gib() (which gpu_placement() reads) -- mem_get_info(i)
    "torch.cuda.mem_get_info": (__import__("torch").cuda.mem_get_info, {"device"}),
    # helpers/placement.py: free_gib() -- total_memory less NVML's used memory, no CUDA context opened
    "torch.cuda.get_device_properties": (__import__("torch").cuda.get_device_properties, {"device"}),
    "torch.cuda.device_memory_used": (__import__("torch").cuda.device_memory_used, {"device"}),
    # helpers/models.py: native_bf16()
    "torch.cuda.is_bf16_supported": (__import__("torch").cuda.is_bf16_supported, {"including_emulation"}),
    # helpers/models.py: bnb_config(), load_base(quantization_config=); notebooks/05_qlora_training.ipynb's cell
    "BitsAndBytesConfig": (BitsAndBytesConfig.__init__, {"load_in_4bit", "bnb_4bit_quant_type",
                                                         "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype"}),
    # helpers/qlora_configs.py: from_parameters(); notebooks/05_qlora_training.ipynb's cell
    "peft.LoraConfig": (LoraConfig, {"r", "lora_alpha", "lora_dropout", "target_modules", "task_type",
                                     "modules_to_save", "ensure_weight_tying"}),
    # helpers/qlora_configs.py: from_parameters(), notebooks/05_qlora_training.ipynb's cell, and arm_sft_config()'s
    # dataclasses.replace (PER_ARM) -- SFTConfig is a dataclass, so its signature lists every field
    "trl.SFTConfig": (SFTConfig, {"train_sampling_strategy", "output_dir", "max_steps", "per_device_train_batch_size", "learning_rate",
                                  "lr_scheduler_type", "warmup_steps", "logging_steps", "save_strategy", "report_to",
                                  "seed", "data_seed", "assistant_only_loss", "max_length", "use_cpu", "bf16", "fp16",
                                  "disable_tqdm", "activation_checkpointing", "activation_checkpointing_kwargs",
                                  "use_liger_kernel", "torch_compile", "pad_to_multiple_of"}),
    # helpers/qlora_training.py: make_sdft_trainer() -- SDFTConfig is a dataclass too (SHARED_WITH_SDFT + these)
    "trl.experimental.sdft.SDFTConfig": (__import__("trl.experimental.sdft", fromlist=["SDFTConfig"]).SDFTConfig,
                                         {"output_dir", "max_steps", "per_device_train_batch_size", "learning_rate",
                                          "lr_scheduler_type", "warmup_steps", "logging_steps", "save_strategy",
                                          "report_to", "seed", "data_seed", "use_cpu", "bf16", "fp16",
                                          "dataloader_num_workers", "disable_tqdm", "activation_checkpointing",
                                          "max_prompt_length", "max_completion_length", "num_generations",
                                          "teacher_model_kind", "shuffle_dataset"}),
    "trl.experimental.sdft.SDFTTrainer": (__import__("trl.experimental.sdft", fromlist=["SDFTTrainer"]).SDFTTrainer
                                          .__init__, {"model", "args", "train_dataset", "processing_class",
                                                      "peft_config"}),
    # helpers/qlora_training.py: make_trainer()
    "trl.SFTTrainer": (SFTTrainer.__init__, {"model", "args", "train_dataset", "processing_class", "peft_config"}),
    # helpers/qlora_training.py: _finish_trainer() -- trainer.remove_callback(PrinterCallback), add_callback(LogLastStep)
    "Trainer.remove_callback": (SFTTrainer.remove_callback, {"callback"}),
    "Trainer.add_callback": (SFTTrainer.add_callback, {"callback"}),
    # helpers/qlora_training.py: LogLastStep.on_step_end(args, state, control)
    "TrainerCallback.on_step_end": (__import__("transformers").TrainerCallback.on_step_end, {"args", "state", "control"}),
    # helpers/speed.py: PartialCheckpointing.on_train_begin(args, state, control, model=...)
    "TrainerCallback.on_train_begin": (__import__("transformers").TrainerCallback.on_train_begin,
                                       {"args", "state", "control"}),
    # helpers/models.py: load_adapter()
    "peft.PeftModel.from_pretrained": (PeftModel.from_pretrained, {"model", "model_id"}),
    # helpers/kl_drift.py: _base_of() -- with model.disable_adapter(): (no keywords; it must still exist)
    "peft.PeftModel.disable_adapter": (PeftModel.disable_adapter, {"self"}),
    # helpers/eval_models.py: _dequantized_on_cpu() and bench/evaluation.py -- model.dequantize(dtype=...)
    "transformers.PreTrainedModel.dequantize": (__import__("transformers").PreTrainedModel.dequantize, {"dtype"}),
    # helpers/eval_models.py: merged_for_scoring() -- model.merge_and_unload(), reached through the PeftModel
    "peft.LoraModel.merge_and_unload": (__import__("peft").LoraModel.merge_and_unload, {"self"}),
    # helpers/models.py: in_hub_cache()
    "huggingface_hub.try_to_load_from_cache": (__import__("huggingface_hub").try_to_load_from_cache,
                                               {"repo_id", "filename"}),
    # helpers/lmeval.py: evaluate()
    "lm_eval.simple_evaluate": (__import__("lm_eval").simple_evaluate,
                                {"model", "model_args", "tasks", "device", "batch_size", "limit",
                                 "apply_chat_template", "log_samples", "task_manager"}),
    # helpers/lmeval.py: task_configs() -- TaskConfig is a dataclass, so its signature lists every field
    "lm_eval TaskConfig": (__import__("lm_eval.config.task", fromlist=["TaskConfig"]).TaskConfig,
                           {"task", "dataset_path", "dataset_kwargs", "test_split", "doc_to_text", "doc_to_choice",
                            "doc_to_target", "target_delimiter", "process_docs", "process_results", "output_type",
                            "generation_kwargs", "metric_list", "metadata"}),
    # helpers/lmeval.py: the hf model's arguments (model_args); HFLM.__init__ takes them by name
    "lm_eval HFLM": (__import__("lm_eval.models.huggingface", fromlist=["HFLM"]).HFLM.__init__,
                     {"pretrained", "dtype", "peft", "tokenizer", "batch_size"}),
    # helpers/lmeval.py: _quiet() -- the request types' progress bars, off when notebook 06's progress is
    "lm_eval HFLM.loglikelihood": (__import__("lm_eval.models.huggingface", fromlist=["HFLM"]).HFLM.loglikelihood,
                                   {"requests", "disable_tqdm"}),
    "lm_eval HFLM.loglikelihood_rolling": (
        __import__("lm_eval.models.huggingface", fromlist=["HFLM"]).HFLM.loglikelihood_rolling,
        {"requests", "disable_tqdm"}),
    "lm_eval HFLM.generate_until": (__import__("lm_eval.models.huggingface", fromlist=["HFLM"]).HFLM.generate_until,
                                    {"requests", "disable_tqdm"}),
    # helpers/lmeval.py: task_manager() -- include_defaults=False when only the shipped sets are scored
    "lm_eval TaskManager": (__import__("lm_eval.tasks", fromlist=["TaskManager"]).TaskManager.__init__,
                            {"include_path", "include_defaults"}),
    # helpers/generate.py: stop_criterion(), passed to model.generate(stopping_criteria=...)
    "transformers StopStringCriteria": (__import__("transformers").StopStringCriteria.__init__,
                                        {"tokenizer", "stop_strings"}),
    "transformers generate(stopping_criteria)": (__import__("transformers").GenerationMixin.generate,
                                                 {"stopping_criteria"}),
    # helpers/qlora_training.py: loss_format()
    "trl.get_training_chat_template": (__import__("trl.chat_template_utils", fromlist=["x"]).get_training_chat_template,
                                       {"processing_class"}),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_keywords_exist(name):
    fn, keywords = CALLS[name]
    missing = keywords - params_of(fn)
    assert not missing, f"{name} no longer accepts {sorted(missing)}"


def test_tokenizer_init_keywords(lab_tokenizer):
    # helpers/lab/tokenizer.py: wrap()
    assert lab_tokenizer.pad_token == "<|endoftext|>" and lab_tokenizer.eos_token == "<|im_end|>"
    assert lab_tokenizer.padding_side == "left" and lab_tokenizer.model_max_length == 128
    assert "<|im_start|>" in lab_tokenizer.extra_special_tokens


def test_llama_config_keywords():
    # helpers/lab/zoo.py: make_model()
    kw = dict(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
              num_key_value_heads=1, max_position_embeddings=32, tie_word_embeddings=True, pad_token_id=0,
              eos_token_id=1, bos_token_id=None)
    config = LlamaConfig(**kw)
    for key, value in kw.items():
        assert getattr(config, key) == value, key


def test_generate_keywords():
    # helpers/generate.py: generate() -> model.generate(...)
    config = GenerationConfig()
    for key in ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "eos_token_id", "pad_token_id",
                "cache_implementation", "disable_compile"):  # the last two: the CUDA fast path
        assert hasattr(config, key), key


def test_attention_registration_the_packed_decode_uses():
    # helpers/generate.py: packed_gqa_attention is registered with transformers' attention and mask interfaces, calls
    # sdpa_attention_forward for what it does not handle, and is switched on by set_attn_implementation
    from transformers import AttentionInterface, PreTrainedModel
    from transformers.integrations import sdpa_attention
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    assert callable(AttentionInterface.register) and callable(AttentionMaskInterface.register) and callable(sdpa_mask)
    assert {"module", "query", "key", "value", "attention_mask", "dropout", "scaling"} <= params_of(
        sdpa_attention.sdpa_attention_forward)
    assert "attn_implementation" in params_of(PreTrainedModel.set_attn_implementation)
    # the fold this mirrors, which transformers skips under torch.compile
    assert "not is_torchdynamo_compiling()" in inspect.getsource(sdpa_attention.sdpa_attention_forward)


def test_what_the_static_decode_loop_calls():
    # helpers/decode.py: static_decode() builds StaticCache(config=, max_cache_len=), makes each step's masks with
    # create_masks_for_generate (as transformers' generate does for a static cache), and compiles _step with
    # torch.compile(**INDUCTOR) -- transformers' CompileConfig defaults for a static decode -- or, for
    # compile="graphs", with GRAPHS_ONLY (the "cudagraphs" backend)
    import torch
    from transformers import CompileConfig, StaticCache
    from transformers.masking_utils import create_masks_for_generate

    from helpers.decode import INDUCTOR
    from helpers.generate import GRAPHS_ONLY

    assert {"config", "max_cache_len"} <= params_of(StaticCache.__init__)
    assert {"config", "inputs_embeds", "attention_mask", "past_key_values", "position_ids"} <= params_of(
        create_masks_for_generate)
    assert {"backend", "mode", "fullgraph", "dynamic"} <= params_of(torch.compile)
    defaults = CompileConfig().to_dict()
    assert {k: defaults[k] for k in INDUCTOR} == INDUCTOR  # transformers' own settings, unchanged
    assert GRAPHS_ONLY["backend"] in torch._dynamo.list_backends()
    assert isinstance(torch._dynamo.config.recompile_limit, int)  # raised by static_decode for its calls
    # draws_alone(): the processors transformers' generate would apply, from its own two helpers
    from transformers import GenerationMixin

    assert "generation_config" in params_of(GenerationMixin._prepare_generation_config)
    assert {"generation_config", "input_ids_seq_length", "encoder_input_ids", "prefix_allowed_tokens_fn",
            "logits_processor", "device", "model_kwargs"} <= params_of(GenerationMixin._get_logits_processor)
    assert {"generation_config", "kwargs_has_attention_mask", "device"} <= params_of(
        GenerationMixin._prepare_special_tokens)
    from transformers import DynamicCache, GenerationConfig
    from transformers.cache_utils import Cache
    from transformers.generation.configuration_utils import GenerationMode

    assert GenerationConfig().get_generation_mode() == GenerationMode.GREEDY_SEARCH
    assert GenerationConfig(do_sample=True).get_generation_mode() == GenerationMode.SAMPLE
    assert {"stop_strings", "max_time"} <= set(GenerationConfig().to_dict())
    # greedy_decode: DynamicCache(config=...) and reorder_cache(indices), which drops the finished rows
    assert "config" in params_of(DynamicCache.__init__) and "beam_idx" in params_of(Cache.reorder_cache)


def test_gpu_utilisation_the_benchmarks_sample():
    # bench/common.py: measured() samples torch.cuda.utilization(device), which maps CUDA_VISIBLE_DEVICES to NVML
    import torch

    assert "device" in params_of(torch.cuda.utilization)
    assert "_get_nvml_device_index" in inspect.getsource(torch.cuda.utilization)


def test_from_config_dtype_keyword():
    # helpers/models.py: convert_gguf() -- AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    import torch
    from transformers import AutoModelForCausalLM

    config = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    assert next(AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).parameters()).dtype == torch.bfloat16


def test_minhash_update_batch_gives_the_hash_values_of_one_update_per_item():
    """helpers/filtering.py: minhash_duplicates() hashes a text's n-grams in one ``update_batch``; the signatures must
    be those of the per-item ``update`` (which it replaced), or dedup decisions would change."""
    import numpy as np

    grams = [g.encode() for g in ("the c", "he ca", "e cat", " cat ", "cat s", "at sa", "t sat")]
    one, batch = MinHash(num_perm=128, seed=1), MinHash(num_perm=128, seed=1)
    for g in grams:
        one.update(g)
    batch.update_batch(grams)
    assert np.array_equal(one.hashvalues, batch.hashvalues)


def test_hub_constants_exist():
    # helpers/models.py: hub_reachable() reads the hub's offline flag and endpoint
    from huggingface_hub import constants

    assert isinstance(constants.HF_HUB_OFFLINE, bool) and constants.ENDPOINT.startswith("http")


def test_gguf_loading_keyword():
    # helpers/models.py: convert_gguf() -- from_pretrained(folder, gguf_file=name) for model and tokenizer
    import transformers

    src = inspect.getsource(transformers.PreTrainedModel.from_pretrained)
    assert "gguf_file" in src
    assert "gguf_file" in inspect.getsource(transformers.AutoTokenizer.from_pretrained)


def test_transformers_takes_the_gguf_reader_from_the_gguf_module_when_it_loads(tmp_path):
    """helpers/models.py: one_gguf_reader() replaces gguf.GGUFReader for the length of a conversion; transformers'
    load_gguf_checkpoint must look it up there at each call (it imports it inside the function), and a reader is
    built from a path alone."""
    import gguf
    from transformers import modeling_gguf_pytorch_utils

    assert "from gguf import GGUFReader" in inspect.getsource(modeling_gguf_pytorch_utils.load_gguf_checkpoint)
    writer = gguf.GGUFWriter(tmp_path / "x.gguf", "llama")
    writer.add_uint32("test.value", 7)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gguf.GGUFReader(tmp_path / "x.gguf").fields["test.value"].contents() == 7


def test_from_pretrained_dtype_keyword(tmp_path):
    # helpers/models.py: load() passes dtype= (transformers 5 renamed torch_dtype)
    import torch
    from transformers import AutoModelForCausalLM

    from helpers.lab import zoo

    model = AutoModelForCausalLM.from_pretrained(zoo.ZOO_DIR / "gen_small", dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_safe_loading_keywords():
    # helpers/models.py: SAFE_LOADING -- trust_remote_code and use_safetensors are still read by from_pretrained
    import transformers

    src = inspect.getsource(transformers.PreTrainedModel.from_pretrained)
    assert "use_safetensors" in src
    assert "trust_remote_code" in inspect.getsource(transformers.AutoModelForCausalLM.from_pretrained)
    assert "trust_remote_code" in inspect.getsource(transformers.AutoTokenizer.from_pretrained)


def test_auto_config_for_model_keywords():
    # helpers/lab/standins.py: model()
    for arch in ("qwen2", "llama", "gemma", "phi3", "cohere"):
        config = AutoConfig.for_model(arch, vocab_size=50, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                      max_position_embeddings=512, tie_word_embeddings=True)
        assert (config.hidden_size, config.num_key_value_heads, config.head_dim) == (64, 2, 16), arch


def test_datasets_round_trip(tmp_path):
    # helpers/mixing.py: save_arms() / load_arms()
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "source": "domain"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "arm"))
    assert datasets.load_from_disk(str(tmp_path / "arm"))[0] == rows[0]


def test_bitsandbytes_kernels_notice_is_hidden_by_its_logger_name():
    # helpers/__init__.py quiets the "pip install kernels" warning by the logger name of the module that logs it
    import logging

    import bitsandbytes.backends.cpu.ops as cpu_ops

    import helpers  # noqa: F401

    assert cpu_ops.logger.name == "bitsandbytes.backends.cpu.ops"
    assert not cpu_ops.logger.isEnabledFor(logging.WARNING) and cpu_ops.logger.isEnabledFor(logging.ERROR)


def test_bitsandbytes_cpu_bf16_kernel_is_switched_by_a_layer_attribute():
    # helpers/models.py load_base(): Linear4bit.forward packs its weight for a bfloat16 CPU kernel at inference
    # where the CPU has AVX512-BF16, unless support_avx512bf16_for_cpu is False
    import inspect

    from bitsandbytes.nn import Linear4bit

    assert hasattr(Linear4bit(4, 4, bias=False), "support_avx512bf16_for_cpu")
    assert "self.support_avx512bf16_for_cpu" in inspect.getsource(Linear4bit.forward)


def test_partial_checkpointing_reaches_every_decoder_layer(tmp_path):
    # helpers/speed.py: PartialCheckpointing flips GradientCheckpointingLayer.gradient_checkpointing, which
    # the Trainer sets on every decoder layer when activation checkpointing is on
    from transformers import AutoModelForCausalLM
    from transformers.modeling_layers import GradientCheckpointingLayer

    config = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=3, num_attention_heads=2)
    model = AutoModelForCausalLM.from_config(config)
    model.activation_checkpointing_enable()
    blocks = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert len(blocks) == 3 and all(b.gradient_checkpointing for b in blocks)


def test_liger_model_table_name():
    # helpers/speed.py: liger_available() reads liger_kernel's table of supported model types when installed
    pytest.importorskip("liger_kernel")
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    assert "llama" in MODEL_TYPE_TO_APPLY_LIGER_FN


def test_the_configs_stage_05_reads_and_copies():
    # helpers/qlora_configs.py: given() reads TrainingArguments.to_dict(), LoraConfig.to_dict() and
    # BitsAndBytesConfig.to_diff_dict(); arm_sft_config() copies the notebook's SFTConfig with dataclasses.replace
    import dataclasses

    import torch

    sft = SFTConfig(max_steps=3, use_cpu=True, bf16=False, report_to=[])
    assert dataclasses.is_dataclass(sft) and sft.to_dict()["max_steps"] == 3
    assert dataclasses.replace(sft, seed=5, output_dir="o").seed == 5
    # ... and sets train_sampling_strategy="sequential" for an arm of notebook 04's passes (the Trainer then builds a
    # SequentialSampler: tests/test_training.py)
    assert dataclasses.replace(sft, train_sampling_strategy="sequential").train_sampling_strategy == "sequential"
    assert dataclasses.is_dataclass(LoraConfig) and LoraConfig(r=4).to_dict()["r"] == 4
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    assert bnb.to_diff_dict()["bnb_4bit_quant_type"] == "nf4"


def test_a_weightless_model_names_its_input_embedding():
    # helpers/qlora_configs.py: embedding_layer() builds the model on the meta device and asks for its embedding
    import torch
    from transformers import AutoModelForCausalLM

    config = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                         tie_word_embeddings=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    embed = model.get_input_embeddings()
    assert embed.weight.is_meta and [n for n, m in model.named_modules() if m is embed] == ["model.embed_tokens"]
    assert model.config.tie_word_embeddings


def test_papermill_reaches_the_kernel_manager_class_and_ipc_transport():
    """helpers/execute.py: execute() passes kernel_manager_class and shutdown_kernel through papermill to nbclient's
    NotebookClient; kernel_manager() sets the manager's transport trait to ipc and overrides the async start_kernel
    (to put its Ctrl-C handler in nbclient's place, which nbclient installs with the event loop's
    add_signal_handler) and calls the async interrupt_kernel."""
    import inspect

    from jupyter_client import AsyncKernelManager
    from nbclient import NotebookClient

    assert "kernel_manager_class" in NotebookClient.class_trait_names()
    assert "immediate" in NotebookClient.class_traits()["shutdown_kernel"].values  # execute()'s shutdown
    assert "transport" in AsyncKernelManager.class_trait_names()
    assert inspect.iscoroutinefunction(AsyncKernelManager.start_kernel)
    assert AsyncKernelManager.start_kernel is AsyncKernelManager._async_start_kernel
    assert inspect.iscoroutinefunction(AsyncKernelManager.interrupt_kernel)
    assert "loop.add_signal_handler(signal.SIGINT" in inspect.getsource(NotebookClient.async_setup_kernel)
    from helpers import execute

    assert execute.kernel_manager()().transport == "ipc"


def test_the_cache_calls_of_the_shared_prefix_scorer():
    """helpers/loglik.py: _shared_batch() -- the forward keywords it passes (the Llama-style models of
    SHARED_PREFIX_TYPES), the cache the first pass returns, and the method that repeats it per option."""
    import torch
    from transformers import Cache, DynamicCache, LlamaForCausalLM, Qwen2ForCausalLM

    for cls in (LlamaForCausalLM, Qwen2ForCausalLM):
        assert {"input_ids", "attention_mask", "position_ids", "past_key_values", "use_cache",
                "logits_to_keep"} <= params_of(cls.forward), cls.__name__
    assert list(inspect.signature(Cache.batch_select_indices).parameters) == ["self", "indices"]
    cache = DynamicCache()
    cache.update(torch.arange(2.0).view(2, 1, 1, 1), torch.arange(2.0).view(2, 1, 1, 1), 0)
    cache.batch_select_indices(torch.tensor([0, 0, 1]))  # repeats rows: one copy of a context per option
    assert cache.layers[0].keys.flatten().tolist() == [0.0, 0.0, 1.0]


def test_the_warnings_lm_eval_gives_when_handed_a_model_are_the_ones_dropped():
    """helpers/lmeval.evaluate_loaded drops lm-eval's two warnings about being handed a loaded model by their
    opening words, from HFLM's module logger: both must still be worded so, and logged there."""
    import logging

    from lm_eval.models import huggingface

    from helpers.lmeval import HANDED_A_MODEL

    source = inspect.getsource(huggingface.HFLM.__init__)
    assert all(text in source for text in HANDED_A_MODEL)
    assert huggingface.eval_logger is logging.getLogger(huggingface.HFLM.__module__)


def test_what_the_prompt_cache_calls():
    """helpers/prompt_cache.py: PromptCache.put reads each cache layer's ``keys``/``values`` (batch, heads, positions,
    dim); PromptCache.get builds ``DynamicCache(ddp_cache_data=..., config=...)``, one full-attention layer per
    (keys, values) pair. helpers/kl_drift.py: _answer_logprobs runs ``model.get_decoder()`` with
    ``past_key_values``."""
    import torch
    from transformers import DynamicCache, LlamaConfig, LlamaModel
    from transformers.cache_utils import DynamicLayer

    assert {"ddp_cache_data", "config"} <= set(inspect.signature(DynamicCache.__init__).parameters)
    config = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=8, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1)
    pairs = [(torch.full((2, 1, 3, 4), float(i)), torch.full((2, 1, 3, 4), -float(i))) for i in range(2)]
    cache = DynamicCache(ddp_cache_data=pairs, config=config)
    assert [type(layer) for layer in cache.layers] == [DynamicLayer, DynamicLayer]
    assert all(torch.equal(layer.keys, k) and torch.equal(layer.values, v) for layer, (k, v) in zip(cache.layers, pairs))
    assert cache.get_seq_length() == 3
    assert {"input_ids", "attention_mask", "position_ids", "past_key_values", "use_cache"} <= params_of(LlamaModel.forward)


def test_what_layer_graphs_relies_on():
    # helpers/layer_graphs.py: torch's recorder takes (modules, per-module sample tensors) and refuses autocast's cache
    import torch
    from transformers import Trainer

    assert ["callables", "sample_args"] == list(inspect.signature(torch.cuda.make_graphed_callables).parameters)[:2]
    assert "autocast caching" in inspect.getsource(torch.cuda.make_graphed_callables)
    assert "cache_enabled" in params_of(torch.autocast.__init__)
    assert torch.utils._pytree.tree_leaves((torch.zeros(1), [torch.ones(1)]))[1].item() == 1  # a replay's outputs
    assert torch.get_autocast_dtype("cpu") in (torch.bfloat16, torch.float16) and not torch.is_autocast_enabled("cpu")
    # a replay is valid only while the layer's weights hold no gradient: the Trainer sets them to None after a step,
    # and TRL calls the model without a cache object (which a recorded call cannot fill)
    assert inspect.signature(torch.nn.Module.zero_grad).parameters["set_to_none"].default is True
    assert "model.zero_grad()" in inspect.getsource(Trainer._inner_training_loop)
    assert 'inputs["use_cache"] = False' in inspect.getsource(SFTTrainer.compute_loss)
