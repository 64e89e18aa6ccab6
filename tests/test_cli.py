"""The command as a user meets it: one clear line and exit 2 for bad input, one line and exit 130
for Ctrl-C with no process left behind, a worker's death costing only its model."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zoo.catalogue.entries import Entry
from zoo.stages.run import each_model

ROOT = Path(__file__).resolve().parents[1]
ZOO = str(Path(sys.executable).with_name("zoo"))  # the console script, as a user runs it


def zoo(*args, cwd=ROOT, timeout=120):
    return subprocess.run([ZOO, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_a_dying_or_hanging_worker_costs_only_its_model():
    names = ["ok1", "raises", "exits", "killed", "hangs", "ok2", "ok3"]
    entries = [Entry("timm", n, "w", 224) for n in names]
    import planted

    out = {e.arch: (r, f) for _, e, r, f, _peak in each_model(entries, planted.job, "test", workers=2,
                                                       timeout=20)}
    assert sorted(out) == sorted(names)
    assert all(out[n][0]["arch"] == n and out[n][1] is None for n in ("ok1", "ok2", "ok3"))
    assert out["raises"][1]["error"] == "ValueError: planted failure"
    assert out["exits"][1]["error"] == "killed: the worker process exited with status 3"
    assert out["killed"][1]["error"].startswith("killed: the worker was ended by SIGKILL")
    assert out["hangs"][1]["error"] == "timeout: no result after 20s"


def test_a_worker_reports_each_models_peak_and_gives_its_memory_back():
    # one worker runs both, in order: a model that held 400 MiB, then a small one
    entries = [Entry("timm", n, "w", 224) for n in ("holds", "small")]
    import planted

    out = {e.arch: (r, peak) for _, e, r, f, peak in each_model(entries, planted.job, "test",
                                                                workers=1, in_process=False)}
    (held, held_peak), (small, small_peak) = out["holds"], out["small"]
    assert held["pid"] == small["pid"]
    # the kernel syncs each thread's resident-page count every 64 pages, so VmHWM may trail the
    # VmRSS the job read by a few hundred KiB per thread
    assert held_peak >= (held["held_mib"] - 4) * 2**20 and held["held_mib"] >= 400
    # the peak starts again with each model, and the freed heap went back to the system
    assert small_peak < held_peak - 300 * 2**20
    assert small["resident_mib"] < held["held_mib"] - 300


def test_a_worker_maps_large_blocks_even_after_a_giant_model():
    # glibc's default moves its mmap threshold up to a large block freed (one of 32 MiB at most),
    # so that after one giant model later models' blocks stay on the heap; workers fix it
    entries = [Entry("timm", n, "w", 224) for n in ("frees-big", "maps-16mib")]
    import planted

    out = {e.arch: r for _, e, r, f, _peak in each_model(entries, planted.job, "test", workers=1,
                                                         in_process=False)}
    assert out["frees-big"]["pid"] == out["maps-16mib"]["pid"]
    assert out["maps-16mib"]["own_mapping"] is True


def _processes_in_group(pgid):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(pid))
    return found


def _wait_until_gone(pgid, seconds):
    deadline = time.time() + seconds
    while _processes_in_group(pgid) and time.time() < deadline:
        time.sleep(0.2)
    return _processes_in_group(pgid)


def _as_in_a_terminal():
    # a command started from a terminal gets Ctrl-C; one started in the background of a script
    # inherits SIGINT ignored, and rightly ignores it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("after", [1.0, 6.0])  # while the workers start, and while they work
def test_ctrl_c_prints_one_line_exits_130_and_leaves_no_process(tmp_path, after):
    proc = subprocess.Popen([ZOO, "count", "survey", "--data", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_as_in_a_terminal)
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert [line for line in err.splitlines() if not line.startswith("[")] == ["zoo: interrupted"]
    assert _wait_until_gone(proc.pid, 10) == []
    assert not (tmp_path / "counts.csv").exists()


SIGINT_STORM = """
import os, signal, sys, threading, time
from zoo.catalogue.entries import Entry
from zoo.stages.run import each_model
import planted

signal.signal(signal.SIGINT, lambda *_: None)  # this process lives through the storm


def storm():  # Ctrl-C for the whole group every 10 ms, from before the workers start
    while True:
        os.killpg(0, signal.SIGINT)
        time.sleep(0.01)


threading.Thread(target=storm, daemon=True).start()
entries = [Entry("timm", f"ok{i}", "w", 224) for i in range(4)]
for _, entry, result, failure, _peak in each_model(entries, planted.job, "test", workers=2):
    print(entry.arch, "failed" if failure else "ok", flush=True)
"""


def test_workers_starting_up_never_take_the_terminals_ctrl_c():
    # a spawned worker spends seconds importing before it can ignore SIGINT; the signal sent to
    # the group in that time must neither kill it nor print its traceback
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run([sys.executable, "-c", SIGINT_STORM], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60, start_new_session=True,
                          preexec_fn=_as_in_a_terminal)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(proc.stdout.split("\n")) == ["", "ok0 ok", "ok1 ok", "ok2 ok", "ok3 ok"]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr


@pytest.mark.parametrize("after", [0.5, 6.0])
def test_killing_the_parent_ends_its_workers(tmp_path, after):
    proc = subprocess.Popen([ZOO, "count", "survey", "--data", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(after)
    proc.kill()
    proc.wait()
    assert _wait_until_gone(proc.pid, 20) == []


USER_MODELS = '''
import torch
from torch import nn

def good():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))

class Dict(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = good()
    def forward(self, x):
        return {"logits": self.net(x), "features": x}

class Tuple(Dict):
    def forward(self, x):
        return self.net(x), x

class TwoHeads(Dict):
    def forward(self, x):
        return {"a": self.net(x), "b": self.net(x)}

def raises():
    raise ValueError("no such config")

def none():
    return None

def dict_out():
    return Dict()

def tuple_out():
    return Tuple()

def two_heads():
    return TwoHeads()
'''


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("project")
    (folder / "mymodels.py").write_text(USER_MODELS)
    return folder


@pytest.mark.parametrize("args, says", [
    (["count", "mymodels:raises"], "mymodels:raises: the builder raised ValueError: no such config"),
    (["count", "mymodels:none"], "mymodels:none: the builder returned None, not a torch.nn.Module"),
    (["memory", "mymodels:two_heads"], "returns a dict of 2 tensors (a, b) and none is 'logits'"),
    (["predict", ":build"], "':build': expected package.module:function"),
    (["count", "nosuchmodule:build"], "cannot import 'nosuchmodule'"),
    (["memory", "mymodels:missing"], "mymodels has no function 'missing'"),
    (["memory", "mymodels:good", "--input", "5x32x32"], "the model rejects input 5x32x32"),
    (["count", "mymodels:good", "--input", "3xfoo"], "--input '3xfoo': expected a shape"),
])
def test_bad_user_models_get_one_line(user_dir, args, says):
    if "--input" not in args:
        args = [*args, "--input", "3x32x32"]
    proc = zoo(*args, cwd=user_dir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


@pytest.mark.parametrize("builder", ["good", "dict_out", "tuple_out"])
def test_user_models_are_counted_and_predicted_from_the_current_folder(user_dir, builder):
    proc = zoo("count", f"mymodels:{builder}", "--input", "3x32x32", cwd=user_dir)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.startswith("parameters"))
    # conv 3*8*9 + linear 8*10+10, by hand
    assert lines["parameters"].split()[0] == f"{3 * 8 * 9 + 8 * 10 + 10:,}"
    # conv 8*32*32 outputs x 27 MACs + linear 80, by hand
    gmacs = next(line for line in proc.stdout.splitlines() if line.startswith("GMACs (reference)"))
    assert float(gmacs.split()[2]) == pytest.approx((8 * 32 * 32 * 27 + 80) / 1e9, abs=5e-5)
    assert not (user_dir / "data").exists()  # printed, not written
    proc = zoo("predict", f"mymodels:{builder}", "--input", "3x32x32", cwd=user_dir)
    assert proc.returncode == 0, proc.stderr
    assert "training  fp32      adamw" in proc.stdout and ">=65536" in proc.stdout


@pytest.mark.parametrize("args, says", [
    (["--batch", "1000000000000"], "--batch 1000000000000: must be between 1 and 65,536"),
    (["--batch", "0"], "--batch 0: must be between 1"),
    (["--gpu", "0.0001GB"], "no larger than the 1024 MiB the driver and the CUDA context take"),
    (["--gpu", "1000000000GB"], "larger than any card"),
    (["--gpu", "lots"], "not a card of the table nor a size such as 24GB"),
    (["--gpu", "H1000"], "did you mean H100, H100 PCIe, H200?"),
    (["--precision", "fp16", "--mode", "training"], "modelled for inference"),
    (["--optimizer", "lion"], "--optimizer 'lion'"),
])
def test_out_of_range_memory_options_get_one_line(args, says):
    proc = zoo("memory", "resnet18", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_a_bare_architecture_takes_the_library_default_weights():
    from torchvision.models import get_model_weights

    proc = zoo("memory", "vit_b_16", "--batch", "1", "--mode", "inference")
    assert proc.returncode == 0, proc.stderr
    default = get_model_weights("vit_b_16").DEFAULT  # IMAGENET1K_V1, at 224 (not SWAG at 384)
    assert f"using torchvision:vit_b_16.{default.name} (the library's default)" in proc.stderr
    assert f"input 1x3x{default.transforms().crop_size[0]}x" in proc.stdout


def test_a_capped_largest_batch_says_it_is_a_cap(user_dir):
    proc = zoo("memory", "mymodels:good", "--input", "3x8x8", "--gpu", "9000GB", cwd=user_dir)
    assert proc.returncode == 0, proc.stderr
    assert "largest batch on 9000GB: >=65536 (the search stops there)" in proc.stdout


@pytest.mark.parametrize("card", [c.name for c in __import__("zoo.catalogue.cards").catalogue.cards.CARDS])
def test_every_card_of_the_table_is_a_gpu_name(card):
    from zoo.catalogue import cards

    assert cards.find(card).name == card
    assert cards.find(card.lower().replace(" ", "-")).name == card


def test_torch_error_log_goes_into_the_row_not_the_terminal(tmp_path, capfd, monkeypatch):
    """An op that fails in torch's fake-tensor machinery gets a 20-line traceback logged by it,
    which a user once read as a crash (MaxViT under the CPU's autocast lists). Here a planted AMP
    policy makes ResNet-18's convolutions multiply matrices that do not fit, under AMP only and
    through the machinery's own dispatch, in the stage's own process (one worker): the AMP rows
    fail, with the reason, and the terminal stays quiet."""
    import io

    from zoo import torch_private
    from zoo.catalogue.entries import select
    from zoo.stages import memory as memory_stage
    from zoo.store import tables

    def misfit(op, policy):
        def kernel(*args, **kwargs):
            return torch.mm(torch.ones(2, 3), torch.ones(2, 3))  # the meta kernel raises
        return kernel

    monkeypatch.setattr(torch_private, "CUDA_AUTOCAST", {"planted": ("conv2d",)})
    monkeypatch.setattr(torch_private, "_policy_kernel", misfit)
    monkeypatch.setitem(torch_private._DIRECT, torch.ops.aten.mm.default, False)

    memory_stage.run(select(["torchvision:resnet18"]), tmp_path, workers=1, log=io.StringIO())
    _, err = capfd.readouterr()
    assert "fake_tensor" not in err and "Traceback" not in err, err[:500]
    failures = tables.read(tmp_path, "memory-failures.csv")
    assert len(failures) == 1
    row = failures.iloc[0]
    assert row["stage"] == "memory-amp" and "must have same reduction dim" in row["error"]
    assert "Traceback" in row["traceback"]
    rows = tables.read(tmp_path, "memory.csv")
    assert set(rows["precision"]) == {"fp32", "fp16", "bf16"}  # the rest of the model's rows
