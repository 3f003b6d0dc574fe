"""The lab's model zoo: tiny Llama-architecture instruct models trained from scratch, deterministically.

* ``base`` stands for the instruct model we want to fine-tune (Qwen2.5-Instruct, Llama-3-Instruct...). It is
  trained on conversations drawn from the *hidden* mixture over the general families, with the loss on the user
  turns too. A real instruct model has seen (and so can continue) its own instruction distribution; this is what
  makes pre-query (Magpie-style) sampling recover it.
* ``gen_small`` and ``gen_uniform`` stand for the paper's other generator models: one weaker (smaller and
  shorter-trained, same data), one trained on a different mix (uniform over the families, loss on answers only).

Checkpoints ship inside the package (``helpers/lab/zoo/<name>/``) with a ``recipe.json`` holding the recipe, a
fingerprint of the recipe and its training data, and the SHA-256 of every file. ``make lab-model`` rebuilds them
(``python -m helpers.lab.zoo build``); ``tests/test_zoo.py`` checks the shipped files still match their recipe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from . import tasks
from .tokenizer import build_tokenizer, render_chat

from .recipes import ZOO, ZOO_DIR, Recipe  # noqa: F401 -- the names, importable without torch
HIDDEN_MIXTURE_FILE = Path(__file__).parent / "data" / "hidden_mixture.json"
BUILD_THREADS = 2  # fixed so that float reductions, and so the weights, do not depend on the machine's core count


def hidden_mixture() -> dict[str, float]:
    """The base model's secret mixture. Only the zoo builder and evaluation may call this."""
    return json.loads(HIDDEN_MIXTURE_FILE.read_text())["general"]


def mixture_of(recipe: Recipe) -> dict[str, float]:
    if recipe.mixture == "hidden":
        return hidden_mixture()
    if recipe.mixture == "uniform":
        return tasks.uniform(tasks.GENERAL_FAMILIES)
    raise ValueError(f"recipe {recipe.name!r}: mixture must be 'hidden' or 'uniform', got {recipe.mixture!r}")


def make_model(recipe: Recipe, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(recipe.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        max_position_embeddings=tokenizer.model_max_length,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def encode_batch(tokenizer, examples: list[tasks.Example], loss_on: str) -> dict[str, torch.Tensor]:
    """Chat-template a batch, right-pad it, and build labels (-100 on padding, and on user turns if asked).

    Jinja rendering costs ~1.5 ms a conversation, more than a training step of these models, so the lab's ChatML
    is rendered with f-strings here (``render_chat``, tested equal to the template, masks included) and
    tokenised in one batched call.
    """
    prompts = [render_chat(e.messages()[:1], add_generation_prompt=True) for e in examples]
    fulls = [render_chat(e.messages()) for e in examples]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    f_ids = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    width = max(len(ids) for ids in f_ids)
    ids = torch.full((len(examples), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (p, f) in enumerate(zip(p_ids, f_ids)):
        if f[: len(p)] != p:
            raise ValueError(f"prompt tokens are not a prefix of the conversation's tokens: {fulls[row]!r}")
        ids[row, : len(f)] = torch.tensor(f)
        mask[row, : len(f)] = 1
        labels[row, : len(f)] = ids[row, : len(f)]
        if loss_on == "assistant":  # keep the answer and its <|im_end|>; drop the prompt and the final newline
            labels[row, : len(p)] = -100
            labels[row, len(f) - 1] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def training_stream(recipe: Recipe):
    return tasks.iter_examples(mixture_of(recipe), seed=recipe.seed)


def fingerprint(recipe: Recipe, tokenizer: PreTrainedTokenizerFast, n: int = 512) -> str:
    """Hash of the recipe, the tokenizer's vocabulary and the first ``n`` training conversations.

    It changes whenever anything that shapes the weights changes (task generators, phrasings, the mixture,
    hyperparameters, the tokenizer), and not when only comments or docstrings do.
    """
    h = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode())
    h.update(json.dumps(mixture_of(recipe), sort_keys=True).encode())
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    h.update(tokenizer.chat_template.encode())
    stream = training_stream(recipe)
    for _ in range(n):
        e = next(stream)
        h.update(f"{e.instruction}\x00{e.response}\x01".encode())
    return h.hexdigest()


def train(recipe: Recipe, tokenizer: PreTrainedTokenizerFast, progress: bool = True) -> tuple[LlamaForCausalLM, list[float]]:
    """Train one zoo model from scratch. Deterministic for a given recipe (fixed seed and thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        model = make_model(recipe, tokenizer)
        model.train()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=recipe.lr, betas=(0.9, 0.98),
        )

        def lr_at(step: int) -> float:
            if step < recipe.warmup:
                return (step + 1) / recipe.warmup
            t = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        stream = training_stream(recipe)
        losses = []
        bar = tqdm(range(recipe.steps), desc=f"train {recipe.name}", disable=not progress, mininterval=2)
        for _ in bar:
            batch = encode_batch(tokenizer, [next(stream) for _ in range(recipe.batch_size)], recipe.loss_on)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if len(losses) % 50 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.3f}")
        model.eval()
        return model, losses
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(model, tokenizer, recipe: Recipe, losses: list[float], out_dir: Path, seconds: float) -> Path:
    out = Path(out_dir) / recipe.name
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    files = {p.name: _sha256(p) for p in sorted(out.iterdir()) if p.name != "recipe.json"}
    meta = {
        "recipe": asdict(recipe),
        "fingerprint": fingerprint(recipe, tokenizer),
        "files": files,
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(seconds, 1),
        "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
        "loss_curve": [round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 4) for i in range(0, len(losses), 50)],
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    (out / "recipe.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def build_zoo(out_dir: Path = ZOO_DIR, names: list[str] | None = None, steps: int | None = None, progress: bool = True) -> dict:
    """Build the tokenizer and the zoo from scratch into ``out_dir``; return per-model timings."""
    names = names or list(ZOO)
    timings = {}
    t0 = time.perf_counter()
    tokenizer = build_tokenizer(**ZOO[names[0]].tokenizer)
    timings["tokenizer"] = time.perf_counter() - t0
    for name in names:
        recipe = ZOO[name] if steps is None else ZOO[name].scaled(steps)
        t = time.perf_counter()
        model, losses = train(recipe, tokenizer, progress=progress)
        seconds = time.perf_counter() - t
        save(model, tokenizer, recipe, losses, out_dir, seconds)
        timings[name] = seconds
    timings["total"] = time.perf_counter() - t0
    return timings


def load(name: str, zoo_dir: Path | str = ZOO_DIR, device: str = "cpu"):
    """Load a zoo model and its tokenizer. Raises a clear error if the checkpoint is missing."""
    path = Path(zoo_dir) / name
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no lab model at {path}; build it with `make lab-model` (python -m helpers.lab.zoo build)")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    model = LlamaForCausalLM.from_pretrained(path).to(device).eval()
    return model, tokenizer


def recipe_info(name: str, zoo_dir: Path | str = ZOO_DIR) -> dict:
    return json.loads((Path(zoo_dir) / name / "recipe.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m helpers.lab.zoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train the tokenizer and zoo models from scratch")
    b.add_argument("--out", type=Path, default=ZOO_DIR)
    b.add_argument("--only", nargs="*", choices=list(ZOO), help="models to build (default: all)")
    b.add_argument("--steps", type=int, default=None, help="override training steps (quick checks only)")
    args = parser.parse_args(argv)
    timings = build_zoo(args.out, args.only, args.steps)
    print(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1))


if __name__ == "__main__":
    main()
