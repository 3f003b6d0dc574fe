"""Shared by the benchmarks: how busy the GPU was, peak memory, the machine, and the table + JSON they write."""

from __future__ import annotations

import json
import platform
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch


@contextmanager
def measured(result: dict, reset_peak: bool = True):
    """Time the block (synchronising CUDA), record peak GPU memory (since the block began, or since the caller's
    own reset with ``reset_peak=False``) and the GPU's mean utilisation (NVML's "busy" share of time, sampled every
    50 ms) into ``result``: ``seconds``, ``peak_gib``, ``gpu_busy``."""
    cuda = torch.cuda.is_available()
    samples: list[int] = []
    stop = threading.Event()
    thread = None
    if cuda:
        torch.cuda.synchronize()
        if reset_peak:
            torch.cuda.reset_peak_memory_stats()
        try:
            device = torch.cuda.current_device()
            torch.cuda.utilization(device)  # NVML present? (torch maps CUDA_VISIBLE_DEVICES to NVML's numbering;
            # NVML's own index would read the machine's first GPU: 2026-11-30's two-GPU runs read the other one)

            def sample():
                while not stop.wait(0.05):
                    samples.append(torch.cuda.utilization(device))

            thread = threading.Thread(target=sample, daemon=True)
            thread.start()
        except Exception:  # no NVML: utilisation is left out
            thread = None
    start = time.perf_counter()
    try:
        yield result
    finally:
        if cuda:
            torch.cuda.synchronize()
        result["seconds"] = round(time.perf_counter() - start, 3)
        stop.set()
        if thread is not None:
            thread.join()
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None
        result["gpu_busy"] = round(sum(samples) / len(samples) / 100, 2) if samples else None


def chosen(label: str, texts) -> bool:
    """Whether a row is kept by ``--only TEXT...``: its label holds one of the texts, or ends with one written with
    a final ``$`` (``'compile$'`` keeps "static cache + compile" and not "static cache + compile, ...")."""
    return any(label.endswith(t[:-1]) if t.endswith("$") else t in label for t in texts)


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def get(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
            "versions": {n: get(n) for n in ("torch", "transformers", "trl", "peft", "bitsandbytes", "liger-kernel")}}


def report(rows: list[dict], columns: list[str], path: Path, **meta) -> None:
    """Print ``rows`` as a table (the ``columns`` given) and write everything to ``path`` as JSON."""
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "machine": machine(), "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)
