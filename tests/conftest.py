import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Real models converted from their GGUF packages once, for every test (tests send run outputs to temporary folders).
os.environ.setdefault("HELPERS_MODELS", str(ROOT / "outputs" / "_models"))
# Under pytest-xdist (`make test` runs `pytest -n 2 --dist loadgroup`) each worker, and each notebook kernel it
# starts, uses one thread: two workers with a thread per core each would oversubscribe the cores and stall each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")



def write_jsonl(path, rows) -> str:
    """A JSONL file of ``rows`` at ``path``; its path as a string, as a notebook parameter would give it."""
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(autouse=True)
def _runs_outside_the_repository(tmp_path, monkeypatch):
    """Every test's runs go to its own temporary folder, also in tests that do not ask for ``outputs``: a notebook's
    parameters cell (``pipeline.settle_parameters``) marks the stage of the run it names unfinished, and a preset's
    ``run_name`` (``smollm2``, ``lab``...) would otherwise be the user's own run in ``outputs/``."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("HELPERS_OUTPUTS", str(out))
    return out


@pytest.fixture
def outputs(_runs_outside_the_repository):
    """The temporary outputs folder every stage's artifacts go to (``_runs_outside_the_repository``)."""
    return _runs_outside_the_repository


@pytest.fixture(scope="session")
def lab_tokenizer():
    from helpers.lab.tokenizer import build_tokenizer
    from helpers.lab.zoo import ZOO

    return build_tokenizer(**ZOO["base"].tokenizer)


@pytest.fixture(scope="module")
def one_thread():
    """The lab models are tiny: one thread is as fast, and on a busy 2-core machine two threads that wait on each
    other (another process holding a core) made these tests up to 100x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def base():
    """The lab's base model and tokenizer (a test module may define its own)."""
    from helpers.lab import zoo

    return zoo.load("base")


@pytest.fixture(scope="module")
def lab_questions(base):
    """Lab general questions, their chat prompts and the base model's greedy answers."""
    from helpers.chat import render_prompt
    from helpers.generate import generate
    from helpers.lab.evaluate import heldout_sets

    model, tok = base
    examples = heldout_sets(3, seed=11)["general"]
    prompts = [render_prompt(tok, e.instruction) for e in examples]
    outs = generate(model, tok, prompts, max_new_tokens=24)
    return examples, prompts, [o["text"] for o in outs]


LONGEST_FIRST = ("end_to_end_smollm2", "end_to_end_lab")  # the two end-to-end runs, about 240 s and 210 s


def pytest_collection_modifyitems(config, items):
    """The end-to-end tests (marked ``xdist_group``, one group each) first, the longest first: under ``--dist
    loadgroup`` the workers take them at once, one each, instead of the two long ones queueing last. Then the other
    ``slow`` tests, then the rest, so that short tests, not a 20-s one, end each worker's share."""
    def order(item):
        group = item.get_closest_marker("xdist_group")
        if group is not None:
            name = group.args[0] if group.args else group.kwargs.get("name")
            return (0, LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST))
        return (1 if item.get_closest_marker("slow") else 2, 0)

    items.sort(key=order)  # stable: tests of one rank keep their order
