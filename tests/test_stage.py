"""The stage loop: isolated workers, the result cache, resuming a killed sweep, a Dask cluster."""

import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import planted
import pytest

from zoo.catalogue.entries import Entry, select
from zoo.stages import base as stage
from zoo.stages import counts
from zoo.store import cache as cache_module
from zoo.store import tables
from zoo.store.cache import Cache
from zoo.store.schema import TABLES

ROOT = Path(__file__).resolve().parents[1]
GOOD = ["alpha", "beta", "gamma"]
PLANTED = GOOD + ["raises", "hangs", "exits", "allocates"]


def entries(names):
    return [Entry("timm", n, "w", 224) for n in names]


def test_planted_failures_cost_only_their_model(tmp_path):
    summary = stage.run(planted.STAGE, entries(PLANTED), tmp_path, workers=2, timeout=15,
                        memory_limit=1 * 2**30, cache=Cache(None), log=io.StringIO())
    assert summary["failed"] == 4 and summary["done"] == 3
    rows = tables.read(tmp_path, "counts.csv")
    assert rows["arch"].tolist() == GOOD and rows["params"].tolist() == [5, 4, 5]
    failures = tables.read(tmp_path, "failures.csv").set_index("arch")["error"].to_dict()
    assert failures == {
        "allocates": "out of memory: the worker passed its 1 GiB limit",
        "exits": "killed: the worker process exited with status 3",
        "hangs": "timeout: no result after 15s",
        "raises": "ValueError: planted failure"}


def test_the_cache_answers_an_unchanged_rerun_and_nothing_else(tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache")
    run = lambda stg=planted.STAGE: stage.run(stg, entries(GOOD + ["raises"]), tmp_path / "data",  # noqa: E731
                                              workers=1, cache=cache, log=io.StringIO())
    assert run()["measured"] == 4
    before = (tmp_path / "data" / "counts.csv").read_text()
    assert run()["measured"] == 0  # the raising model's failure is a fact of this code, kept too
    assert (tmp_path / "data" / "counts.csv").read_text() == before
    # another setting: measured again, and its figures land
    import dataclasses

    assert run(dataclasses.replace(planted.STAGE, settings={"gmacs": 2.0}))["measured"] == 4
    assert set(tables.read(tmp_path / "data", "counts.csv")["gmacs"]) == {2.0}
    # another version of a library, or of the measuring code: measured again
    versions = cache_module.library_versions()
    monkeypatch.setattr(cache_module, "library_versions", lambda: {**versions, "timm_version": "9"})
    assert run()["measured"] == 4
    monkeypatch.undo()
    assert run()["measured"] == 0
    monkeypatch.setattr(cache_module, "code_hash", lambda modules: "changed")
    assert run()["measured"] == 4


SWEEP = ["torchvision:squeezenet1_0", "torchvision:squeezenet1_1", "torchvision:resnet18",
         "torchvision:mobilenet_v3_small", "torchvision:shufflenet_v2_x0_5",
         "torchvision:mnasnet0_5", "timm:resnet18.a1_in1k", "torchvision:alexnet"]


def zoo_count(data, cache, **popen):
    env = {**os.environ, "ZOO_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "zoo", "count", *SWEEP, "--data", str(data)],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, **popen)


def test_a_sweep_killed_part_way_resumes_to_the_same_bytes(tmp_path):
    whole = zoo_count(tmp_path / "whole", "off")
    assert whole.wait(300) == 0
    killed = zoo_count(tmp_path / "resumed", tmp_path / "cache", start_new_session=True)
    done = 0
    for line in killed.stderr:  # kill -9 the whole run once three models are in
        done += line.startswith("[")
        if done == 3:
            os.killpg(killed.pid, signal.SIGKILL)
            break
    killed.wait(60)
    assert not (tmp_path / "resumed" / "counts.csv").exists()  # it died before writing
    again = zoo_count(tmp_path / "resumed", tmp_path / "cache")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0
    assert re.search(r"^[34] of 8 architectures from the cache", err, re.M), err
    for name in counts.STAGE.tables:
        file = TABLES[name].file
        assert (tmp_path / "resumed" / file).read_bytes() == (tmp_path / "whole" / file).read_bytes()


@pytest.fixture(scope="module")
def dask_cluster():
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


def test_a_dask_cluster_writes_what_a_local_run_writes(tmp_path, dask_cluster):
    models = select(SWEEP[:4])
    counts.run(models, tmp_path / "local", workers=2, cache=Cache(None), log=io.StringIO())
    counts.run(models, tmp_path / "dask", scheduler=dask_cluster, cache=Cache(None),
               log=io.StringIO())
    for name in counts.STAGE.tables:
        file = TABLES[name].file
        assert (tmp_path / "dask" / file).read_bytes() == (tmp_path / "local" / file).read_bytes()


def test_planted_failures_on_dask_too(tmp_path, dask_cluster):
    summary = stage.run(planted.STAGE, entries(["alpha", "raises", "exits"]), tmp_path,
                        scheduler=dask_cluster, timeout=30, cache=Cache(None), log=io.StringIO())
    assert summary["failed"] == 2
    failures = tables.read(tmp_path, "failures.csv").set_index("arch")["error"].to_dict()
    assert failures == {"exits": "killed: the worker process exited with status 3",
                        "raises": "ValueError: planted failure"}


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "zoo", "count", "torchvision:alexnet", "--data",
                           str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no Dask scheduler answers there" in proc.stderr
