"""helpers.workers: how many workers and where (planned from the devices, the jobs' memory and the cores), and
independent jobs run side by side in spawned processes with the results, warnings and failures of running them here;
notebook 05's trainings side by side give the adapters they give one after another."""
import json
import os
import warnings

import pytest

from helpers import workers

# torch and safetensors are imported inside the tests that train: the workers of the others import this module to
# find their job (`_square`, `_visible`), and start faster without them


def test_one_worker_on_a_cpu_unless_asked():
    assert workers.plan(6, 0, "cpu", cpus=2) == workers.Plan(1, ("cpu",), 0.0, workers.plan(6, 0, "cpu").reason)
    assert workers.plan(6, 3, "cpu").devices == ("cpu",) * 3
    assert workers.plan(2, 8, "cpu").workers == 2  # never more workers than jobs
    with pytest.raises(ValueError, match="train_workers = -1"):
        workers.plan(6, -1, "cpu")


def test_several_small_jobs_share_each_gpu_within_memory_and_cores():
    p = workers.plan(18, 0, "cuda", job_gib=1.0, free_gib=100.0, cpus=16, gpus=["0", "1"])
    assert p.workers == 16 and p.devices.count("0") == p.devices.count("1") == 8  # 8 per GPU: the cores decide
    assert p.memory_budget_gib == 12.5  # each job's share of the free memory
    p = workers.plan(18, 0, "cuda", job_gib=30.0, free_gib=100.0, cpus=16, gpus=["0", "1"])
    assert p.workers == 4 and p.memory_budget_gib == 50.0  # two per GPU: the memory decides
    p = workers.plan(9, 0, "cuda", job_gib=90.0, free_gib=100.0, cpus=16, gpus=["2"])
    assert p == workers.Plan(1, ("2",), 0.0, p.reason)  # one job fills the GPU: one at a time, its whole memory


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this system")
def test_the_cores_are_those_the_process_may_run_on():
    # a one-GPU run on a larger host pinned with `taskset -c 0-15` plans for 16 cores, not the host's count
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert workers.cores() == 1 and workers.cores_each(2) == 1
        assert workers.plan(18, 0, "cuda", job_gib=1.0, free_gib=100.0, gpus=["0"]).workers == 1
    finally:
        os.sched_setaffinity(0, before)
    assert workers.cores() == len(before)


def _square(x, warn=False):
    if warn:
        warnings.warn(f"square of {x}", UserWarning)
    if x < 0:
        raise ValueError("negative")
    return x * x, os.getpid()


def test_jobs_run_side_by_side_in_other_processes_and_come_back_in_order():
    seen = []
    plan = workers.plan(4, 2, "cpu")
    jobs = [(f"job{x}", (x,), {"warn": x == 3}) for x in range(4)]
    with pytest.warns(UserWarning, match="square of 3"):  # a job's warning reaches the caller
        out = workers.run(_square, jobs, plan, on_done=lambda name, r, where: seen.append((name, where)))
    assert [r for r, _ in out] == [0, 1, 4, 9]
    assert os.getpid() not in {pid for _, pid in out}
    assert sorted(seen) == [(f"job{x}", "cpu") for x in range(4)]
    assert [r for r, _ in workers.run(_square, jobs[:2], workers.plan(2, 1, "cpu"))] == [0, 1]  # one: here


def test_a_failed_job_is_named():
    with pytest.raises(RuntimeError, match="job 'minus' failed in its worker: ValueError"):
        workers.run(_square, [("plus", (2,), {}), ("minus", (-1,), {})], workers.plan(2, 2, "cpu"))


@pytest.mark.slow
def test_trainings_side_by_side_give_the_adapters_trained_one_after_another(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file
    from test_training import BASE, CPU_PLAIN, recipe, rows

    from helpers import qlora_training as qt

    chosen = {"domain_only": rows(), "ours": rows(8)}
    adapters = {}
    threads = torch.get_num_threads()
    for n in (1, 2):
        monkeypatch.setenv("HELPERS_OUTPUTS", str(tmp_path / f"out{n}"))
        # here the threads each of two workers gets (workers.run): with another count, sums reduce in another
        # order and the weights differ past the tolerance (seen without pytest-xdist's one thread per worker)
        torch.set_num_threads(workers.cores_each(2))
        try:
            results, plan = qt.train_all("t", chosen, [0], BASE, CPU_PLAIN, recipe(setup=CPU_PLAIN), progress=False,
                                         workers=n)
        finally:
            torch.set_num_threads(threads)
        assert plan.workers == n and list(results) == list(chosen)
        adapters[n] = {arm: load_file(tmp_path / f"out{n}" / "t" / qt.STAGE / ms[0]["adapter"]
                                      / "adapter_model.safetensors") for arm, ms in results.items()}
        losses = {arm: ms[0]["final_loss"] for arm, ms in results.items()}
        if n == 1:
            first = losses
    assert losses == pytest.approx(first, rel=1e-4)
    for arm, weights in adapters[1].items():
        for name, w in weights.items():
            torch.testing.assert_close(adapters[2][arm][name], w, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_one_arm_over_two_ranks_trains_the_adapter_of_one_process(tmp_path, monkeypatch):
    """Issue 23: ``gpus_per_arm = 2`` trains each arm data parallel (DDP through the Trainer's accelerate). On a CPU
    that is two gloo processes, each taking half of every batch of 4: the same steps, the same effective batch, the
    same adapter to float precision. Rank 0 alone writes it; the job's pickle and log are gone afterwards."""
    import torch
    from safetensors.torch import load_file

    from test_training import BASE, CPU_NF4, HP, recipe, rows

    from helpers import qlora_training as qt

    chosen = {"ours": rows(8)}
    hp = {**HP, "train_embeddings": False, "max_steps": 4}
    got = {}
    for ranks in (1, 2):
        monkeypatch.setenv("HELPERS_OUTPUTS", str(tmp_path / f"out{ranks}"))
        results, plan = qt.train_all("t", chosen, [0], BASE, CPU_NF4, recipe(hp), progress=False,
                                     gpus_per_arm=ranks)
        m = results["ours"][0]
        stage = tmp_path / f"out{ranks}" / "t" / qt.STAGE
        assert (m["ranks"], m["batch_per_rank"], m["steps"], m["examples_seen"]) == (ranks, 4 // ranks, 4, 16)
        assert json.loads((stage / m["adapter"] / "metrics.json").read_text())["ranks"] == ranks
        assert not [p for p in (stage / "ranked").rglob("*") if p.is_file()] if (stage / "ranked").exists() else True
        got[ranks] = (m, load_file(stage / m["adapter"] / "adapter_model.safetensors"))
    (one, w1), (two, w2) = got[1], got[2]
    assert two["settings_key"] == one["settings_key"]  # the same recipe: a rerun with other ranks reuses it
    assert [loss for _, loss in two["loss_curve"]] == pytest.approx([loss for _, loss in one["loss_curve"]], rel=1e-3)
    for name, w in w1.items():
        torch.testing.assert_close(w2[name], w, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match=r"gpus_per_arm = 3 does not divide train_batch_size = 4"):
        qt.train_all("t", chosen, [0], BASE, CPU_NF4, recipe(hp), progress=False, gpus_per_arm=3)
    with pytest.raises(ValueError, match=r"gpus_per_arm = 0: give 1"):
        qt.train_all("t", chosen, [0], BASE, CPU_NF4, recipe(hp), progress=False, gpus_per_arm=0)


@pytest.mark.slow
def test_a_ranked_job_brings_back_its_warnings_and_names_its_failure(tmp_path):
    """run_ranked: rank 0's warnings are warned again here; a job whose ranks fail is named, with the traceback."""
    with pytest.warns(UserWarning, match="from rank 0"):
        assert workers.run_ranked(warnings.warn, ("from rank 0",), {}, 2, tmp_path / "ok", "a job") is None
    assert not list((tmp_path / "ok").iterdir())  # the job's pickle and log are gone
    with pytest.raises(RuntimeError, match=r"(?s)'boom': its 2 ranks failed .*Traceback.*ValueError: invalid literal"):
        workers.run_ranked(int, ("x",), {}, 2, tmp_path / "bad", "'boom'")
    assert (tmp_path / "bad" / "ranked.log").exists()  # kept for the reader


def test_several_jobs_on_one_gpu_with_batches_sized_to_its_free_memory_are_refused():
    """01 and 02's shared check: batch_size = 0 sizes a job's batches to the whole GPU, so two on one GPU would not
    fit; one per GPU, a given batch size, or the CPU are fine."""
    shared = workers.Plan(2, ("0", "0"), 0.0, "")
    with pytest.raises(ValueError, match=r"workers = 0 puts 2 samplers on 1 GPU\(s\), and batch_size = 0 sizes"):
        workers.refuse_autosized_sharing(shared, 0, 0, "samplers")
    workers.refuse_autosized_sharing(shared, 0, 64, "samplers")
    workers.refuse_autosized_sharing(workers.Plan(2, ("0", "1"), 0.0, ""), 0, 0, "samplers")
    workers.refuse_autosized_sharing(workers.Plan(2, ("cpu", "cpu"), 0.0, ""), 2, 0, "samplers")


def _visible(i):
    return i, os.environ.get("CUDA_VISIBLE_DEVICES")


def test_with_a_worker_for_every_job_the_jobs_are_dealt_to_the_gpus_in_turn():
    """Job i runs on the plan's i-th device, so an arm's seeds (listed one after another) land on different GPUs.
    On a CPU the GPU names are only pinned, never used: what each job saw is the placement."""
    plan = workers.Plan(5, ("0", "1", "0", "1", "0"), 0.0, "test")
    seen = []
    out = workers.run(_visible, [(f"job{i}", (i,), {}) for i in range(5)], plan,
                      on_done=lambda name, r, where: seen.append((name, where)))
    assert out == [(i, d) for i, d in enumerate(plan.devices)]
    assert sorted(seen) == [(f"job{i}", d) for i, d in enumerate(plan.devices)]
    fewer = workers.run(_visible, [(f"job{i}", (i,), {}) for i in range(5)], workers.Plan(2, ("0", "1"), 0.0, "t"))
    assert [i for i, _ in fewer] == list(range(5)) and {d for _, d in fewer} <= {"0", "1"}  # shared: next free
