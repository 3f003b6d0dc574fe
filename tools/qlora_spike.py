"""Feasibility spike for issue 5 (not the stage-05 code): QLoRA on CPU with TRL + peft + bitsandbytes.

    python tools/qlora_spike.py ARM {4bit|fp32} STEPS [LR] [RANK]   # needs `make run` through notebook 04 first

Trains the lab base model on one arm from notebook 04 with SFTTrainer (assistant-only loss, LoRA r=16 on all
linear layers, NF4 double quantisation when 4bit) and prints general/domain exact match on 20 fresh instructions
per family. Findings are in docs/qlora.md.
"""
import time, sys, torch, warnings
warnings.filterwarnings("ignore")
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from peft import LoraConfig
from trl import SFTTrainer, SFTConfig
from helpers.mixing import load_arms
from helpers.lab import zoo, tasks
from helpers.lab.evaluate import exact_match, heldout_examples
arm = sys.argv[1]; quant = sys.argv[2] == "4bit"; steps = int(sys.argv[3])
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 2e-3
rank = int(sys.argv[5]) if len(sys.argv) > 5 else 16
path = zoo.ZOO_DIR / "base"
tok = AutoTokenizer.from_pretrained(path)
kw = {}
if quant:
    kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
model = AutoModelForCausalLM.from_pretrained(path, **kw)
ds = load_arms("lab")[arm].remove_columns(["source"])
cfg = SFTConfig(output_dir=f"/tmp/spike_{arm}", max_steps=steps, per_device_train_batch_size=32, learning_rate=lr,
                lr_scheduler_type="cosine", warmup_steps=10, logging_steps=25, save_strategy="no", report_to=[],
                assistant_only_loss=True, seed=0, use_cpu=True, bf16=False, fp16=False, max_length=128, dataloader_num_workers=0)
lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
tr = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lora)
t = time.time(); tr.train(); print(arm, "quant", quant, "lr", lr, "rank", rank, "train s", round(time.time()-t,1), "final loss", tr.state.log_history[-2].get("loss"))
m = tr.model.eval()
g = exact_match(m, tok, heldout_examples(tasks.GENERAL_FAMILIES, 20, 77))
d = exact_match(m, tok, heldout_examples(tasks.DOMAIN_FAMILIES, 20, 78))
print(arm, "general", round(g["accuracy"],3), "domain", round(d["accuracy"],3), {k: round(v,2) for k,v in g["per_family"].items()})
