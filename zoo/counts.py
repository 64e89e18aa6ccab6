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

import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd

import zoo
from zoo.accuracy import AccuracyBook
from zoo.build import build, example_input, param_count
from zoo.catalogue import KEY, Entry
from zoo.counters import COUNTERS, versions
from zoo.counting import count_forward, count_training_flops, op_category
from zoo.tables import DATA, merge, read_csv, write_csv

COUNT_COLUMNS = KEY + [
    "family", "params", "gmacs", "gmacs_thop", "gmacs_fvcore", "gmacs_torch", "gflops_train",
    "top1", "top5", "acc_source",
    "zoo_version", "torch_version", "torchvision_version", "timm_version", "thop_version",
    "fvcore_version",
]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]


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
            res = run(entry)
            row[f"gmacs_{name}"] = res.macs / 1e9
            ops += [{**key, "counter": name, "op": op, "category": op_category(op), "gmacs": m / 1e9}
                    for op, m in sorted(res.by_op.items())]
            if res.note:
                notes.append({**key, "counter": name, "status": "partial", "note": res.note})
        except Exception as exc:  # a counter that fails leaves its cell empty, with the reason
            row[f"gmacs_{name}"] = None
            notes.append({**key, "counter": name, "status": "failed", "note": _error(exc)})
    try:
        row["gflops_train"] = count_training_flops(build(entry, "meta"), example_input(entry)) / 1e9
    except Exception as exc:
        row["gflops_train"] = None
        notes.append({**key, "counter": "reference-train", "status": "failed", "note": _error(exc)})
    acc = book.lookup(entry)
    row.update(acc if acc is not None else {"top1": None, "top5": None, "acc_source": None})
    row.update({"zoo_version": zoo.__version__, **lib_versions})
    layers = [{**key, **layer, "gmacs": layer.pop("macs") / 1e9} for layer in ref.layers]
    return {"row": row, "ops": ops, "notes": notes, "layers": layers}


def _count_or_fail(entry: Entry, timm_results: str | None, lib_versions: dict) -> tuple[dict | None, dict | None]:
    """Runs in a worker process: (result, None), or (None, failure row)."""
    try:
        return count_model(entry, _book(timm_results), lib_versions), None
    except Exception as exc:
        return None, {**dict(zip(KEY, entry.key)), "stage": "count", "error": _error(exc),
                      "traceback": traceback.format_exc(limit=-3)}


_BOOKS: dict = {}


def _book(timm_results: str | None) -> AccuracyBook:
    if timm_results not in _BOOKS:
        _BOOKS[timm_results] = AccuracyBook(timm_results)
    return _BOOKS[timm_results]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one model per core


def run(entries: list[Entry], data_dir: Path = DATA, timm_results: str | None = None,
        workers: int | None = None, log=sys.stderr) -> dict:
    """Count ``entries`` (in ``workers`` processes, one per core by default) and merge them into
    the CSVs of ``data_dir``. Returns a summary."""
    data_dir = Path(data_dir)
    book = _book(timm_results)
    if book.error:
        print(f"warning: {book.error}; keeping the timm accuracy already in data/", file=log)
    lib_versions = versions()
    workers = workers or min(len(entries), os.cpu_count() or 1)
    rows, ops, notes, layers, failures = [], [], [], [], []
    start = time.perf_counter()

    def record(i, entry, result, failure):
        if failure:
            failures.append(failure)
            status = f"FAILED: {failure['error']}"
        else:
            rows.append(result["row"])
            ops.extend(result["ops"])
            notes.extend(result["notes"])
            layers.extend(result["layers"])
            status = f"{result['row']['gmacs']:.3f} GMACs"
        print(f"[{i}/{len(entries)}] {entry.library} {entry.name} @{entry.img_size}: {status} "
              f"[{time.perf_counter() - start:.0f}s elapsed, {len(failures)} failed so far]",
              file=log, flush=True)

    if workers <= 1:
        for i, entry in enumerate(entries, 1):
            record(i, entry, *_count_or_fail(entry, timm_results, lib_versions))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(_count_or_fail, e, timm_results, lib_versions): e for e in entries}
            for i, fut in enumerate(as_completed(futures), 1):
                entry = futures[fut]
                try:
                    result, failure = fut.result()
                except Exception as exc:  # the worker process itself died
                    result, failure = None, {**dict(zip(KEY, entry.key)), "stage": "count",
                                             "error": f"worker died: {_error(exc)}", "traceback": ""}
                record(i, entry, result, failure)

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
