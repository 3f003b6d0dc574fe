"""Benchmark: what one adapter of notebook 06 costs to score, with its base loaded three ways (issue 24's 60 s for 06
of the GPU preset; on one H200 an adapter took about 27 s in one process, docs/bench/h200x2-workers06/):

* ``4-bit base + adapter``: as notebook 06 scores it on a GPU (bitsandbytes' 4-bit layers, the LoRA layers beside);
* ``dequantised base + adapter``: the base's 4-bit weights dequantised once into the compute dtype
  (``PreTrainedModel.dequantize``), the LoRA layers kept. On a GPU bitsandbytes multiplies through its own 4-bit
  kernel for products of up to about 1,536 rows, which sums in another order: the rows count the answers that
  differ (on the CPU it dequantises and multiplies in float32, held so by ``models.load_base`` where the CPU has
  bitsandbytes' bfloat16 kernel, and they are the same);
* ``dequantised base, adapter merged``: the adapter merged into those weights (peft's ``merge_and_unload``), one
  linear layer each. In float32 (a CPU) exact to rounding; in bfloat16 the merge rounds the adapter into the weights.

Each variant scores the same adapter (random LoRA weights of the GPU preset's rank on every linear layer) on the same
questions as notebook 06, in ``evaluation.score_adapter``'s steps on a GPU: the KL drift on the base's own general
answers, then the greedy answers and multiple choice (``scoring.score_sets``). (On a CPU with one worker, notebook 06
runs the drift after the scoring, on the merged model, reading the prompts' passes its answers kept:
``helpers.prompt_cache``; this bench does not.) ``--repeats`` rounds, the variants alternating
within each. A row per variant and round: seconds to load, for the drift and for the scoring, the accuracies, the
drift, and how many of its answers differ from the first variant's (general answers' tokens, every answer's
verdict).

    python bench/evaluation.py [--model smollm2-135m-instruct] [--repeats 2] [--json outputs/bench/evaluation.json]
    python bench/evaluation.py --smoke      # CPU, the lab's base model and held-out sets (seconds; run in CI)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measured, report  # noqa: E402

import torch  # noqa: E402

from helpers import heldout, models, scoring  # noqa: E402
from helpers.eval_models import load_for_eval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("4-bit base + adapter", "dequantised base + adapter", "dequantised base, adapter merged")


def random_adapter(path: str, setup, folder: Path, rank: int) -> Path:
    """A LoRA adapter on every linear layer of the base at ``path``, its B matrices small random numbers (peft starts
    them at zero, which would make the adapter a no-op), saved in ``folder``."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(models.load_base(path, setup), config)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.01)
    model.save_pretrained(folder)
    return folder


def load_variant(variant: str, path: str, setup, adapter: Path):
    """The base at ``path`` with ``adapter``, loaded as ``variant`` says, unmerged (the drift switches it off)."""
    if variant == VARIANTS[0]:
        return models.load_adapter(path, adapter, setup)
    base = models.load_base(path, setup)
    if setup.quantization == "nf4":
        base = base.dequantize(dtype=setup.dtype if setup.device == "cuda" else torch.float32)
    return models.load_adapter(path, adapter, setup, base=base)


def score(variant: str, path: str, setup, adapter: Path, tok, sets: dict, base_answers: list,
          args) -> tuple[dict, dict]:
    """One variant's row (seconds per phase, peak memory) and its ``score_adapter``-like result."""
    row: dict = {"variant": variant}
    start = time.perf_counter()
    with measured({}) as load:
        model = load_variant(variant, path, setup, adapter)
    with measured({}) as drift:
        kl = scoring.drift(model, tok, sets, base_answers)
    with measured({}, reset_peak=False) as scored:
        if variant == VARIANTS[2]:
            model = model.merge_and_unload()
        result = scoring.score_sets(model, tok, sets, max_new_tokens=args.max_new_tokens,
                                    match=args.match, mc=True, batch_size=args.batch_size)
    row.update(load_s=load["seconds"], drift_s=drift["seconds"], score_s=scored["seconds"],
               total_s=round(time.perf_counter() - start, 3), peak_gib=scored["peak_gib"], gpu_busy=scored["gpu_busy"],
               general_accuracy=round(result["general_accuracy"], 4),
               domain_accuracy=round(result["domain_accuracy"], 4),
               mc_general_accuracy=result.get("mc_general_accuracy"), kl_drift=round(kl["kl_drift"], 6))
    del model
    if setup.device == "cuda":
        torch.cuda.empty_cache()
    return row, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, the lab's base and sets, a few seconds")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a packaged name or a model folder")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three variants")
    parser.add_argument("--rank", type=int, default=16, help="the adapter's LoRA rank (the GPU preset's)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="answer_max_new_tokens (the GPU preset's)")
    parser.add_argument("--batch-size", type=int, default=1024, help="answer_batch_size (the GPU preset's)")
    parser.add_argument("--match", default="lenient")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.smoke:
        from helpers.lab import zoo

        path, setup = str(zoo.ZOO_DIR / "base"), models.choose_setup("nf4", "cpu")
        sets, _ = heldout.held_out(lab=True, n_per_family=2, seed=3)
        args.repeats, args.max_new_tokens, args.batch_size, args.match = 1, 16, 64, "exact"
    else:
        path, setup = models.resolve("bench", args.model), models.choose_setup("nf4", "auto")
        sets, _ = heldout.held_out(False, 0, 0, str(ROOT / "data/general_eval.jsonl"),
                                   str(ROOT / "data/clinical_eval.jsonl"))
    json_path = args.json or Path("outputs/bench") / ("evaluation-smoke.json" if args.smoke else "evaluation.json")
    print(f"{path}: {len(sets['general'])} general and {len(sets['domain'])} domain questions, {setup}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        adapter = random_adapter(path, setup, Path(scratch) / "adapter", args.rank)
        base, tok = load_for_eval(path, setup)  # the base's own general answers: the text the drift is measured on
        base_answers = scoring.general_answers(base, tok, sets, max_new_tokens=args.max_new_tokens,
                                               match=args.match, batch_size=args.batch_size)["answer_ids"]
        del base
        rows, first = [], None
        for repeat in range(args.repeats):
            for variant in VARIANTS:
                try:
                    row, result = score(variant, path, setup, adapter, tok, sets, base_answers, args)
                except Exception as err:  # the rows measured so far are kept
                    print(f"  {variant}: failed: {type(err).__name__}: {str(err)[:2000]}", flush=True)
                    rows.append({"variant": variant, "repeat": repeat, "error": f"{type(err).__name__}: {err}"[:2000]})
                    continue
                if variant == VARIANTS[0]:
                    first = result  # the 4-bit model's answers, the reference of this round
                if first is None:  # the 4-bit variant failed: no reference to count against
                    rows.append(row | {"repeat": repeat})
                    continue
                row["repeat"] = repeat
                row["general_answers_differing"] = sum(a != b for a, b in zip(result["general_answer_ids"],
                                                                            first["general_answer_ids"]))
                row["verdicts_differing"] = sum(a != b for k in ("general", "domain")
                                                for a, b in zip(result["correct"][k], first["correct"][k]))
                print(f"  {variant} (round {repeat + 1}): {row['total_s']:.1f} s", flush=True)
                rows.append(row)
    report(rows, ["variant", "repeat", "load_s", "drift_s", "score_s", "total_s", "peak_gib", "gpu_busy",
                  "general_accuracy", "domain_accuracy", "mc_general_accuracy", "kl_drift",
                  "general_answers_differing", "verdicts_differing", "error"], json_path,
           model=path, setup=str(setup), n_general=len(sets["general"]), n_domain=len(sets["domain"]),
           rank=args.rank, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)


if __name__ == "__main__":
    main()
