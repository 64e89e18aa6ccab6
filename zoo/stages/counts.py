"""The counts stage: for each model, parameters, reference MACs, the three counters, training FLOPs
and published accuracy, into ``data/``:

- ``counts.csv``: one row per model (the product), with each weight's published accuracy, licence
  and paper and their sources;
- ``ops.csv``: long format, MACs per (model, counter, op) with the op's category, for the site's
  "why counters differ";
- ``layers.csv``: the reference counter's layer table (leaf modules: output shape, params, MACs);
- ``counter-notes.csv``: what each counter could not count or why it failed;
- ``failures.csv``: models that could not be built or counted, with the error.

One model failing is recorded and the run goes on.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import zoo
from zoo.catalogue.accuracy import AccuracyBook
from zoo.catalogue.build import build, example_input, input_shape, param_count
from zoo.catalogue.entries import KEY, Entry
from zoo.catalogue.facts import facts
from zoo.measure.flops import count_forward, count_training_flops, op_category
from zoo.measure.third_party import COUNTERS, CounterSkipped, versions
from zoo.stages import base as stage
from zoo.stages.base import Stage
from zoo.stages.run import error_line


def count_model(entry: Entry, lib_versions: dict) -> dict:
    """Every count of one model, without its accuracy (that belongs to each of its weights).
    Raises if the model cannot be built or the reference fails; a third-party counter's failure is
    kept in the result instead."""
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
            skipped = isinstance(exc, CounterSkipped)
            notes.append({**key, "counter": name, "status": "skipped" if skipped else "failed",
                          "note": str(exc) if skipped else error_line(exc)})
    try:
        # the reference's own model: the forward count left it unchanged (eval, on meta)
        row["gflops_train"] = count_training_flops(model, example_input(entry)) / 1e9
    except Exception as exc:
        row["gflops_train"] = None
        notes.append({**key, "counter": "reference-train", "status": "failed", "note": error_line(exc)})
    row.update({"top1": None, "top5": None, "acc_source": "", "license": "", "license_source": "",
                "paper": "", "paper_source": "", "zoo_version": zoo.__version__, **lib_versions})
    layers = [{**key, **layer, "gmacs": layer.pop("macs") / 1e9} for layer in ref.layers]
    return {"row": row, "ops": ops, "notes": notes, "layers": layers}


def print_model(entry: Entry, out=sys.stdout) -> None:
    """One model's counts, printed (your own model: nothing is written to data/)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = count_model(entry, {})
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


def measure(entry: Entry, settings: dict) -> dict[str, list[dict]]:
    """The stage's work for one architecture, in a worker."""
    result = count_model(entry, versions())
    return {"counts.csv": [result["row"]], "ops.csv": result["ops"],
            "layers.csv": result["layers"], "counter-notes.csv": result["notes"]}


_BOOKS: dict = {}


def _book(timm_results: str | None) -> AccuracyBook:
    """One accuracy book per process and source (the timm table is read once)."""
    if timm_results not in _BOOKS:
        _BOOKS[timm_results] = AccuracyBook(timm_results)
    return _BOOKS[timm_results]


def _summary(done: int, models: int, failed: int, seconds: float, data_dir: Path) -> str:
    return (f"counted {done} of {models} models in {seconds:.0f}s, {failed} failed -> "
            f"{data_dir / 'counts.csv'}" + (f" (see {data_dir / 'failures.csv'})" if failed else ""))


STAGE = Stage(
    module="zoo.stages.counts",
    name="count",
    tables=("counts.csv", "ops.csv", "layers.csv", "counter-notes.csv", "failures.csv"),
    measure=measure,
    code=("zoo.stages.counts", "zoo.measure.flops", "zoo.measure.third_party", "zoo.torch_private"),
    status=lambda result: f"{result['counts.csv'][0]['gmacs']:.3f} GMACs",
    summary=_summary,
)


def run(entries: list[Entry], data_dir: Path | None = None, timm_results: str | None = None,
        log=sys.stderr, **how) -> dict:
    """Count ``entries`` and merge them into the CSVs of ``data_dir`` (see ``zoo.stages.base.run``
    for ``how``: workers, cache, scheduler, limits). The accuracy source is checked before
    anything is measured (UsageError); each of an architecture's weights gets its own accuracy."""
    book = _book(timm_results)

    def for_weights(result: dict, entry: Entry) -> dict:
        """One weight's row: the architecture's counts, with what belongs to the weight (its
        accuracy, licence and paper) and its family, looked up afresh even on a cache hit."""
        own = {"family": entry.family, **book.lookup(entry), **facts(entry)}
        return {**result, "counts.csv": [{**row, **own} for row in result["counts.csv"]]}

    summary = stage.run(dataclasses.replace(STAGE, for_weights=for_weights), entries, data_dir,
                        log=log, **how)
    return {**summary, "counted": summary["done"]}
