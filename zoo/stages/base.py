"""A stage is the tables it writes and a function that measures one architecture; the loop around
them is written once, here:

select -> group the weights of one architecture (they share every figure) -> largest first ->
the result cache -> run what it lacks (local worker pool or a Dask cluster, each model isolated,
with a time and a memory limit) -> progress -> failure rows -> one locked, all-or-nothing merge
into the data folder.

A stage module defines ``STAGE = Stage(...)``; its ``measure(entry, settings)`` returns the rows
of each table for one architecture (keyed to ``entry``), and runs in a worker process.
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from zoo.catalogue.entries import KEY, Entry
from zoo.errors import UsageError
from zoo.stages.run import (
    as_weights,
    by_architecture,
    each_model,
    largest_first,
    progress,
)
from zoo.store import tables
from zoo.store.cache import Cache
from zoo.store.schema import TABLES


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # the module whose STAGE this is (workers find the stage there)
    tables: tuple[str, ...]  # the tables it writes; the last holds its failure rows
    measure: Callable[[Entry, dict], dict[str, list[dict]]]  # one architecture -> rows per table
    code: tuple[str, ...]  # the modules whose source decides a result (part of the cache key)
    status: Callable[[dict], str]  # a result -> the progress line's status
    label: str = ""  # the progress lines' prefix
    for_weights: Callable[[dict, Entry], dict] | None = None  # rows for one of the weights
    summary: Callable[[int, int, int, float, Path], str] | None = None
    settings: dict = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)  # where not the schema's own:
    # a table's columns in file order, for tables with columns named by a pattern
    one_at_a_time: bool = False  # models measured one after another in one worker (timing)

    @property
    def failures(self) -> str:
        return self.tables[-1]


def job(entry: Entry, module: str, settings: dict) -> dict:
    """What a worker runs: one architecture through the stage of ``module``."""
    return importlib.import_module(module).STAGE.measure(entry, settings)


def run(stage: Stage, entries: list[Entry], data_dir: Path | None = None, *,
        workers: int | None = None, cache: Cache | None = None, scheduler: str | None = None,
        timeout: float | None = None, memory_limit: float | None = None,
        settings: dict | None = None, log=sys.stderr) -> dict:
    """Measure ``entries`` through ``stage`` and merge them into ``data_dir``. Returns a summary.

    Checked before anything is measured: the folder can be written and its tables are valid.
    A model that fails keeps the rows it had, with its failure beside them. ``settings`` (default:
    the stage's own) go to every ``measure`` call and into the cache key."""
    if stage.one_at_a_time:
        if scheduler:
            raise UsageError(f"the {stage.name} stage measures one model at a time on this "
                             "machine; it does not run on a cluster")
        workers = 1
    data_dir = tables.check_folder(data_dir or tables.default_data())
    with tables.locked(data_dir):
        for name in stage.tables:
            tables.read(data_dir, name)
    cache = cache if cache is not None else Cache.default()
    settings = dict(stage.settings if settings is None else settings)
    start = time.perf_counter()
    groups = by_architecture(entries)
    firsts = largest_first([g[0] for g in groups.values()], [data_dir, tables.default_data()])
    keys = {e: cache.key(stage, e, settings) for e in firsts}
    results: dict[Entry, dict] = {}
    failures: dict[Entry, dict] = {}
    for e in firsts:
        hit = cache.get(keys[e])
        if hit is not None:
            (failures if "failure" in hit else results)[e] = hit.get("failure") or hit["result"]
    todo = [e for e in firsts if e not in results and e not in failures]
    if len(todo) < len(firsts):
        print(f"{stage.label}{len(firsts) - len(todo)} of {len(firsts)} architectures from the "
              f"cache ({cache.folder})", file=log, flush=True)
    lost = 0
    peak = (0, None)  # the most resident memory one model's process reached, and that model
    for i, entry, result, failure, rss in each_model(todo, job, stage.name, stage.module, settings,
                                                workers=workers, timeout=timeout,
                                                in_process=False if stage.one_at_a_time else None,
                                                memory_limit=memory_limit, scheduler=scheduler):
        if rss and rss > peak[0]:
            peak = (rss, entry)
        if failure:
            failures[entry] = failure
            lost += 1
            if failure.get("cacheable"):  # an exception the same code and versions will raise again
                cache.put(keys[entry], {"failure": failure})
        else:
            results[entry] = result
            cache.put(keys[entry], {"result": result})
        status = f"FAILED: {failure['error']}" if failure else stage.status(result)
        print(stage.label + progress(i, len(todo), groups[_group(entry)], status,
                                     time.perf_counter() - start, lost), file=log, flush=True)

    rows: dict[str, list[dict]] = {name: [] for name in stage.tables}
    for first in firsts:
        for sib in groups[_group(first)]:
            if first in failures:
                rows[stage.failures].extend(as_weights([_failure_row(failures[first])], sib))
                continue
            result = results[first]
            if stage.for_weights:
                result = stage.for_weights(result, sib)
            for name in stage.tables:
                rows[name].extend(as_weights(result.get(name, []), sib))
    ran = {e.key for e in entries}
    done = ran - {sib.key for first in failures for sib in groups[_group(first)]}
    changes = {name: (pd.DataFrame(rows[name], columns=stage.columns.get(name)
                                    or list(TABLES[name].columns)),
                      ran if name == stage.failures else done) for name in stage.tables}
    tables.update(data_dir, changes)
    seconds = time.perf_counter() - start
    failed = sum(len(groups[_group(f)]) for f in failures)
    summary = {"models": len(entries), "done": len(entries) - failed, "failed": failed,
               "measured": len(todo), "seconds": seconds, "peak_rss": peak[0] or None,
               "peak_model": peak[1]}
    if stage.summary:
        print(stage.summary(summary["done"], len(entries), failed, seconds, data_dir), file=log)
    if peak[1] is not None:
        e = peak[1]
        print(f"{stage.label}largest process: {peak[0] / 2**30:.2f} GiB resident at its peak, "
              f"for {e.library} {e.arch} @{e.img_size}", file=log)
    return summary


def _group(e: Entry) -> tuple:
    return (e.library, e.arch, e.img_size)


def _failure_row(failure: dict) -> dict:
    return {k: failure[k] for k in KEY + ["stage", "error", "traceback"]}
