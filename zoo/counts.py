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
from pathlib import Path

import pandas as pd

import zoo
from zoo.accuracy import AccuracyBook
from zoo.build import build, example_input, param_count
from zoo.catalogue import KEY, Entry
from zoo.counters import COUNTERS, versions
from zoo.counting import count_forward, count_training_flops, op_category
from zoo.runner import largest_first, as_weights, by_architecture, each_model, error_line, progress
from zoo.tables import DATA, merge, read_csv, write_csv

COUNT_COLUMNS = KEY + [
    "family", "params", "gmacs", "gmacs_thop", "gmacs_fvcore", "gmacs_torch", "gflops_train",
    "top1", "top5", "acc_source",
    "zoo_version", "torch_version", "torchvision_version", "timm_version", "thop_version",
    "fvcore_version",
]


def count_model(entry: Entry, book: AccuracyBook, lib_versions: dict) -> dict:
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
    acc = book.lookup(entry)
    row.update(acc if acc is not None else {"top1": None, "top5": None, "acc_source": None})
    row.update({"zoo_version": zoo.__version__, **lib_versions})
    layers = [{**key, **layer, "gmacs": layer.pop("macs") / 1e9} for layer in ref.layers]
    return {"row": row, "ops": ops, "notes": notes, "layers": layers}


def _count(entry: Entry, timm_results: str | None, lib_versions: dict) -> dict:
    return count_model(entry, _book(timm_results), lib_versions)


_BOOKS: dict = {}


def _book(timm_results: str | None) -> AccuracyBook:
    """One accuracy book per process and source (the timm table is read once)."""
    if timm_results not in _BOOKS:
        _BOOKS[timm_results] = AccuracyBook(timm_results)
    return _BOOKS[timm_results]


def run(entries: list[Entry], data_dir: Path = DATA, timm_results: str | None = None,
        workers: int | None = None, log=sys.stderr) -> dict:
    """Count ``entries`` (in ``workers`` processes, one per core by default) and merge them into
    the CSVs of ``data_dir``. Returns a summary."""
    data_dir = Path(data_dir)
    book = _book(timm_results)
    if book.error:
        print(f"warning: {book.error}; keeping the timm accuracy already in data/", file=log)
    lib_versions = versions()
    rows, ops, notes, layers, failures = [], [], [], [], []
    start = time.perf_counter()

    groups = by_architecture(entries)
    firsts = largest_first([group[0] for group in groups.values()], [data_dir, DATA])
    for i, entry, result, failure in each_model(firsts, _count, "count", timm_results,
                                                 lib_versions, workers=workers):
        group = groups[(entry.library, entry.arch, entry.img_size)]
        for sib in group:
            if failure:
                failures.extend(as_weights([failure], sib))
                continue
            acc = book.lookup(sib)
            rows.append({**result["row"], "weights": sib.weights,
                         **(acc if acc is not None else {"top1": None, "top5": None,
                                                         "acc_source": None})})
            ops.extend(as_weights(result["ops"], sib))
            notes.extend(as_weights(result["notes"], sib))
            layers.extend(as_weights(result["layers"], sib))
        status = f"FAILED: {failure['error']}" if failure else f"{result['row']['gmacs']:.3f} GMACs"
        print(progress(i, len(firsts), group, status, time.perf_counter() - start, len(failures)),
              file=log, flush=True)

    ran = {e.key for e in entries}
    counts = pd.DataFrame(rows, columns=COUNT_COLUMNS)
    old_counts = read_csv(data_dir / "counts.csv")
    counts = _keep_known_accuracy(counts, old_counts)
    write_csv(merge(old_counts, counts, ran), data_dir / "counts.csv")
    for name, frame, sort in [
        ("ops.csv", pd.DataFrame(ops, columns=KEY + ["counter", "op", "category", "gmacs"]),
         KEY + ["counter", "op", "category"]),
        ("layers.csv", pd.DataFrame(layers, columns=KEY + ["module", "type", "output_shape",
                                                           "params", "gmacs"]), KEY),
        ("counter-notes.csv", pd.DataFrame(notes, columns=KEY + ["counter", "status", "note"]),
         KEY + ["counter"]),
        ("failures.csv", pd.DataFrame(failures, columns=KEY + ["stage", "error", "traceback"]), KEY),
    ]:
        write_csv(merge(read_csv(data_dir / name), frame, ran, sort), data_dir / name)
    summary = {"models": len(entries), "counted": len(rows), "failed": len(failures),
               "seconds": time.perf_counter() - start}
    print(f"counted {summary['counted']} of {summary['models']} models in {summary['seconds']:.0f}s, "
          f"{summary['failed']} failed -> {data_dir / 'counts.csv'}"
          + (f" (see {data_dir / 'failures.csv'})" if failures else ""), file=log)
    return summary


def _keep_known_accuracy(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """Rows whose accuracy source was unreachable (acc_source is None) keep the figures in ``old``."""
    lost = new["acc_source"].isna()
    if not lost.any() or old.empty:
        new.loc[lost, "acc_source"] = ""
        return new
    old_acc = old.set_index(KEY)[["top1", "top5", "acc_source"]]
    for i in new.index[lost]:
        key = tuple(new.loc[i, KEY])
        if key in old_acc.index:
            new.loc[i, ["top1", "top5", "acc_source"]] = old_acc.loc[key].values
        else:
            new.loc[i, "acc_source"] = ""
    return new
