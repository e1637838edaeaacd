"""Several Ray nodes on this machine (``ray.cluster_utils.Cluster``):
campaigns spread over the nodes and land exactly once, fractional GPUs
pack several campaigns on one (logical) GPU, and a node removed mid-run has
its campaigns rescheduled elsewhere, resumed from their checkpoints."""

from __future__ import annotations

import threading
import time

import pytest

from alharness.results import store
from alharness.execution.benchmark import parse_benchmark
from conftest import tiny_benchmark_doc
from test_faults_ray import campaign_workers, run_in_thread

_STORE = 80 * 2**20  # object store per node: the minimum Ray accepts is 75 MiB


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU) + a CPU node + a node with one logical GPU. The session's
    local Ray is stopped for this module and started again after it."""
    import ray
    from ray.cluster_utils import Cluster

    from alharness.execution.backends.ray import init_ray

    was_up = ray.is_initialized()
    if was_up:
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": _STORE})
    c.cpu_node = c.add_node(num_cpus=1, object_store_memory=_STORE)
    c.gpu_node = c.add_node(num_cpus=2, num_gpus=1, object_store_memory=_STORE)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if was_up:
            init_ray(num_cpus=2)


def _node_ids(c):
    return {"head": c.head_node.node_id, "cpu": c.cpu_node.node_id, "gpu": c.gpu_node.node_id}


def _exactly_once(out, bench):
    con, _ = store.connect(out)
    n = len(bench.specs)
    assert store.finished_ids(out) == {s.campaign_id for s in bench.specs}
    assert con.execute("SELECT count(*), count(DISTINCT campaign_id) FROM campaigns").fetchone() == (n, n)
    rounds = bench.specs[0].rounds + 1
    assert con.execute("SELECT count(*), count(DISTINCT (campaign_id, round)) FROM rounds").fetchone() == (n * rounds, n * rounds)
    return con


def test_campaigns_spread_over_nodes_and_fractional_gpus_pack(cluster, tmp_path):
    import ray

    from alharness.execution.backends.ray import run_benchmark

    ids = _node_ids(cluster)
    bench = parse_benchmark(tiny_benchmark_doc(strategies=[{"name": "test_sleepy", "sleep_s": 0.3}], seeds=list(range(6))))
    summary = run_benchmark(bench, tmp_path / "cpu", progress=False)
    assert summary.ok == 6
    con = _exactly_once(tmp_path / "cpu", bench)
    used = {n for (n,) in con.execute("SELECT DISTINCT node_id FROM campaigns").fetchall()}
    assert len(used) >= 2 and used <= set(ids.values())

    # num_gpus = 0.25: up to four campaigns share the one GPU (on CPU here, the
    # resource is logical; the device tool lent no GPU to measure throughput).
    doc = tiny_benchmark_doc(strategies=[{"name": "test_sleepy", "sleep_s": 0.5}], seeds=list(range(4)))
    bench = parse_benchmark({**doc, "resources": {"num_gpus": 0.25, "num_cpus": 0.5}})
    low, stop = [1.0], threading.Event()

    def watch():
        while not stop.is_set():
            low[0] = min(low[0], ray.available_resources().get("GPU", 0.0))
            time.sleep(0.05)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        summary = run_benchmark(bench, tmp_path / "gpu", progress=False)
    finally:
        stop.set()
        w.join()
    assert summary.ok == 4
    con = _exactly_once(tmp_path / "gpu", bench)
    assert {n for (n,) in con.execute("SELECT DISTINCT node_id FROM campaigns").fetchall()} == {ids["gpu"]}
    assert low[0] <= 0.5 + 1e-9, f"at most {1 - low[0]:g} GPU in use at once: campaigns were not packed"


def test_removed_node_campaigns_are_rescheduled_and_resume(cluster, tmp_path):
    from alharness.execution.backends.ray import run_benchmark

    bench = parse_benchmark(tiny_benchmark_doc(strategies=[{"name": "test_sleepy", "sleep_s": 0.4}], seeds=list(range(8))))
    cid_of_seed = {s.seed: s.campaign_id for s in bench.specs}
    out = tmp_path / "out"
    node = cluster.cpu_node
    thread, box = run_in_thread(run_benchmark, bench=bench, out_dir=out, progress=False, retries=3)
    victim, deadline = None, time.time() + 240
    while victim is None and thread.is_alive() and time.time() < deadline:
        # A campaign on the node to remove that has saved at least one round.
        for title in campaign_workers(node.all_processes["raylet"][0].process.pid, "test_sleepy").values():
            cid = cid_of_seed[int(title.rsplit(":seed", 1)[1].split()[0])]
            if (out / "checkpoints" / f"{cid}.ckpt").exists():
                victim = cid
                break
        else:
            time.sleep(0.05)
    assert victim is not None, "no campaign ran on the node to remove"
    cluster.remove_node(node, allow_graceful=False)
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    assert box["summary"].ok == 8 and not box["summary"].failed
    con = _exactly_once(out, bench)
    node_id, resumed = con.execute("SELECT node_id, resumed_round FROM campaigns WHERE campaign_id = ?", [victim]).fetchone()
    assert node_id != node.node_id and resumed is not None
