"""Stage 02 (``notebooks/02_multi_model_generation.ipynb``): k responses from each of M generator models.

Every kept instruction from stage 01 is answered ``samples_per_model`` times by each generator, rendered with that
generator's own chat template. The stage asks a writer (``writers.load``: the generation seam; ``backend`` picks
what runs it) and never runs a model itself. One model is resident at a time. Work is cut into fixed chunks
(``shard_size`` jobs, a job being one instruction x one sample index); each chunk is generated with its own seed,
derived from ``seed``, the model and the chunk number, and written as one shard file by an atomic rename. So a
rerun after an interruption (even ``kill -9``) skips the shards that exist and redoes only the unfinished one: no
duplicate and no missing row, and the same rows an uninterrupted run gives. Shards made from other instructions (01
rerun) or other parameters are never reused: their folder is set aside under ``replaced/`` and generated anew.

A generator without a chat template (a pretrained model such as ``gemma-3-270m``) is asked through a few-shot frame
(``chat.Frame``): its answer ends where it starts the frame's next question. ``sampling[model]["frame"]`` forces
``"chat"`` or ``"fewshot"``; the default ``"auto"`` picks by the tokenizer.

``sampling[model]["max_new_tokens"]`` is the **response length**: the most new tokens of one answer (the key keeps
the name presets use; notebook 01's ``instruction_max_new_tokens`` is the instruction length).

Outputs in ``outputs/<run>/02_generation/``: ``shards/<model>/NNNNN.json`` (``<model>`` made a safe folder name:
``runs.safe_name``), ``generations.jsonl`` (all rows),
figures, metrics.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
import time
from pathlib import Path

import matplotlib.pyplot as plt
from tqdm.auto import tqdm

from . import workers as workers_service
from . import writers
from .chat import frame_for
from .generate import compile_choice
from .placement import release_gpu_memory
from .runs import (read_json, read_jsonl, require, safe_name, save_figure, stage_dir, trouble, write_json,
                   write_jsonl)

STAGE = "02_generation"
DEFAULT_SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 64, "frame": "auto"}


def sampling_for(model: str, sampling: dict) -> dict:
    """Per-model sampling parameters: ``sampling["default"]`` overridden by ``sampling[model]`` (``temperature``,
    ``top_p``, ``max_new_tokens``: the response length, and ``frame``)."""
    params = {**DEFAULT_SAMPLING, **sampling.get("default", {}), **sampling.get(model, {})}
    bad = set(params) - set(DEFAULT_SAMPLING)
    if bad:
        raise ValueError(f"sampling for {model!r}: unknown key(s) {sorted(bad)}; allowed: {sorted(DEFAULT_SAMPLING)}")
    return params


def shard_dir(run_name: str, model: str) -> Path:
    """Where a generator's shards live: ``shards/<safe folder name>``, never a path taken from the model name."""
    return stage_dir(run_name, STAGE) / "shards" / safe_name(model)


def chunk_seed(seed: int, model: str, chunk: int) -> int:
    return int(hashlib.sha256(f"{seed}/{model}/{chunk}".encode()).hexdigest()[:8], 16)


def _config_hash(instructions: list[dict], model: str, params: dict, k: int, shard_size: int, seed: int,
                 backend: str = "hf", compile: bool | None = None) -> str:
    """What a generator's shards were made from (its ``config.json``).

    It stays beside the manifest stamps: a stamp names the finished stage 01 a finished stage 02 read, but resuming
    decides per shard folder, before stage 02 has a manifest, whether the shards on disk may be reused.
    A backend other than ``"hf"`` enters the hash (another backend samples other rows); ``"hf"`` leaves it as it was,
    so existing shard folders stay valid. So does ``compile``: an explicit choice enters it (a GPU's compiled decode
    samples rows that do not repeat, so shards asked for uncompiled are never ones compiled), ``None`` does not."""
    key = [model, params, k, shard_size, seed] + ([backend] if backend != "hf" else []) \
        + ([{"compile": compile}] if compile is not None else [])
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for row in instructions:
        h.update(f"{row['id']}\x00{row['instruction']}\x01".encode())
    return h.hexdigest()[:16]


def generate_all(run_name: str, instructions: list[dict], generators: list[str], samples_per_model: int = 3,
                 sampling: dict | None = None, batch_size: int = 256, shard_size: int = 1024, seed: int = 0,
                 progress: bool = True, backend: str = "hf", workers: int = 1,
                 compile: bool | str | None = None) -> dict:
    """Generate every missing shard; return ``(stats, plan)``: per-model stats of this call (``generated_chunks``,
    ``seconds``...) and where it ran (``helpers.workers.Plan``).

    Each generator with shards to write is loaded once as a writer on ``backend`` (``writers.BACKENDS``); its
    tokenizer renders the prompts and its ``write`` answers them, each answer at most the response length
    (``sampling``'s ``max_new_tokens``) long. ``workers`` > 1 (0: one per visible GPU; on a CPU one) hands the
    missing shards, one at a time, to that many worker processes (``helpers.workers``: one per GPU, or several on
    one): a worker takes the next shard when it finishes one, so a short last shard or a generator with long answers
    leaves no GPU waiting on another, and each worker loads a generator once (``_writer``). A shard's answers depend
    only on its own rows and seed, so on the CPU the shards are the same however many workers write them (tested);
    on a GPU they are too when the decode runs uncompiled, but a compiled decode's rows do not repeat even on one GPU
    (``compile``: ``generate.generation_plan``'s choice, None deciding by the job's size; docs/scale.md). A rerun
    resumes from whichever shards exist."""
    sampling, compile = sampling or {}, compile_choice(compile)
    unknown = set(sampling) - {"default"} - set(generators)
    if unknown:
        raise ValueError(f"sampling names {sorted(unknown)}, which are not generators {generators}")
    jobs = [(row, s) for row in sorted(instructions, key=lambda r: r["id"]) for s in range(samples_per_model)]
    chunks = [jobs[i : i + shard_size] for i in range(0, len(jobs), shard_size)]
    configs = {}
    for name in generators:
        params = sampling_for(name, sampling)
        configs[name] = {"model": name, "sampling": params, "samples_per_model": samples_per_model,
                         "shard_size": shard_size, "seed": seed, **({"backend": backend} if backend != "hf" else {}),
                         **({"compile": compile} if compile is not None else {}),
                         "hash": _config_hash(instructions, name, params, samples_per_model, shard_size, seed, backend,
                                              compile)}
    recorded = {name: shard_dir(run_name, name) / "config.json" for name in generators}
    stale = [path.parent for name, path in recorded.items()
             if path.exists() and read_json(path).get("hash") != configs[name]["hash"]]
    for folder in stale:  # made from other instructions (01 rerun) or parameters: set aside, never reused or lost
        kept = stamp = stage_dir(run_name, STAGE) / "replaced" / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        for i in itertools.count(2):  # a second set-aside within the same second gets its own folder
            if not kept.exists():
                break
            kept = stamp.with_name(f"{stamp.name}-{i}")
        kept.parent.mkdir(exist_ok=True)
        folder.rename(kept)
        print(f"NOTE: {folder} held shards made with other instructions or parameters; they are kept in {kept} "
              f"(delete it when you no longer need them: rm -r {shlex.quote(str(kept))})")
    stats, todo = {}, {}
    for name in generators:
        out = shard_dir(run_name, name)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", configs[name])
        todo[name] = [c for c in range(len(chunks)) if not (out / f"{c:05d}.json").exists()]
        stats[name] = {"chunks": len(chunks), "generated_chunks": len(todo[name]), "seconds": 0.0, "new_tokens": 0}
    plan = workers_service.plan(max([len(t) for t in todo.values()] + [1]), workers, workers_service.device())
    workers_service.refuse_autosized_sharing(plan, workers, batch_size, "generations")
    tasks = []  # (label, args, kwargs): one per missing shard with several workers, else one per generator
    for name in generators:
        params, mine = configs[name]["sampling"], [(c, chunks[c]) for c in todo[name]]
        if plan.workers == 1 and mine:
            tasks.append((name, (run_name, name, backend, mine, params, batch_size, seed),
                          {"progress": progress, "compile": compile}))
        else:  # a shard's rows and those after it decide whether compiling pays, as in one process: same shards
            tasks += [(f"{name} shard {c}", (run_name, name, backend, [(c, chunk)], params, batch_size, seed),
                       {"job_prompts": sum(len(later) for _, later in mine[i:]), "keep_loaded": True,
                        "compile": compile})
                      for i, (c, chunk) in enumerate(mine)]
    if plan.workers > 1 and tasks:
        print(f"{plan.workers} workers on {', '.join(sorted(set(plan.devices)))} ({plan.reason})")
    bar = tqdm(total=len(tasks), desc="shards", disable=not progress or plan.workers == 1)
    for (label, args, _), got in zip(tasks, workers_service.run(write_shards, tasks, plan,
                                                                on_done=lambda *_: bar.update())):
        stats[args[1]]["seconds"] += got["seconds"]
        stats[args[1]]["new_tokens"] += got["new_tokens"]
    bar.close()
    return stats, plan


_LOADED: dict = {}  # in a worker process of generate_all: the writer its shards use now, by (run, model, backend)


def _writer(run_name: str, name: str, backend: str, keep_loaded: bool):
    """The writer for ``name``: loaded afresh, or (``keep_loaded``, in a worker process) kept for the worker's next
    shard of the same generator; a worker holds one generator at a time, so one of another is let go first."""
    if not keep_loaded:
        return writers.load(run_name, name, backend)
    key = (run_name, name, backend)
    if key not in _LOADED:
        _LOADED.clear()
        release_gpu_memory()
        _LOADED[key] = writers.load(run_name, name, backend)
    return _LOADED[key]


def write_shards(run_name: str, name: str, backend: str, chunks: list[tuple[int, list]], params: dict,
                 batch_size: int, seed: int, progress: bool = False, job_prompts: int | None = None,
                 keep_loaded: bool = False, compile: bool | None = None) -> dict:
    """Generator ``name``'s ``chunks`` (``(chunk number, jobs)``) answered by one writer, each written as its shard
    file: what ``generate_all`` runs, in its process or in a worker (then one shard per call, ``keep_loaded``).
    ``job_prompts``: the rows of the whole job this call is part of (default: its chunks'), from which the writer
    decides whether compiling pays (``compile`` None), or ``compile`` says. Returns ``{"seconds", "new_tokens"}`` of
    the generation."""
    out = shard_dir(run_name, name)
    writer = _writer(run_name, name, backend, keep_loaded)
    tokenizer = writer.tokenizer
    frame = frame_for(tokenizer, params["frame"])
    bar = tqdm(total=sum(len(chunk) for _, chunk in chunks), desc=name, disable=not progress)
    rendered: dict[int, str] = {}
    left = job_prompts or sum(len(chunk) for _, chunk in chunks)  # whether compiling pays (generation_plan)
    stats = {"seconds": 0.0, "new_tokens": 0}
    for c, chunk in chunks:
        for row, _ in chunk:  # rendering (Jinja) once per instruction, not once per sample
            if row["id"] not in rendered:
                rendered[row["id"]] = frame.render(tokenizer, row["instruction"])
        prompts = [rendered[row["id"]] for row, _ in chunk]
        t0 = time.perf_counter()
        outs = writer.write(prompts, max_new_tokens=params["max_new_tokens"], batch_size=batch_size,
                            do_sample=True, temperature=params["temperature"], top_p=params["top_p"],
                            seed=chunk_seed(seed, name, c), stop_strings=frame.stop_strings, job_prompts=left,
                            compile=compile)
        left -= len(chunk)
        seconds = time.perf_counter() - t0
        rows = [{"instruction_id": row["id"], "instruction": row["instruction"], "model": name, "sample": s,
                 **{k: params[k] for k in ("temperature", "top_p", "max_new_tokens")}, "frame": frame.kind,
                 "prompt_tokens": o["prompt_tokens"], "new_tokens": o["new_tokens"], "finished": o["finished"],
                 "response": o["text"]} for (row, s), o in zip(chunk, outs)]
        new_tokens = sum(r["new_tokens"] for r in rows)
        write_json(out / f"{c:05d}.json", {"chunk": c, "seconds": seconds, "new_tokens": new_tokens,
                                                 "rows": rows})  # atomic: tmp file + rename
        stats["seconds"] += seconds
        stats["new_tokens"] += new_tokens
        bar.update(len(chunk))
    bar.close()
    return stats


def collect(run_name: str, generators: list[str]) -> list[dict]:
    """All rows from the shards, in (model, chunk) order; checks nothing is missing or duplicated."""
    rows = []
    for name in generators:
        for path in sorted(shard_dir(run_name, name).glob("[0-9]*.json")):
            rows += read_json(path)["rows"]
    keys = [(r["model"], r["instruction_id"], r["sample"]) for r in rows]
    if len(keys) != len(set(keys)):
        raise RuntimeError(f"duplicate generation rows in {stage_dir(run_name, STAGE) / 'shards'}")
    return rows


def shard_timings(run_name: str, generators: list[str]) -> dict:
    """Tokens per second per model over every shard (including shards from an interrupted earlier call)."""
    out = {}
    for name in generators:
        shards = [read_json(p) for p in sorted(shard_dir(run_name, name).glob("[0-9]*.json"))]
        seconds = sum(s["seconds"] for s in shards)
        tokens = sum(s["new_tokens"] for s in shards)
        out[name] = {"new_tokens": tokens, "seconds": round(seconds, 2),
                     "tokens_per_second": round(tokens / seconds, 1) if seconds else None}
    return out


def save(run_name: str, rows: list[dict]) -> Path:
    return write_jsonl(stage_dir(run_name, STAGE) / "generations.jsonl", rows)


def load_generations(run_name: str) -> list[dict]:
    return read_jsonl(require(run_name, STAGE, "generations.jsonl"))


def plot(rows: list[dict], timings: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    names = list(timings)
    everything = sorted(r["new_tokens"] for r in rows) or [0]
    top = everything[min(len(everything) - 1, int(0.995 * len(everything)))] + 2  # a few outliers don't set the axis
    for name in names:
        lengths = [r["new_tokens"] for r in rows if r["model"] == name]
        axes[0].hist(lengths, bins=range(0, max(lengths or [0]) + 2), alpha=0.5, label=name)
    axes[0].set_xlim(0, top)
    axes[0].set_xlabel("new tokens per response" + (" (axis cut at the 99.5th percentile)"
                                                    if top < everything[-1] + 1 else ""))
    axes[0].set_ylabel("responses")
    axes[0].legend()
    axes[0].set_title("Response lengths")
    axes[1].bar(names, [timings[n]["tokens_per_second"] or 0 for n in names])
    axes[1].set_ylabel("new tokens / s")
    axes[1].set_title("Generation throughput")
    return save_figure(fig, path)


def metrics(rows: list[dict], instructions: list[dict], generators: list[str], samples_per_model: int,
            timings: dict) -> dict:
    expected = len(instructions) * len(generators) * samples_per_model
    if len(rows) != expected:
        raise RuntimeError(f"{len(rows)} generation rows, expected {expected}: rerun the notebook to finish them")
    finished = {n: sum(r["finished"] for r in rows if r["model"] == n) / max(1, sum(r["model"] == n for r in rows))
                for n in generators}
    warnings = trouble({
        f"{1 - rate:.0%} of {n}'s answers hit max_new_tokens before they ended, and notebook 03 drops unfinished "
        f"answers: raise max_new_tokens for {n} in sampling": rate < 0.8 for n, rate in finished.items()})
    return {"n_instructions": len(instructions), "models": generators, "samples_per_model": samples_per_model,
            "n_rows": len(rows), "new_tokens": {n: timings[n]["new_tokens"] for n in generators},
            "tokens_per_second": {n: timings[n]["tokens_per_second"] for n in generators},
            "finished_rate": finished, "warnings": warnings}
