"""Stage 00 (``notebooks/00_lab_world.ipynb``): the lab world, its model zoo, and how good each model is.

The stage loads the shipped zoo (or rebuilds it), measures every model by greedy exact match on fresh held-out
instructions, and writes the data that stands for the user's inputs in the real world:

* ``domain_train.jsonl``: the domain fine-tuning set (the paper's medical SFT data), ``messages`` format;
* ``public_sft.jsonl``: a public SFT set (the paper's ShareGPT/Alpaca stand-in), ``messages`` format;
* ``models.json``: where each zoo model lives, for the later stages.

Outputs go to ``outputs/<run>/00_lab/`` with ``metrics.json`` and figures.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .lab import tasks, zoo
from .lab.evaluate import heldout_sets
from .runs import finish_stage, read_json, save_figure, stage_dir, write_json, write_jsonl
from .scoring import score_sets

STAGE = "00_lab"


def family_table() -> list[dict]:
    """One row per family: group, description, number of phrasings, one example."""
    import random

    rows = []
    for fam in tasks.ALL_FAMILIES.values():
        ex = fam.draw(random.Random(0))
        rows.append({"family": fam.name, "group": fam.group, "description": fam.description,
                     "phrasings": len(fam.phrasings), "example": ex.instruction, "answer": ex.response})
    return rows


def prepare_zoo(run_name: str, names: list[str], rebuild: bool, steps: int | None, progress: bool = True) -> dict[str, str]:
    """Paths of the zoo models for this run: the shipped checkpoints, or a fresh build under the stage folder."""
    if rebuild:
        out = stage_dir(run_name, STAGE) / "zoo"
        zoo.build_zoo(out, names, steps=steps or None, progress=progress)
        root = out
    else:
        root = zoo.ZOO_DIR
    paths = {}
    for name in names:
        if not (root / name / "config.json").exists():
            raise FileNotFoundError(f"zoo model {name!r} is not at {root / name}; set rebuild_zoo=True or run `make lab-model`")
        paths[name] = str(root / name)
    write_json(stage_dir(run_name, STAGE) / "models.json", paths)
    return paths


def zoo_table(paths: dict[str, str]) -> dict[str, dict]:
    """Recipe, size and training time of each prepared zoo model, for display."""
    table = {}
    for name, p in paths.items():
        info = read_json(Path(p) / "recipe.json")
        recipe = {k: v for k, v in info["recipe"].items() if k not in ("name", "tokenizer")}
        table[name] = {**recipe, "n_params": info["n_params"], "train_seconds": info["train_seconds"],
                       "final_loss": info["final_loss"]}
    return table


def write_user_data(run_name: str, n_domain_train: int, n_public: int, seed: int) -> dict[str, str]:
    """The datasets a real user would bring: domain SFT data and a public SFT set."""
    d = stage_dir(run_name, STAGE)
    domain = tasks.sample_examples(tasks.uniform(tasks.DOMAIN_FAMILIES), n_domain_train, seed=seed)
    public = tasks.sample_examples(tasks.PUBLIC_MIXTURE, n_public, seed=seed + 1)
    return {"domain_train": str(write_jsonl(d / "domain_train.jsonl", ({"messages": e.messages()} for e in domain))),
            "public_sft": str(write_jsonl(d / "public_sft.jsonl", ({"messages": e.messages()} for e in public)))}


def evaluate_zoo(paths: dict[str, str], n_per_family: int, seed: int, progress: bool = True) -> dict:
    """Greedy exact match of every model on fresh general and domain instructions."""
    sets = heldout_sets(n_per_family, seed)
    results = {}
    for name, path in paths.items():
        model, tok = zoo.load(name, Path(path).parent)
        scored = score_sets(model, tok, sets, progress=progress and name)
        results[name] = {**{k: v for k, v in scored.items() if k != "correct"},
                         "n_params": sum(p.numel() for p in model.parameters())}
    return results


def plot_accuracy(results: dict, path: Path) -> Path:
    families = list(tasks.GENERAL_FAMILIES) + list(tasks.DOMAIN_FAMILIES)
    x = np.arange(len(families))
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(12, 4))
    for i, (name, r) in enumerate(results.items()):
        ax.bar(x + i * width, [r["per_family"][f] for f in families], width, label=name)
    ax.axvline(len(tasks.GENERAL_FAMILIES) - 0.5 + 0.4, color="grey", ls="--")
    ax.text(len(tasks.GENERAL_FAMILIES) - 0.2, 1.02, "domain (never trained on) ->", fontsize=9)
    ax.set_xticks(x + 0.4 - width / 2, families, rotation=30, ha="right")
    ax.set_ylabel("exact match (greedy)")
    ax.set_ylim(0, 1.1)
    ax.set_title("Zoo models on held-out instructions, per family")
    ax.legend(loc="lower left")
    return save_figure(fig, path)


def plot_loss_curves(paths: dict[str, str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, p in paths.items():
        info = read_json(Path(p) / "recipe.json")
        curve = info["loss_curve"]
        target = "all tokens" if info["recipe"]["loss_on"] == "all" else "answers only"
        ax.plot(np.arange(len(curve)) * 50, curve, label=f"{name} ({info['n_params'] / 1e6:.2f}M params, loss on {target})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean of 50 steps)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Zoo training curves (user-turn tokens are harder to predict than answers)", fontsize=10)
    return save_figure(fig, path)


def summarise(results: dict) -> dict:
    base = results["base"]
    return {
        "base_general_accuracy": base["general_accuracy"],
        "base_domain_accuracy": base["domain_accuracy"],
        "per_family": base["per_family"],
        "n_general": base["n_general"],
        "n_domain": base["n_domain"],
        "zoo": {name: {k: r[k] for k in ("general_accuracy", "domain_accuracy", "per_family", "n_params")}
                for name, r in results.items()},
    }


def finish(run_name: str, params: dict, results: dict, paths: dict[str, str]) -> dict:
    d = stage_dir(run_name, STAGE)
    figs = [plot_accuracy(results, d / "accuracy_per_family.png").name,
            plot_loss_curves(paths, d / "loss_curves.png").name]
    metrics = summarise(results)
    finish_stage(run_name, STAGE, params, metrics, figs)
    return metrics
