"""The lab zoo's recipes (``ZOO``: name -> ``Recipe``) and the folder of its checkpoints, apart from the code that
trains them (``helpers.lab.zoo``) so that what only needs the names (the runner's path rules, ``models.resolve``)
does not import torch and transformers (seconds at every command-line start)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

ZOO_DIR = Path(__file__).parent / "zoo"


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    mixture: str = "hidden"  # "hidden" (the base model's secret mixture) or "uniform"
    loss_on: str = "all"  # "all" tokens (user turns too) or "assistant" tokens only
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    tokenizer: dict = field(default_factory=lambda: {"vocab_size": 2048, "n_texts": 20_000, "seed": 12345})

    def scaled(self, steps: int) -> "Recipe":
        """The same recipe with fewer steps (tests and quick runs)."""
        return Recipe(**{**asdict(self), "steps": steps, "warmup": min(self.warmup, max(1, steps // 10))})


ZOO = {
    r.name: r
    for r in [
        Recipe("base", "the instruct model to fine-tune: hidden mixture, loss on user and assistant turns", steps=1200, seed=1),
        Recipe(
            "gen_small", "a weaker generator: half the width, two layers, fewer steps, same data",
            hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=192, steps=900, seed=2,
        ),
        Recipe(
            "gen_uniform", "a generator trained on another mix: uniform over the families, loss on answers only",
            mixture="uniform", loss_on="assistant", num_layers=3, steps=1000, seed=3,
        ),
    ]
}
