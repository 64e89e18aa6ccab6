"""The data folder keeps every row: validated reads, locked merges, commits that finish or never
start, failures that never remove a good row. Each test fails on a store without that property."""

import gzip
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from zoo.errors import DataError, UsageError
from zoo.store import tables
from zoo.store.schema import KEY, TABLES

ROOT = Path(__file__).resolve().parents[1]


def counts_row(arch, gmacs=1.0, **extra):
    return {"library": "timm", "arch": arch, "weights": "w", "img_size": 224, "family": "other",
            "params": 10, "gmacs": gmacs, **extra}


def model_rows(arch):
    key = {"library": "timm", "arch": arch, "weights": "w", "img_size": 224}
    return {
        "counts.csv": (pd.DataFrame([counts_row(arch)]), {tuple(key.values())}),
        "ops.csv": (pd.DataFrame([{**key, "counter": "reference", "op": "conv", "category": "conv",
                                   "gmacs": 1.0}]), {tuple(key.values())}),
        "layers.csv": (pd.DataFrame([{**key, "module": "conv", "type": "Conv2d",
                                      "output_shape": "1x8x8x8", "params": 10, "gmacs": 1.0}]),
                       {tuple(key.values())}),
    }


def _writer(folder, worker, n):
    for i in range(n):
        tables.update(folder, model_rows(f"m{worker}_{i}"))


def test_concurrent_writers_keep_every_row(tmp_path):
    """Four processes merging into one folder at once: the last writer must not win."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 8)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    for name in ("counts.csv", "ops.csv", "layers.csv"):
        assert len(tables.read(tmp_path, name)) == 32, name


def test_a_killed_commit_is_finished_by_the_next_reader(tmp_path, monkeypatch):
    tables.update(tmp_path, model_rows("a"))
    # the run dies right after its journal is written, before any rename
    write_journal = tables._write_journal

    def then_die(*args):
        write_journal(*args)
        raise SystemExit(9)

    monkeypatch.setattr(tables, "_write_journal", then_die)
    with pytest.raises(SystemExit):
        tables.update(tmp_path, model_rows("b"))
    monkeypatch.undo()
    assert (tmp_path / tables.JOURNAL).exists()
    assert set(pd.read_csv(tmp_path / "counts.csv")["arch"]) == {"a"}  # not yet committed
    (tmp_path / ".layers.csv.x1y2z3w4.tmp").write_text("half a file")  # a temp file no journal names
    (tmp_path / ".counts.csv.swp").write_text("an editor's file")  # not ours: kept
    with tables.locked(tmp_path):
        pass
    for name in ("counts.csv", "ops.csv", "layers.csv"):
        assert set(tables.read(tmp_path, name)["arch"]) == {"a", "b"}, name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".counts.csv.swp", ".zoo.lock", "counts.csv", "layers.csv.gz", "ops.csv"]


def test_site_refuses_tables_that_disagree(tmp_path):
    tables.update(tmp_path, model_rows("a"))
    tables.update(tmp_path, {"counts.csv": model_rows("b")["counts.csv"]})  # b: no ops, no layers
    proc = subprocess.run([sys.executable, "-m", "zoo", "site", "--data", str(tmp_path),
                           "--no-build"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "have no rows in ops.csv" in proc.stderr and "timm:b.w@224" in proc.stderr


def test_a_failed_recount_keeps_the_good_row(tmp_path):
    from zoo.catalogue.entries import Entry
    from zoo.stages import counts

    good = Entry("torchvision", "squeezenet1_1", "IMAGENET1K_V1", 224)
    counts.run([good], tmp_path, workers=1, log=open(os.devnull, "w"))
    before = {n: (tmp_path / n).read_bytes() for n in ("counts.csv", "ops.csv", "layers.csv.gz")}
    real = counts.count_model
    try:
        counts.count_model = lambda *a: (_ for _ in ()).throw(ValueError("bad accuracy value"))
        summary = counts.run([good], tmp_path, workers=1, log=open(os.devnull, "w"))
    finally:
        counts.count_model = real
    assert summary["failed"] == 1
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    failures = tables.read(tmp_path, "failures.csv")
    assert failures[KEY].values.tolist() == [list(good.key)]
    assert failures["error"][0] == "ValueError: bad accuracy value"
    counts.run([good], tmp_path, workers=1, log=open(os.devnull, "w"))  # it succeeds again
    assert tables.read(tmp_path, "failures.csv").empty


def _with_field(raw: bytes, line: int, field: int, value: bytes) -> bytes:
    lines = raw.split(b"\n")
    cells = lines[line - 1].split(b",")
    cells[field] = value
    lines[line - 1] = b",".join(cells)
    return b"\n".join(lines)


@pytest.mark.parametrize("damage, says", [
    (lambda b: b[:-40], "line 4: cut off"),  # truncated inside the last row
    (lambda b: b[:b.index(b"\n", b.index(b"\n") + 1)] + b",1,2,3" + b[b.index(b"\n", b.index(b"\n") + 1):],
     "line 2: 28 fields, the header has 25"),  # a garbled row
    (lambda b: _with_field(b, 2, 6, b"17.x6"), "line 2: column 'gmacs'"),
    (lambda b: b[:200] + bytes(range(256)) + b[200:], "binary content"),
    (lambda b: b.replace(b"family", b"famly", 1), "line 1: unknown column 'famly'"),
    (lambda b: b + b.splitlines(keepends=True)[1], "line 5: the key"),
    (lambda b: b.replace(b"fvcore_version\n", b"fvcore_version,fvcore_version\n", 1),
     "line 1: column 'fvcore_version' appears twice"),
    (lambda b: b[:-1] + b',"a cell\nnever closed\n', "line 4: unexpected end of data"),
])
def test_a_bad_table_is_refused_with_its_file_and_line(tmp_path, damage, says):
    text = (ROOT / "data" / "counts.csv").read_bytes()
    lines = text.splitlines(keepends=True)
    (tmp_path / "counts.csv").write_bytes(damage(b"".join(lines[:4])))
    before = (tmp_path / "counts.csv").read_bytes()
    with pytest.raises(DataError, match=says):
        tables.read(tmp_path, "counts.csv")
    # the command: one line, exit 2, nothing measured or written
    proc = subprocess.run([sys.executable, "-m", "zoo", "count", "torchvision:squeezenet1_1",
                           "--data", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert str(tmp_path / "counts.csv") in proc.stderr and says.split(":")[0] in proc.stderr
    assert (tmp_path / "counts.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".zoo.lock", "counts.csv"]


@pytest.mark.parametrize("make", ["file", "under-a-file"])
def test_a_data_folder_that_cannot_be_written_is_refused_first(tmp_path, make):
    target = tmp_path / "data"
    target.write_text("not a folder")
    if make == "under-a-file":
        target = target / "sub"
    with pytest.raises(UsageError, match="--data"):
        tables.check_folder(target)
    proc = subprocess.run([sys.executable, "-m", "zoo", "predict", "torchvision:squeezenet1_1",
                           "--data", str(target)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--data" in proc.stderr


def test_a_read_only_folder_is_read_without_its_lock(tmp_path, monkeypatch):
    tables.update(tmp_path, model_rows("a"))
    (tmp_path / tables.LOCK).unlink()
    monkeypatch.setattr(tables, "_can_lock", lambda folder: False)  # as on a read-only mount
    with tables.locked(tmp_path):
        assert tables.read(tmp_path, "counts.csv")["arch"].tolist() == ["a"]
    (tmp_path / tables.JOURNAL).write_text('{"renames": []}')
    with pytest.raises(DataError, match="half-done commit"):
        with tables.locked(tmp_path):
            pass


def test_a_model_without_weights_keeps_its_key(tmp_path):
    """timm architectures with no pretrained weights have an empty ``weights``: a rerun must
    replace their rows, not add a second copy."""
    rows = model_rows("untrained")
    for name, (frame, _) in rows.items():
        frame["weights"] = ""
    replaced = {("timm", "untrained", "", 224)}
    for _ in range(2):
        tables.update(tmp_path, {n: (f, replaced) for n, (f, _) in rows.items()})
    counts = tables.read(tmp_path, "counts.csv")
    assert counts[KEY].values.tolist() == [["timm", "untrained", "", 224]]


def test_a_table_written_before_it_was_gzipped_is_read_then_replaced(tmp_path):
    tables.update(tmp_path, model_rows("a"))
    plain = gzip.decompress((tmp_path / "layers.csv.gz").read_bytes())
    (tmp_path / "layers.csv.gz").unlink()
    (tmp_path / "layers.csv").write_bytes(plain)  # as zoo wrote it before
    assert tables.read(tmp_path, "layers.csv")["arch"].tolist() == ["a"]
    tables.update(tmp_path, model_rows("b"))
    assert not (tmp_path / "layers.csv").exists()
    assert tables.read(tmp_path, "layers.csv")["arch"].tolist() == ["a", "b"]


def test_figures_are_stored_at_what_they_mean():
    """Bytes as integers and fitted ratios to 4 significant digits: the same bytes on any machine
    (a least-squares float once differed in its last digits between machines)."""
    fit = TABLES["memory-fit.csv"]
    row = {"library": "timm", "arch": "a", "weights": "w", "img_size": 224, "mode": "training",
           "precision": "fp32", "optimizer": "sgd", "model_bytes": 384734172.1400778,
           "per_sample_bytes": 4831033.2421512725, "worst_residual": 0.006470744932372029,
           "parameter_bytes": 1.0, "buffer_bytes": 0, "gradient_bytes": 0, "optimizer_bytes": 0,
           "activation_bytes_per_sample": 0.5, "temporaries_max_bytes_b32": 7,
           "max_batch_24gb": 3}
    text = tables.conform(pd.DataFrame([row]), fit).to_csv(index=False)
    assert text.splitlines()[1] == ("timm,a,w,224,training,fp32,sgd,384734172,4831033,0.006471,"
                                    "1,0,0,0,0,7,3")


def test_memory_tables_of_an_older_zoo_read_with_amp_labelled(tmp_path):
    """Before the allocator's replay, ``fp16``/``bf16`` meant AMP and ``max_batch_<N>gb`` a fixed
    headroom on N GiB: such a file reads with ``amp-fp16``/``amp-bf16`` and without those
    columns; a file of this zoo reads as written."""
    head = ("library,arch,weights,img_size,mode,precision,optimizer,model_bytes,per_sample_bytes,"
            "worst_residual,parameter_bytes,buffer_bytes,gradient_bytes,optimizer_bytes,"
            "activation_bytes_per_sample,temporaries_max_bytes_b32,{}\n")
    row = "timm,a,w,224,training,{},adamw,10,2,0.01,1,0,1,2,1,3,{}\n"
    (tmp_path / "memory-fit.csv").write_text(head.format("max_batch_24gb") + row.format("bf16", 7)
                                             + row.format("fp32", 5))
    old = tables.read(tmp_path, "memory-fit.csv")
    assert sorted(old["precision"]) == ["amp-bf16", "fp32"]
    assert "max_batch_24gb" not in old.columns
    (tmp_path / "memory-fit.csv").write_text(head.format("max_batch_h100") + row.format("fp16", 7))
    new = tables.read(tmp_path, "memory-fit.csv")
    assert new["precision"].tolist() == ["fp16"] and new["max_batch_h100"].tolist() == [7]
