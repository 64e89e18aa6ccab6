"""The GPU check's two halves: the measuring one runs with torch, torchvision, timm and numpy
alone (on a machine with nothing of zoo's); the comparing one puts zoo's prediction beside each
measured row."""

import ast
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from zoo.catalogue.build import build
from zoo.catalogue.entries import Entry, select
from zoo.measure import memory
from zoo.store import tables

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "gpu-check"
ALLOWED = {"torch", "torchvision", "timm", "numpy"}


def _check_module():
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("gpu_check", str(CHECK))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_measuring_half_imports_only_torch_its_kin_and_the_standard_library():
    tree = ast.parse(CHECK.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    outside = imported - ALLOWED - set(sys.stdlib_module_names) - {"__future__"}
    assert not outside, outside
    assert "zoo" not in imported and "pandas" not in imported


def test_the_measured_configurations_are_the_zoo_s():
    check = _check_module()
    names = [f"{lib}:{arch}.{weights}" for lib, arch, weights, _ in check.MODELS]
    entries = select(names)
    assert sorted((e.library, e.arch, e.weights, e.img_size) for e in entries) == \
        sorted(tuple(m) for m in check.MODELS)
    assert {p for _, p, _ in check.CONFIGS} <= set(memory.PRECISIONS)
    assert set(check.FIT_MODELS) <= {m[1] for m in check.MODELS}


def test_a_bad_trace_request_gets_one_line_before_anything_runs():
    proc = subprocess.run([sys.executable, str(CHECK), "--trace", "resnet50:inference:fp8"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--trace" in proc.stderr


def test_without_a_gpu_the_check_says_so_in_one_line():
    proc = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no CUDA device" in proc.stderr


def test_the_comparing_half_puts_the_prediction_beside_each_measurement(tmp_path):
    entry = Entry("torchvision", "resnet18", "IMAGENET1K_V1", 224)
    card = {"device": "NVIDIA H100 80GB HBM3", "capability": "9.0",
            "cuda_total_bytes": 81106 << 20, "driver": "565.57.01", "nvidia_smi_total_mib": 81559,
            "context_start_bytes": 300 << 20, "context_end_bytes": 500 << 20}
    key = {"library": entry.library, "arch": entry.arch, "weights": entry.weights,
           "img_size": entry.img_size}
    # a second path to the same figures: the prediction made here, by hand
    pred = memory.predict(lambda: build(entry, "meta"), (3, 224, 224), "inference", "fp32")
    r = pred.replay(8, workspace=32 << 20)
    rows = pd.DataFrame([
        {**key, "mode": "inference", "precision": "fp32", "optimizer": None, "what": "peak",
         "batch": 8, "max_allocated_bytes": r.max_allocated,
         "max_reserved_bytes": 2 * r.max_reserved, "status": "ok", **card},
        {**key, "mode": "inference", "precision": "fp32", "optimizer": None,
         "what": "largest batch", "batch": 100_000, "status": "ok", **card}])
    tables.update(tmp_path, {"memory-measured.csv": (rows, {tuple(key.values())})})
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu-compare"), "--data",
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = tables.read(tmp_path, "memory-comparison.csv").set_index("what")
    assert out.loc["peak", "predicted_allocated_bytes"] == r.max_allocated
    assert out.loc["peak", "allocated_error"] == 0
    assert out.loc["peak", "reserved_error"] == pytest.approx(-0.5)
    capacity = (81106 << 20) - (500 << 20)
    assert out.loc["largest batch", "capacity_bytes"] == capacity
    assert out.loc["largest batch", "predicted_batch"] == \
        pred.largest_batch_replayed(capacity, workspace=32 << 20)
    assert "allocated: median |error| 0.0%" in proc.stdout


def test_the_comparing_half_without_a_measurement_says_so(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu-compare"), "--data",
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "run scripts/gpu-check on a CUDA machine first" in proc.stderr


def test_every_card_has_a_source_for_each_figure():
    from zoo.catalogue import cards

    assert len(cards.CARDS) >= 15 and len({c.slug for c in cards.CARDS}) == len(cards.CARDS)
    for c in cards.CARDS:
        assert c.memory_source and c.capability_source.startswith("https://"), c.name
        assert bool(c.cuda_total_mib) == c.cuda_total_source.startswith("https://"), c.name
        # what CUDA reports is what nvidia-smi shows less the driver's reserve (250-763 MiB in
        # the sources)
        assert 0 < c.memory_mib - c.cuda_total // 2**20 <= 800, c.name
        assert c.capability in {"7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"}
    # the figures: an 80 GB H100 shows 81,559 MiB, an H200 143,771 MiB
    assert cards.find("H100").memory_mib == 81559 and cards.find("H200").memory_mib == 143771
    # torch's default cuBLAS workspace: 32 MiB on Hopper only (torch 2.11)
    assert cards.find("H100").cublas_workspace == 32 << 20
    assert cards.find("A100 80GB").cublas_workspace == 4096 * 1024 * 2 + 16 * 1024 * 8


def test_a_largest_batch_search_stopped_by_its_budget_is_a_bracket_on_the_page():
    """A measured search that ran out of time is shown as what ran and what failed, and the
    prediction is judged against both: between them right, at or past the failure too high."""
    from zoo.report import pages

    def fit(batch, predicted, as_, failed):
        return {"library": "torchvision", "arch": f"m{batch}", "weights": "W", "img_size": 224,
                "mode": "training", "precision": "amp-bf16", "optimizer": "adamw",
                "what": "largest batch", "device": "NVIDIA H200", "batch": batch,
                "predicted_batch": predicted, "batch_measured_as": as_, "batch_failed": failed,
                "batch_error": predicted / batch - 1 if as_ == "exact" else None,
                "predicted_with": "zoo", "measured_with": None,
                **{f"{m}_{w}_bytes": None for m in ("measured", "predicted")
                   for w in ("allocated", "reserved")},
                "allocated_error": None, "reserved_error": None}
    comparison = pd.DataFrame([fit(100, 110, "exact", 101), fit(2128, 2127, "at least", 2143),
                               fit(2254, 2612, "at least", 2410), fit(27475, 48166, "at least", None),
                               fit(1619, 1635, "at least", 1667),
                               fit(3000, 2700, "at least", None)])
    counts = pd.DataFrame([{c: "v" for c in ("zoo_version", "torch_version",
                                                 "torchvision_version", "timm_version")}])
    text = pages.comparison_section(comparison, counts)
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()
             if line.startswith("| m")}
    assert "+10.0%" in lines["m100.W"]
    assert "2128 ran, 2143 failed" in lines["m2128.W"]
    assert "too low by 1 (0.047%)" in lines["m2128.W"]  # 1 / 2128
    assert "1619 ran, 1667 failed" in lines["m1619.W"] and "| within" in lines["m1619.W"]
    # 2612 against the 2409 that is the most that could run: 203 too many, 8.4%, by hand
    assert "too high by at least 203 (8.4%)" in lines["m2254.W"]
    assert "at least 27475" in lines["m27475.W"] and "not contradicted" in lines["m27475.W"]
    assert "too low by 300 (10%)" in lines["m3000.W"]


def test_the_latency_page_names_each_machine_s_own_torch():
    """CPU timings are this site's, a GPU's come from the machine that was lent, with its own
    torch: the page says which is which, and counts the GPU's budget-skipped batch sizes."""
    from zoo.report import pages

    def timing(device, name, torch_version, batch, status="ok"):
        return {"library": "torchvision", "arch": "resnet18", "weights": "W", "img_size": 224,
                "device": device, "device_name": name, "threads": 1, "precision": "fp32",
                "infer_batch_size": batch, "status": status, "torch_version": torch_version,
                "infer_step_time": 1.0, "power_w": None}
    latency = pd.DataFrame([timing("cpu", "AMD EPYC", "2.14.1", 1),
                            timing("cuda", "NVIDIA H200", "2.11.0+cu130", 1),
                            timing("cuda", "NVIDIA H200", "2.11.0+cu130", 2,
                                   "skipped: past the model's 9 s budget")])
    gpu = latency[latency["device"] == "cuda"]
    rows = pd.DataFrame([{"model": "resnet18.W", "device": "cpu", "device_name": "AMD EPYC",
                          "threads": 1, "precision": "fp32", "gmacs": 1.8, "ms_per_image_b1": 9.0,
                          "best_per_sec": 120.0, "best_batch": 8, "top1": 69.8}])
    counts = pd.DataFrame([{c: "v" for c in ("zoo_version", "torch_version",
                                             "torchvision_version", "timm_version")}])
    text = pages.latency_page(counts, rows, [], None, None, {"latency-vs-batch": {}}, latency,
                              "published.csv", gpu=gpu)
    assert "torch 2.14.1 on AMD EPYC; torch 2.11.0+cu130 on NVIDIA H200" in text
    assert "1 of 2 batch sizes passed their model's time budget" in text


def test_a_card_s_check_keeps_the_other_cards_rows(tmp_path):
    check = _check_module()
    out = tmp_path / "memory-measured.csv"
    check.write([{"device": "NVIDIA H100", "arch": "resnet50", "batch": 32},
                 {"device": "NVIDIA H200", "arch": "resnet50", "batch": 32}], out)
    kept = check.other_cards(out, "NVIDIA H200")
    assert [(r["device"], r["arch"]) for r in kept] == [("NVIDIA H100", "resnet50")]
    assert check.other_cards(tmp_path / "none.csv", "NVIDIA H200") == []
