"""Grading on a real Dask cluster: a scheduler and two workers on 127.0.0.1, started here.

The cluster's CSV must equal a serial run's with the same secret seed, and a worker
killed mid-run loses nothing: the scheduler reruns its student on the other worker.
"""

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from submissions import crafted

from course_utils.grading import cli

pytestmark = pytest.mark.timeout(900)
SEED = 4242
FAST = dict(memory_mb=2000, threads=1)
HONEST = [
    crafted.HEAD,
    crafted.PL_OK,
    crafted.QUICK_FIT,
    """def train_baseline(x_labeled, y_labeled, seed=0):
    return quick_fit(x_labeled, y_labeled, steps=60)
""",
    crafted.ANSWER,
]
SLOW = [
    crafted.HEAD,
    crafted.PL_OK,
    """def train_baseline(x_labeled, y_labeled, seed=0):
    import time

    time.sleep(6)
    return new_model()
""",
    crafted.ANSWER,
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [
        subprocess.Popen(
            dask + ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    worker = [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        address,
        "--nthreads",
        "1",
        "--no-nanny",
        "--dashboard-address",
        ":0",
        "--memory-limit",
        "0",
    ]
    workers = [
        subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(2)
    ]
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
    yield address, workers
    for p in procs + workers:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()


def _rows(path):
    with open(path, newline="") as f:
        return {r["student"]: {k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)}


def test_the_cluster_gives_the_serial_results(cluster, tmp_path):
    address, _ = cluster
    subs = tmp_path / "subs"
    subs.mkdir()
    crafted.write_notebook(subs / "honest.ipynb", HONEST, str(tmp_path))
    cheat, _ = crafted.CASES["read_labels_from_disk"]
    crafted.write_notebook(subs / "cheat.ipynb", cheat, str(tmp_path))
    cli.grade_all(subs, tmp_path / "serial.csv", "mnist-5k", seed=SEED, **FAST)
    outcome = cli.grade_all(subs, tmp_path / "cluster.csv", "mnist-5k", seed=SEED, scheduler=address, **FAST)
    assert outcome.failures == {} and sorted(outcome.graded) == ["cheat", "honest"]
    assert _rows(tmp_path / "cluster.csv") == _rows(tmp_path / "serial.csv")
    rows = _rows(tmp_path / "cluster.csv")
    assert rows["honest"]["points_pseudo_label"] == "1" and float(rows["honest"]["baseline_acc"]) > 30
    assert (
        rows["cheat"]["points_auto_total"] == "1"
        and "sandbox does not allow open" in rows["cheat"]["reasons"]
    )


def test_a_worker_killed_mid_run_loses_nothing(cluster, tmp_path):
    address, workers = cluster
    subs = tmp_path / "subs"
    subs.mkdir()
    names = [f"s{i}" for i in range(4)]
    for name in names:
        crafted.write_notebook(subs / f"{name}.ipynb", SLOW, str(tmp_path))
    box = {}
    thread = threading.Thread(
        target=lambda: box.setdefault(
            "outcome",
            cli.grade_all(subs, tmp_path / "g.csv", "mnist-5k", seed=SEED, scheduler=address, **FAST),
        )
    )
    thread.start()
    time.sleep(15)  # both workers are grading a student (probe, then the slow baseline)
    os.killpg(workers[0].pid, signal.SIGKILL)
    thread.join(600)
    outcome = box["outcome"]
    assert outcome.failures == {} and sorted(outcome.graded) == names
    assert sorted(_rows(tmp_path / "g.csv")) == names
    assert all(r["points_pseudo_label"] == "1" for r in _rows(tmp_path / "g.csv").values())
