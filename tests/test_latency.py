"""The timing harness on a fake clock (runs, budget, skipped sizes, statistics), a real CPU run of
two small models through the stage, and the command's one-line answers to bad input."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from zoo.catalogue.entries import select
from zoo.measure import latency
from zoo.stages import latency as latency_stage
from zoo.store import tables
from zoo.store.cache import Cache

ROOT = Path(__file__).resolve().parents[1]
ZOO = str(Path(sys.executable).with_name("zoo"))


class FakeClock:
    """Time that passes only when a fake step runs: ``per_image`` seconds per sample, or the next
    of ``durations`` (cycled) per step."""

    def __init__(self, per_image=0.1, durations=None):
        self.now = 0.0
        self.per_image = per_image
        self.durations = durations
        self.steps = 0

    def __call__(self):
        return self.now

    def make_step(self, batch):
        def step():
            if self.durations:
                self.now += self.durations[self.steps % len(self.durations)]
            else:
                self.now += self.per_image * batch
            self.steps += 1
        return step


def test_the_sweep_keeps_to_its_budget_and_records_what_it_skipped():
    clock = FakeClock(per_image=0.125)  # exact in binary: the sums below are exact
    out = latency.sweep(clock.make_step, [1, 2, 4, 8, 16], threads=1, budget=5.0,
                        min_run_time=0.5, clock=clock)
    # By hand: batch 1 costs 2 warm-up steps + 1 block-size step + 4 timed steps of 0.125 s
    # (0.875 s); batch 2: 0.5 + 0.25 + 2 timed blocks of 0.25, and a third (MIN_BLOCKS) (2.375 s
    # so far); batch 4: one warm-up step is half a second, enough: 0.5 + 0.5 + 3 x 0.5 (4.875 s);
    # batch 8 would take about 1 + 1 + 3 x 1 = 5 s more, past 5 s: it and 16 are skipped.
    assert [t.batch for t in out] == [1, 2, 4, 8, 16]
    assert [t.status for t in out[:3]] == ["ok"] * 3
    assert all(t.status.startswith("skipped: ") and t.median is None for t in out[3:])
    assert [t.runs for t in out[:3]] == [4, 3, 3]
    assert [t.median for t in out[:3]] == [0.125, 0.25, 0.5]
    assert [t.per_second for t in out[:3]] == [8.0] * 3
    assert clock.now == 4.875 <= 5.0


def test_batch_one_runs_even_past_the_budget():
    clock = FakeClock(per_image=3.0)
    out = latency.sweep(clock.make_step, [1, 2], threads=1, budget=1.0, min_run_time=0.5,
                        clock=clock)
    # one block, and no time left for more: kept, and flagged
    assert out[0].status == "few runs" and out[0].median == pytest.approx(3.0) and out[0].runs == 1
    assert out[1].status.startswith("skipped: ")


def test_statistics_by_hand():
    # numpy's linear interpolation: q1 = 2, q3 = 4, p90 at position 3.6 = 4 + 0.6 x 96
    median, p90, iqr = latency.stats([1, 2, 3, 4, 100])
    assert (median, iqr) == (3, 2)
    assert p90 == pytest.approx(61.6)


def test_a_noisy_batch_is_measured_again_and_kept_with_a_flag():
    steady = FakeClock(durations=[0.1])
    assert latency.time_one(steady.make_step(1), threads=1, min_run_time=0.5,
                            clock=steady).status == "ok"
    noisy = FakeClock(durations=[0.1, 0.3])
    t = latency.time_one(noisy.make_step(1), threads=1, min_run_time=0.5, clock=noisy)
    assert t.status == "noisy"
    assert t.iqr > latency.NOISE * t.median
    # two measurements of at least 0.5 s each, not one
    assert noisy.now >= 2 * 0.5


def test_two_small_models_are_timed_into_well_formed_rows(tmp_path):
    entries = select(["timm:test_vit", "timm:test_efficientnet"])
    assert len(entries) == 2
    # the sweep on two threads, and batch 1 on one
    how = latency_stage.settings([1, 2], budget=60.0, min_run_time=0.05, threads=2)
    summary = latency_stage.run(entries, tmp_path, how=how, cache=Cache(None), timeout=300)
    assert summary["failed"] == 0
    rows = tables.read(tmp_path, "latency.csv")
    assert len(rows) == 2 * 3  # per model: batch 1 and 2 on two threads, batch 1 on one
    for col in ["device", "device_name", "threads", "precision", "channels_last",
                "infer_batch_size", "infer_img_size", "infer_step_time", "infer_step_time_p90",
                "infer_step_time_iqr", "infer_runs", "infer_samples_per_sec", "status",
                "zoo_version", "torch_version", "torchvision_version", "timm_version"]:
        assert rows[col].notna().all() and (rows[col].astype(str) != "").all(), col
    assert set(rows.device) == {"cpu"} and set(rows.precision) == {"fp32"}
    assert sorted(zip(rows.threads, rows.infer_batch_size))[:3] == [(1, 1), (1, 1), (2, 1)]
    for r in rows.itertuples():
        assert r.infer_img_size == 160  # timm's test models take 160 x 160
        assert r.infer_step_time_p90 >= r.infer_step_time > 0
        # images per second is the batch over the median step time (both as stored)
        assert math.isclose(r.infer_samples_per_sec,
                            r.infer_batch_size / (r.infer_step_time / 1e3), rel_tol=1e-3)


@pytest.mark.parametrize("args, says", [
    (["latency", "resnet18", "--batch", "0"], "--batch '0': each batch size must be between"),
    (["latency", "resnet18", "--batch", "one"], "--batch 'one': expected batch sizes"),
    (["latency", "resnet18", "--device", "tpu"], "--device 'tpu': choose cpu or cuda"),
    (["latency", "resnet18", "--device", "cuda"], "--device cuda: no CUDA device"),
    (["latency", "resnet18", "--threads", "999"], "--threads 999: this machine lets"),
    (["latency", "resnet18", "--precision", "int8"], "--precision 'int8': choose from fp32, bf16"),
    (["latency", "resnet18", "--budget", "-1"], "--budget -1: must be a positive"),
    (["time", "resnet18", "--batch", "1,x"], "--batch '1,x': expected batch sizes"),
    (["latency", "no_such_model"], "no_such_model"),
])
def test_bad_timing_input_gets_one_line_and_exit_2(args, says, tmp_path):
    if args[-1] == "cuda":
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    r = subprocess.run([ZOO, *args, *(["--data", str(tmp_path)] if args[0] == "time" else [])],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("zoo")]
    assert len(lines) == 1 and says in lines[0], r.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def _rows(gmacs, ms, arch=None):
    n = len(gmacs)
    return pd.DataFrame({"library": ["timm"] * n, "arch": arch or [f"m{i}" for i in range(n)],
                         "weights": ["w"] * n, "img_size": [224] * n, "gmacs": gmacs,
                         "ms_per_image_b1": ms, "model": [f"m{i}.w" for i in range(n)]})


def test_the_time_fit_by_hand():
    from zoo.report import timing

    # ms = 2 x GMACs^0.5 exactly, then one model 30% slow: by hand the others stay within 10%
    exact = timing.fit(_rows([1.0, 4.0, 16.0, 64.0], [2.0, 4.0, 8.0, 16.0]))
    assert exact["b"] == pytest.approx(0.5) and 10 ** exact["a"] == pytest.approx(2.0)
    assert exact["r2"] == pytest.approx(1.0) and exact["within"] == 1.0
    off = timing.fit(_rows([1.0, 4.0, 16.0, 64.0, 256.0], [2.0, 4.0, 8.0, 16.0, 32.0 * 1.3]))
    assert off["r2"] < 1.0 and off["within"] < 1.0
    assert timing.fit(_rows([1.0, 2.0], [1.0, 2.0])) is None  # too few models to fit


def test_rank_correlation_is_spearmans():
    from zoo.report import timing

    here = _rows([1.0] * 4, [1.0, 2.0, 4.0, 8.0], arch=["a", "b", "c", "d"])  # a fastest
    same = pd.DataFrame({"model": ["a", "b", "c", "d"], "infer_img_size": [224] * 4,
                         "infer_batch_size": [1] * 4, "infer_samples_per_sec": [40, 30, 20, 10]})
    assert timing.rank_correlation(here, same)["rho"] == pytest.approx(1.0)
    flipped = same.assign(infer_samples_per_sec=[10, 20, 30, 40])
    assert timing.rank_correlation(here, flipped)["rho"] == pytest.approx(-1.0)
    # by hand: ranks (4,3,2,1) against (4,3,1,2): d^2 = 0+0+1+1, rho = 1 - 6*2/(4*15) = 0.8
    swapped = same.assign(infer_samples_per_sec=[40, 30, 10, 20])
    assert timing.rank_correlation(here, swapped)["rho"] == pytest.approx(0.8)


@pytest.mark.parametrize("script", ["gpu-check", "gpu-latency"])
def test_the_gpu_scripts_models_are_in_the_default_zoo(script):
    """The GPU machine has neither pandas nor the whole catalogue's listing: every model a GPU
    script names must be found in the default zoo, exactly once."""
    import ast

    from zoo.catalogue.entries import default_zoo

    tree = ast.parse((ROOT / "scripts" / script).read_text())
    models = next(ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MODELS")
    # gpu-check names (library, arch, weights, image size), as it has nothing of zoo's
    models = [m if isinstance(m, str) else f"{m[0]}:{m[1]}.{m[2]}" for m in models]
    found = select(models, zoo=default_zoo())
    assert len(found) == len(models) == len(set(models))


def test_a_gpu_timing_run_replaces_only_its_own_card_and_precision(tmp_path):
    """Two runs on one card, or runs on two cards, share data/latency-gpu.csv: a run's rows
    replace those of the same model, card and precision, and no others."""
    import csv
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("gpu_latency", str(ROOT / "scripts" / "gpu-latency"))
    spec = importlib.util.spec_from_loader("gpu_latency", loader)
    script = importlib.util.module_from_spec(spec)
    loader.exec_module(script)
    key = {"library": "torchvision", "arch": "resnet18", "weights": "IMAGENET1K_V1", "img_size": 224}

    def row(card, precision, ms):
        return {**key, "device_name": card, "precision": precision, "infer_batch_size": 1,
                "infer_step_time": ms, "status": "ok"}

    out = tmp_path / "latency-gpu.csv"
    script.write([row("H200", "fp32", 1.5), row("H200", "bf16", 2.5), row("H100", "fp32", 3.5)], out)
    script.write([row("H200", "fp32", 9.5)], out)
    with open(out, newline="") as f:
        got = sorted((r["device_name"], r["precision"], r["infer_step_time"])
                     for r in csv.DictReader(f))
    assert got == [("H100", "fp32", "3.5"), ("H200", "bf16", "2.5"), ("H200", "fp32", "9.5")]
