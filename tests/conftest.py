import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Real models converted from their GGUF packages once, for every test (tests send run outputs to temporary folders).
os.environ.setdefault("HELPERS_MODELS", str(ROOT / "outputs" / "_models"))


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """Send every stage's artifacts to a temporary outputs folder."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("HELPERS_OUTPUTS", str(out))
    return out


@pytest.fixture(scope="session")
def lab_tokenizer():
    from helpers.lab.tokenizer import build_tokenizer
    from helpers.lab.zoo import ZOO

    return build_tokenizer(**ZOO["base"].tokenizer)
