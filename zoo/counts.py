"""The counts stage: for each model, parameters, reference MACs, the three counters, training FLOPs
and published accuracy, into ``data/``:

- ``counts.csv``: one row per model (the product);
- ``ops.csv``: long format, MACs per (model, counter, op) with the op's category, for the site's
  "why counters differ";
- ``layers.csv``: the reference counter's layer table (leaf modules: output shape, params, MACs);
- ``counter-notes.csv``: what each counter could not count or why it failed;
- ``failures.csv``: models that could not be built or counted, with the error.

One model failing is recorded and the run goes on.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import pandas as pd

import zoo
from zoo.accuracy import AccuracyBook
from zoo.build import build, example_input, input_shape, param_count
from zoo.catalogue import KEY, Entry
from zoo.counters import COUNTERS, versions
from zoo.counting import count_forward, count_training_flops, op_category
from zoo.runner import largest_first, as_weights, by_architecture, each_model, error_line, progress
from zoo import tables

COUNT_COLUMNS = KEY + [
    "family", "params", "gmacs", "gmacs_thop", "gmacs_fvcore", "gmacs_torch", "gflops_train",
    "top1", "top5", "acc_source",
    "zoo_version", "torch_version", "torchvision_version", "timm_version", "thop_version",
    "fvcore_version",
]


def count_model(entry: Entry, book: AccuracyBook | None, lib_versions: dict) -> dict:
    """Every count of one model. Raises if the model cannot be built or the reference fails;
    a third-party counter's failure is kept in the result instead."""
    model = build(entry, "meta")
    ref = count_forward(model, example_input(entry))
    row = {"library": entry.library, "arch": entry.arch, "weights": entry.weights,
           "img_size": entry.img_size, "family": entry.family, "params": param_count(model),
           "gmacs": ref.macs / 1e9}
    key = dict(zip(KEY, entry.key))
    ops = [{**key, "counter": "reference", "op": op, "category": cat, "gmacs": m / 1e9}
           for op, cat, m in ref.rows()]
    notes = []
    for name, run in COUNTERS.items():
        try:
            res = run(entry, ref.macs / 1e9)
            row[f"gmacs_{name}"] = res.macs / 1e9
            ops += [{**key, "counter": name, "op": op, "category": op_category(op), "gmacs": m / 1e9}
                    for op, m in sorted(res.by_op.items())]
            if res.note:
                notes.append({**key, "counter": name, "status": "partial", "note": res.note})
        except Exception as exc:  # a counter that fails leaves its cell empty, with the reason
            row[f"gmacs_{name}"] = None
            notes.append({**key, "counter": name, "status": "failed", "note": error_line(exc)})
    try:
        # the reference's own model: the forward count left it unchanged (eval, on meta)
        row["gflops_train"] = count_training_flops(model, example_input(entry)) / 1e9
    except Exception as exc:
        row["gflops_train"] = None
        notes.append({**key, "counter": "reference-train", "status": "failed", "note": error_line(exc)})
    row.update(book.lookup(entry) if book else {"top1": None, "top5": None, "acc_source": ""})
    row.update({"zoo_version": zoo.__version__, **lib_versions})
    layers = [{**key, **layer, "gmacs": layer.pop("macs") / 1e9} for layer in ref.layers]
    return {"row": row, "ops": ops, "notes": notes, "layers": layers}


def print_model(entry: Entry, out=sys.stdout) -> None:
    """One model's counts, printed (your own model: nothing is written to data/)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = count_model(entry, None, {})
    row = result["row"]
    print(f"{entry.arch}  input 1x{'x'.join(map(str, input_shape(entry)))}", file=out)
    print(f"{'parameters':<22}{row['params']:>16,}", file=out)
    print(f"{'GMACs (reference)':<22}{row['gmacs']:>16.4f}   convolutions, matrix products and "
          "attention; norms, activations and pooling left out", file=out)
    for name in COUNTERS:
        value = row.get(f"gmacs_{name}")
        print(f"{'  GMACs, ' + name:<22}{'failed' if value is None else f'{value:.4f}':>16}", file=out)
    train = row.get("gflops_train")
    print(f"{'training GFLOPs':<22}{'failed' if train is None else f'{train:.4f}':>16}   "
          "forward + backward, batch 1", file=out)
    by_category: dict[str, float] = {}
    for op in result["ops"]:
        if op["counter"] == "reference":
            by_category[op["category"]] = by_category.get(op["category"], 0.0) + op["gmacs"]
    print("GMACs by category: " + ", ".join(f"{c} {g:.4f}" for c, g in sorted(
        by_category.items(), key=lambda kv: -kv[1])), file=out)
    for note in result["notes"]:
        print(f"note: {note['counter']}: {note['note']}", file=out)


def _count(entry: Entry, timm_results: str | None, lib_versions: dict) -> dict:
    return count_model(entry, _book(timm_results), lib_versions)


_BOOKS: dict = {}


def _book(timm_results: str | None) -> AccuracyBook:
    """One accuracy book per process and source (the timm table is read once)."""
    if timm_results not in _BOOKS:
        _BOOKS[timm_results] = AccuracyBook(timm_results)
    return _BOOKS[timm_results]


TABLES = ["counts.csv", "ops.csv", "layers.csv", "counter-notes.csv", "failures.csv"]


def run(entries: list[Entry], data_dir: Path | None = None, timm_results: str | None = None,
        workers: int | None = None, log=sys.stderr) -> dict:
    """Count ``entries`` (in ``workers`` processes, one per core by default) and merge them into
    the CSVs of ``data_dir``. Returns a summary.

    Checked before anything is measured: the folder can be written, its tables are valid, the
    accuracy source is valid (UsageError otherwise). A model that fails keeps the rows it had,
    with its failure recorded beside them in failures.csv."""
    data_dir = tables.check_folder(data_dir or tables.default_data())
    book = _book(timm_results)
    with tables.locked(data_dir):
        for name in TABLES:
            tables.read(data_dir, name)
    lib_versions = versions()
    rows, ops, notes, layers, failures = [], [], [], [], []
    start = time.perf_counter()

    groups = by_architecture(entries)
    firsts = largest_first([group[0] for group in groups.values()], [data_dir, tables.default_data()])
    for i, entry, result, failure in each_model(firsts, _count, "count", timm_results,
                                                 lib_versions, workers=workers):
        group = groups[(entry.library, entry.arch, entry.img_size)]
        for sib in group:
            if failure:
                failures.extend(as_weights([failure], sib))
                continue
            rows.append({**result["row"], "weights": sib.weights, **book.lookup(sib)})
            ops.extend(as_weights(result["ops"], sib))
            notes.extend(as_weights(result["notes"], sib))
            layers.extend(as_weights(result["layers"], sib))
        status = f"FAILED: {failure['error']}" if failure else f"{result['row']['gmacs']:.3f} GMACs"
        print(progress(i, len(firsts), group, status, time.perf_counter() - start, len(failures)),
              file=log, flush=True)

    ran = {e.key for e in entries}
    counted = ran - {tuple(f[k] for k in KEY) for f in failures}
    frames = {
        "counts.csv": pd.DataFrame(rows, columns=COUNT_COLUMNS),
        "ops.csv": pd.DataFrame(ops, columns=KEY + ["counter", "op", "category", "gmacs"]),
        "layers.csv": pd.DataFrame(layers, columns=KEY + ["module", "type", "output_shape",
                                                          "params", "gmacs"]),
        "counter-notes.csv": pd.DataFrame(notes, columns=KEY + ["counter", "status", "note"]),
    }
    changes = {name: (frame, counted) for name, frame in frames.items()}
    changes["failures.csv"] = (pd.DataFrame(failures, columns=KEY + ["stage", "error", "traceback"]),
                               ran)
    tables.update(data_dir, changes)
    summary = {"models": len(entries), "counted": len(rows), "failed": len(failures),
               "seconds": time.perf_counter() - start}
    print(f"counted {summary['counted']} of {summary['models']} models in {summary['seconds']:.0f}s, "
          f"{summary['failed']} failed -> {data_dir / 'counts.csv'}"
          + (f" (see {data_dir / 'failures.csv'})" if failures else ""), file=log)
    return summary
