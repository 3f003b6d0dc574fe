"""Independent jobs run side by side in worker processes: one training per arm and seed (notebook 05), one on each
GPU, or several on one GPU when a job uses a small part of it (a 135M-parameter model trains in well under a GiB
and leaves the GPU idle most of each step, waiting for Python to dispatch the next kernel).

``plan`` decides how many workers, and where each runs; ``run`` runs the jobs and returns their results in order.
Each worker is a fresh Python process (``spawn``: a process forked from a kernel that has touched CUDA cannot use
it), pinned to its GPU by ``CUDA_VISIBLE_DEVICES`` before torch starts CUDA there, so the job's code sees one GPU,
``cuda:0``, as it would alone. On a CPU one worker is the default: the cores are shared, and two trainings on two
cores finish no sooner than one after the other.

With a worker for every job, job i runs on the plan's i-th device, so where each job runs is known before it
starts. What a job warns is re-issued in the calling process (a notebook shows it under the cell); what it prints
goes to the worker's standard output. One failed job stops the jobs not yet started; those running finish (their
results are saved, so a rerun resumes), then the failure is raised, naming the job.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    workers: int               # processes side by side (1: the jobs run one after another in this process)
    devices: tuple[str, ...]   # each worker's device: a GPU index as CUDA_VISIBLE_DEVICES names it, or "cpu"
    memory_budget_gib: float   # memory each job may take on its device (0: the device's free memory)
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them ("0", "1", ...); none without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return named[:torch.cuda.device_count()] if named else [str(i) for i in range(torch.cuda.device_count())]


def cores() -> int:
    """The CPU cores this process may run on: its affinity (``taskset``, a container's cpuset) where the system
    reports one, else every core of the machine (``os.cpu_count``, which ignores the affinity)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def cores_each(processes: int) -> int:
    """The CPU cores each of ``processes`` processes side by side gets (at least one): its torch threads."""
    return max(1, cores() // processes)


def device() -> str:
    """"cuda" when this process sees a GPU, else "cpu": what ``plan`` is given by stages that pick no device."""
    return "cuda" if visible_gpus() else "cpu"


def plan(jobs: int, requested: int, device: str, job_gib: float = 0.0, free_gib: float = 0.0,
         cpus: int | None = None, gpus: list[str] | None = None) -> Plan:
    """How many workers for ``jobs`` independent jobs on ``device`` ("cuda" or "cpu").

    ``requested``: the user's number (notebook 05's ``train_workers``); 0 chooses: one on a CPU; on GPUs, as many
    per GPU as fit in 80% of the smallest GPU's free memory (``free_gib``) at ``job_gib`` each (the job's estimated
    peak), no more than the CPU cores allow (each job's Python keeps one core busy), and no more than ``jobs``.
    With several workers on one GPU each job's memory budget is its share of the free memory, so that each plans
    its activation checkpointing for what it really has. ``gpus``: the GPUs to use (default: ``visible_gpus()``)."""
    cpus = cpus or cores()
    if requested < 0:
        raise ValueError(f"train_workers = {requested}: give 0 (chosen from the devices) or a number of processes")
    gpus = (visible_gpus() if gpus is None else gpus) if device == "cuda" else []
    if not gpus:
        n = max(1, min(requested or 1, jobs))
        reason = "given" if requested else "a CPU: one job at a time (two on two cores finish no sooner)"
        return Plan(n, ("cpu",) * n, 0.0, reason)
    if requested:
        n = min(requested, jobs)
        reason = "given"
    else:
        per_gpu = max(1, min(int(0.8 * free_gib // job_gib) if job_gib > 0 else 1, max(1, cpus // len(gpus))))
        n = max(1, min(jobs, per_gpu * len(gpus)))
        reason = (f"{per_gpu} per GPU: {job_gib:.1f} GiB per job in 80% of {free_gib:.0f} GiB free, "
                  f"{cpus} CPU cores for {len(gpus)} GPU(s), {jobs} jobs")
    devices = tuple(gpus[i % len(gpus)] for i in range(n))
    sharing = max(devices.count(d) for d in set(devices))
    budget = round(free_gib / sharing, 2) if sharing > 1 and free_gib else 0.0
    return Plan(n, devices, budget, reason)


def gpu_groups(per_job: int, device: str) -> list[str] | None:
    """The GPU groups of jobs that each take ``per_job`` GPUs (``CUDA_VISIBLE_DEVICES`` values such as "0,1" and
    "2,3", handed to ``plan`` as its ``gpus``); None for one GPU per job, or on a CPU (where ``run_ranked`` starts
    gloo processes instead). Refuses more GPUs per job than the machine shows."""
    if per_job == 1 or device != "cuda":
        return None
    gpus = visible_gpus()
    if len(gpus) < per_job:
        raise ValueError(f"gpus_per_arm = {per_job}, but this machine shows {len(gpus)} GPU(s) "
                         f"({', '.join(gpus) or 'none'}); give at most {len(gpus)}")
    return [",".join(gpus[i:i + per_job]) for i in range(0, len(gpus) - per_job + 1, per_job)]


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_INHERITED: dict[str, str | None] = {}  # a worker's thread variables as it found them (run_ranked hands them on)


def _start(slots, threads: int) -> None:
    """A worker's first act: take a device slot, and pin the process to it before torch starts CUDA here. Its
    thread count goes in the environment, which torch reads when a job first imports it: a job that needs no torch
    starts in a fraction of a second instead of the seconds torch's import takes."""
    import sys

    slot = slots.get()
    if slot != "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = slot
    for name in _THREAD_VARS:
        _INHERITED[name] = os.environ.get(name)
        os.environ[name] = str(threads)
    if "torch" in sys.modules:  # imported already (the worker's own imports): set it there too
        sys.modules["torch"].set_num_threads(threads)


def _reissue(caught: list[tuple]) -> None:
    """Warn again here what a job warned in its own process (``_call``'s record)."""
    for category, message in caught:
        warnings.warn(message, category if issubclass(category, Warning) else UserWarning, stacklevel=3)


def refuse_autosized_sharing(plan: Plan, requested: int, batch_size: int, what: str) -> None:
    """Refuse ``plan`` when it puts several ``what`` (generations, samplers) on one GPU while ``batch_size = 0``
    would size each one's batches to that whole GPU's free memory."""
    if plan.workers > 1 and len(set(plan.devices)) < plan.workers and plan.devices[0] != "cpu" and not batch_size:
        raise ValueError(f"workers = {requested} puts {plan.workers} {what} on {len(set(plan.devices))} GPU(s), and "
                         "batch_size = 0 sizes each one's batches to the whole GPU's free memory: give batch_size "
                         "(rows per batch), or one worker per GPU")


def _call(fn, args: tuple, kwargs: dict):
    """Run one job, returning its result and the warnings it raised (re-issued by the caller)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        result = fn(*args, **kwargs)
    return result, [(w.category, str(w.message)) for w in caught], os.environ.get("CUDA_VISIBLE_DEVICES", "cpu")


def run(fn, jobs: list[tuple[str, tuple, dict]], workers: Plan, on_done=None) -> list:
    """``fn(*args, **kwargs)`` for every ``(name, args, kwargs)`` of ``jobs``, ``workers.workers`` at a time;
    the results in the jobs' order. ``on_done(name, result, where)`` is called as each finishes (in this process).
    With one worker the jobs run here, one after another (no process is started)."""
    if workers.workers <= 1:
        out = []
        for name, args, kwargs in jobs:
            result = fn(*args, **kwargs)
            if on_done:
                on_done(name, result, workers.devices[0] if workers.devices else "cpu")
            out.append(result)
        return out
    ctx = multiprocessing.get_context("spawn")
    threads = cores_each(workers.workers)
    results: dict[int, object] = {}
    with ExitStack() as stack:
        submit, pools = _pools(stack, ctx, workers, len(jobs), threads)
        futures = {submit(i, _call, fn, args, kwargs): i for i, (_, args, kwargs) in enumerate(jobs)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    i = futures[future]
                    error = future.exception()
                    if error is not None:
                        for other in pending:
                            other.cancel()
                        raise RuntimeError(f"job {jobs[i][0]!r} failed in its worker: {error!r}") from error
                    result, caught, where = future.result()
                    _reissue(caught)
                    results[i] = result
                    if on_done:
                        on_done(jobs[i][0], result, where)
        except KeyboardInterrupt:
            for process in multiprocessing.active_children():  # the jobs running now stop too
                process.terminate()
            for pool in pools:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [results[i] for i in range(len(jobs))]


def _pools(stack: ExitStack, ctx, workers: Plan, jobs: int, threads: int):
    """``(submit, pools)``: ``submit(i, fn, *args)`` starts job i. With a worker for every job and several devices,
    job i runs on ``workers.devices[i]``, through one pool per device: the jobs are dealt to the GPUs in turn, so an
    arm's seeds, listed one after another, land on different GPUs (with one shared pool, whichever worker started
    first took the next job: on 2026-11-30 the three slowest trainings all ran on one of two GPUs). Otherwise one
    pool whose workers take the next job as they free up, so that uneven jobs balance themselves."""
    def pool(devices):
        slots = ctx.Queue()
        for device in devices:
            slots.put(device)
        return stack.enter_context(ProcessPoolExecutor(len(devices), mp_context=ctx, initializer=_start,
                                                       initargs=(slots, threads)))
    used = workers.devices[:jobs]
    if workers.workers >= jobs and len(set(used)) > 1:
        by_device = {d: pool([d] * used.count(d)) for d in dict.fromkeys(used)}
        return (lambda i, *call: by_device[used[i]].submit(*call)), list(by_device.values())
    shared = pool(workers.devices)
    return (lambda i, *call: shared.submit(*call)), [shared]


# One job over several ranks (data parallel): torch's launcher starts ``ranks`` processes, each runs the job, and
# inside it the Trainer (through accelerate) wraps the model in DDP: NCCL across GPUs, gloo across CPU processes.


def world() -> tuple[int, int, int]:
    """``(rank, local rank, world size)`` of this process in a run started by ``run_ranked``; ``(0, 0, 1)`` alone."""
    return tuple(int(os.environ.get(name, default)) for name, default in
                 (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)))


def run_ranked(fn, args: tuple, kwargs: dict, ranks: int, workdir: Path, name: str):
    """``fn(*args, **kwargs)`` on ``ranks`` processes at once (``python -m torch.distributed.run --standalone``, the
    launcher ``accelerate launch --multi_gpu`` also uses), on the GPUs this process sees (``CUDA_VISIBLE_DEVICES``;
    rank k on the k-th) or, without CUDA, on the CPU with gloo. Returns rank 0's result; what rank 0 warned is
    warned again here.

    The job travels as a pickle in ``workdir`` (under the run's outputs), with the ranks' log beside it
    (``ranked.log``); both are removed once it succeeds. A rank that fails fails the job, naming ``name`` and quoting
    the log's first traceback. Interrupted (Ctrl-C), the ranks are stopped before this returns."""
    import pickle
    import signal
    import subprocess
    import sys

    workdir.mkdir(parents=True, exist_ok=True)
    spec, log = workdir / "ranked-job.pkl", workdir / "ranked.log"
    spec.write_bytes(pickle.dumps((fn.__module__, fn.__qualname__, args, kwargs)))
    src = str(Path(__file__).resolve().parents[1])  # the folder holding `helpers`, for the ranks' imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    for name, value in _INHERITED.items():  # in a worker: the ranks get the variables it found, not its own count
        if value is None:  # (unset, torch's launcher gives each of several ranks one thread)
            env.pop(name, None)
        else:
            env[name] = value
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               "-m", "helpers.workers", str(spec)]
    with log.open("w") as out:
        launcher = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = launcher.wait()
        except BaseException:  # Ctrl-C: the launcher passes SIGTERM on to its ranks; give them a moment, then kill
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                launcher.kill()
            raise
    result = spec.with_suffix(".result")
    if code != 0 or not result.exists():
        lines = log.read_text(errors="replace").splitlines(keepends=True)
        first = next((k for k, line in enumerate(lines) if line.startswith("Traceback")), max(0, len(lines) - 15))
        raise RuntimeError(f"{name}: its {ranks} ranks failed (exit {code}); the whole log is {log}. "
                           f"From it:\n{''.join(lines[first:first + 40])}")
    value, caught = pickle.loads(result.read_bytes())
    _reissue(caught)
    for path in (spec, result, log):
        path.unlink(missing_ok=True)
    return value


def _ranked_main(spec: str) -> None:
    """A rank of ``run_ranked``'s job: on its own GPU (before anything touches CUDA), run it; rank 0 leaves the
    result and its warnings beside the job."""
    import importlib
    import pickle

    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(world()[1])
    module, qualname, args, kwargs = pickle.loads(Path(spec).read_bytes())
    fn = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    value, caught, _ = _call(fn, args, kwargs)
    if world()[0] == 0:
        Path(spec).with_suffix(".result").write_bytes(pickle.dumps((value, caught)))


if __name__ == "__main__":
    import sys

    _ranked_main(sys.argv[1])
