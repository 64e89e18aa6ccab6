"""The counts stage end to end on a few small models: rows, failures, determinism, accuracy."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from torchvision.models import get_model_weights

from zoo.catalogue import reference
from zoo.catalogue.entries import Entry, UnknownModel, select
from zoo.stages import counts
from zoo.store import tables
from zoo.store.schema import TABLES

SMALL = [Entry("torchvision", "mobilenet_v2", "IMAGENET1K_V1", 224),
         Entry("timm", "resnet18", "a1_in1k", 224)]
BROKEN = Entry("torchvision", "no_such_builder", "IMAGENET1K_V1", 224)
TIMM_TABLE = reference.path(reference.TIMM_RESULTS)  # the kept copy, checked by test_reference.py


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    log = out / "log.txt"
    with open(log, "w") as fh:
        summary = counts.run(SMALL[:1] + [BROKEN] + SMALL[1:], out, str(TIMM_TABLE), workers=1,
                             log=fh)
    return out, summary, log.read_text()


def test_failing_model_is_recorded_and_run_goes_on(run_dir):
    out, summary, log = run_dir
    assert summary == {**summary, "models": 3, "counted": 2, "failed": 1}
    failures = pd.read_csv(out / "failures.csv")
    assert failures["arch"].tolist() == ["no_such_builder"]
    assert "no_such_builder" in failures["error"][0] or "Unknown model" in failures["error"][0]
    assert sorted(pd.read_csv(out / "counts.csv")["arch"]) == ["mobilenet_v2", "resnet18"]


def test_progress_and_one_line_summary(run_dir):
    _, _, log = run_dir
    lines = log.strip().splitlines()
    assert [line[:6] for line in lines[:3]] == ["[1/3] ", "[2/3] ", "[3/3] "]
    assert any(line[6:].startswith("torchvision mobilenet_v2 (IMAGENET1K_V1) @224: 0.3")
               for line in lines[:3])
    # largest first, from the committed counts; the unknown model (no count yet) comes last
    assert "resnet18" in lines[0] and "no_such_builder" in lines[2]
    assert "0 failed so far" in lines[1] and "1 failed so far" in lines[2]
    assert lines[-2].startswith("counted 2 of 3 models in ") and "1 failed" in lines[-2]
    # then the most memory one model's worker held, and which (resnet18's real fvcore forward)
    assert re.fullmatch(r"largest process: \d+\.\d\d GiB resident at its peak, for \S+ \S+ @\d+",
                        lines[-1])


def test_rows_hold_published_figures(run_dir):
    out, _, _ = run_dir
    df = pd.read_csv(out / "counts.csv").set_index("arch")
    meta = get_model_weights("mobilenet_v2")["IMAGENET1K_V1"].meta
    mnv2 = df.loc["mobilenet_v2"]
    assert mnv2["params"] == meta["num_params"]
    assert mnv2["top1"] == meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert "MobileNet_V2_Weights.IMAGENET1K_V1" in mnv2["acc_source"]
    # fwd + bwd of a depthwise-heavy net is about 3x forward FLOPs (2 FLOPs per MAC)
    assert 2.8 <= mnv2["gflops_train"] / (2 * mnv2["gmacs"]) <= 3.05
    # thop, fvcore: the reference plus BatchNorm/pooling work (by hand
    # for timm's mobilenetv2_100: 0.301 reference, 0.314 fvcore, 0.327 thop)
    assert mnv2["gmacs"] < mnv2["gmacs_fvcore"] < mnv2["gmacs_thop"] < 1.1 * mnv2["gmacs"]
    assert mnv2["gmacs_torch"] == mnv2["gmacs"]
    r18 = df.loc["resnet18"]
    table = pd.read_csv(TIMM_TABLE)
    pub = table[(table.model == "resnet18.a1_in1k") & (table.img_size == 224)].iloc[0]
    assert (r18["top1"], r18["top5"]) == (pub["top1"], pub["top5"])
    assert r18["params"] == 11_689_512
    assert "aa4b5850" in r18["acc_source"]


def test_breakdowns_add_up(run_dir):
    out, _, _ = run_dir
    df = pd.read_csv(out / "counts.csv").set_index("arch")
    ops = pd.read_csv(out / "ops.csv")
    for counter, column in [("reference", "gmacs"), ("fvcore", "gmacs_fvcore"),
                            ("torch", "gmacs_torch"), ("thop", "gmacs_thop")]:
        total = ops[(ops.arch == "mobilenet_v2") & (ops.counter == counter)]["gmacs"].sum()
        assert total == pytest.approx(df.loc["mobilenet_v2", column], rel=1e-9)
    layers = tables.read(out, "layers.csv")
    mine = layers[layers.arch == "mobilenet_v2"]
    assert mine["gmacs"].sum() == pytest.approx(df.loc["mobilenet_v2", "gmacs"], rel=1e-9)
    assert mine["params"].sum() == df.loc["mobilenet_v2", "params"]
    notes = pd.read_csv(out / "counter-notes.csv")
    fv = notes[(notes.arch == "mobilenet_v2") & (notes.counter == "fvcore")]
    assert "hardtanh" in fv["note"].iloc[0]  # ReLU6: an op fvcore does not handle, kept


def test_same_model_twice_gives_identical_rows(run_dir, tmp_path):
    out, _, _ = run_dir
    counts.run(SMALL[:1], tmp_path, str(TIMM_TABLE), workers=1, log=open("/dev/null", "w"))
    first = (out / "counts.csv").read_text().splitlines()
    again = (tmp_path / "counts.csv").read_text().splitlines()
    assert again[0] == first[0]
    assert again[1] == next(line for line in first if ",mobilenet_v2," in line)


def test_partial_run_replaces_only_its_rows(run_dir, tmp_path):
    out, _, _ = run_dir
    for name in ("counts.csv", "ops.csv", "layers.csv", "counter-notes.csv", "failures.csv"):
        file = TABLES[name].file
        (tmp_path / file).write_bytes((out / file).read_bytes())
    counts.run(SMALL[:1], tmp_path, str(TIMM_TABLE), workers=1, log=open("/dev/null", "w"))
    assert (tmp_path / "counts.csv").read_text() == (out / "counts.csv").read_text()
    assert (tmp_path / "failures.csv").read_text() == (out / "failures.csv").read_text()


@pytest.mark.parametrize("source, says", [
    ("/nonexistent/results-imagenet.csv", "cannot read it"),
    ("README.md", "missing column 'model'"),
    ("bad-accuracy", "column 'top1'"),
])
def test_a_named_accuracy_source_must_be_valid(run_dir, tmp_path, source, says):
    """A --timm-results the user names is checked before anything is measured: exit 2, one line,
    and the data folder is left as it was (a bad accuracy value once blanked existing rows)."""
    out, _, _ = run_dir
    if source == "bad-accuracy":
        lines = TIMM_TABLE.read_text().splitlines(keepends=True)
        i = next(i for i, line in enumerate(lines) if line.startswith("resnet18.a1_in1k,224,"))
        fields = lines[i].split(",")
        lines[i] = ",".join(fields[:2] + ["abc"] + fields[3:])
        source = str(tmp_path / "results.csv")
        Path(source).write_text("".join(lines))
    data = tmp_path / "data"
    data.mkdir()
    (data / "counts.csv").write_text((out / "counts.csv").read_text())
    proc = subprocess.run([sys.executable, "-m", "zoo", "count", "timm:resnet18.a1_in1k", "--data",
                           str(data), "--timm-results", source], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    assert (data / "counts.csv").read_text() == (out / "counts.csv").read_text()
    assert sorted(p.name for p in data.iterdir()) == ["counts.csv"]


def test_parallel_run_equals_serial_run(run_dir, tmp_path):
    out, _, _ = run_dir
    counts.run(SMALL, tmp_path, str(TIMM_TABLE), workers=2, log=open("/dev/null", "w"))
    assert (tmp_path / "counts.csv").read_text() == (out / "counts.csv").read_text()


def test_unknown_model_exits_non_zero_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "zoo", "count", "resnet5O", "--data",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "resnet50" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_selectors():
    # a glob matches names, not substrings: wide_resnet50_2 and resnet101 are not resnet5*
    assert sorted((e.library, e.name) for e in select(["resnet5*"])) == [
        ("timm", "resnet50.a1_in1k"), ("timm", "resnet50.tv_in1k"), ("timm", "resnet50d.ra2_in1k"),
        ("torchvision", "resnet50.IMAGENET1K_V1"), ("torchvision", "resnet50.IMAGENET1K_V2")]
    assert [e.name for e in select(["timm:resnet50"])] == ["resnet50.a1_in1k", "resnet50.tv_in1k"]
    assert [e.key for e in select(["resnet50.IMAGENET1K_V2@224"])] == [
        ("torchvision", "resnet50", "IMAGENET1K_V2", 224)]
    # selectors overlap: each model once
    assert len(select(["resnet50", "torchvision:resnet50", "resnet5*"])) == 5
    # the survey's networks (arXiv:1605.07678, figure 1), every weight of each
    survey = {e.arch for e in select(["survey"])}
    assert survey == {"alexnet", "vgg16", "vgg19", "vgg16_bn", "vgg19_bn", "googlenet",
                      "inception_v3", "inception_v4", "resnet18", "resnet34", "resnet50",
                      "resnet101", "resnet152", "densenet121"}
    assert [e.name for e in select(["bench"])] == [
        "convnext_tiny.IMAGENET1K_V1", "mobilenet_v2.IMAGENET1K_V1", "resnet50.IMAGENET1K_V1",
        "vgg16.IMAGENET1K_V1", "vit_b_16.IMAGENET1K_V1"]
    with pytest.raises(UnknownModel, match="resnet50"):
        select(["resnet5O"])


def test_weights_of_one_architecture_share_counts_not_accuracy(tmp_path):
    pair = [Entry("torchvision", "mobilenet_v2", w, 224) for w in ("IMAGENET1K_V1", "IMAGENET1K_V2")]
    summary = counts.run(pair, tmp_path, str(TIMM_TABLE), workers=1, log=open("/dev/null", "w"))
    assert summary["counted"] == 2
    df = pd.read_csv(tmp_path / "counts.csv").set_index("weights")
    for w in ("IMAGENET1K_V1", "IMAGENET1K_V2"):
        meta = get_model_weights("mobilenet_v2")[w].meta
        assert df.loc[w, "top1"] == meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert w in df.loc[w, "acc_source"]
    assert df.loc["IMAGENET1K_V1", "gmacs"] == df.loc["IMAGENET1K_V2", "gmacs"]
    layers = tables.read(tmp_path, "layers.csv")
    assert (layers.weights == "IMAGENET1K_V2").sum() == (layers.weights == "IMAGENET1K_V1").sum() > 0


@pytest.mark.parametrize("name", ["timm:resnet18.a1_in1k", "timm:vit_small_patch16_224.augreg_in21k_ft_in1k",
                                  "torchvision:vit_b_32.IMAGENET1K_V1"])
def test_torch_counter_same_on_real_and_fake_cpu_tensors(name):
    """The torch counter runs small models on real tensors and large ones on fake tensors: both
    must see the same CPU kernels (fused attention included) and give the same count."""
    from zoo.measure.third_party import run_torch_cpu

    entry = select([name])[0]
    real, fake = run_torch_cpu(entry, gmacs=0.0), run_torch_cpu(entry, gmacs=None)
    assert real.macs == fake.macs and real.by_op == fake.by_op


def test_the_whole_catalogue_holds_every_architecture_tag_and_weight():
    """Against independent enumerations: timm's registry, timm's results table (every row, at its
    own image size), torchvision's weights."""
    import timm

    from zoo.catalogue.entries import torchvision_entries, whole_catalogue

    everything = select(["all"])
    assert everything == list(whole_catalogue())
    timm_keys = {(e.arch, e.weights, e.img_size) for e in everything if e.library == "timm"}
    assert {e.arch for e in everything if e.library == "timm"} == set(timm.list_models())
    results = pd.read_csv(TIMM_TABLE)
    published = {(m.partition(".")[0], m.partition(".")[2], s)
                 for m, s in zip(results["model"], results["img_size"])}
    assert published <= timm_keys
    defaults = {(a, timm.models.get_pretrained_cfg(a).tag or "",  # "": no pretrained weights
                 timm.models.get_pretrained_cfg(a).input_size[-1]) for a in timm.list_models()}
    assert defaults <= timm_keys and timm_keys == published | defaults
    assert {e.key for e in torchvision_entries()} <= {e.key for e in everything}
    # a name outside the default zoo is found in the catalogue
    assert [e.name for e in select(["timm:eva02_tiny_patch14_336.mim_in22k_ft_in1k"])] == [
        "eva02_tiny_patch14_336.mim_in22k_ft_in1k"]
