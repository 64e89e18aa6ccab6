"""Run one job per model, in worker processes, where a failure becomes a row instead of a crash.

Each stage (counts, memory) hands ``each_model`` a module-level function ``job(entry, *args)``;
what comes back, in completion order, is ``(i, entry, result, failure)`` with exactly one of
result and failure set. A worker process that dies takes only its model down.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import traceback
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor, as_completed

from zoo.catalogue import KEY, Entry


def by_architecture(entries: list[Entry]) -> dict[tuple, list[Entry]]:
    """Entries grouped by (library, arch, img_size): the weights of one architecture at one input
    size share every count and every byte, so a stage measures the first and copies the rest."""
    groups: dict[tuple, list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.library, e.arch, e.img_size), []).append(e)
    return groups


def progress(i: int, n: int, group: list[Entry], status: str, seconds: float, failed: int) -> str:
    """One progress line: ``[i/n] library arch (weights, ...) @size: status [time, failures]``."""
    e = group[0]
    return (f"[{i}/{n}] {e.library} {e.arch} ({', '.join(g.weights for g in group)}) "
            f"@{e.img_size}: {status} [{seconds:.0f}s elapsed, {failed} failed so far]")


def as_weights(rows: list[dict], entry: Entry) -> list[dict]:
    """``rows`` measured for a sibling architecture, keyed to ``entry``'s weights."""
    return [{**r, "weights": entry.weights} for r in rows]


def error_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def failure_row(entry: Entry, stage: str, error: str, tb: str = "") -> dict:
    return {**dict(zip(KEY, entry.key)), "stage": stage, "error": error, "traceback": tb}


def _guarded(job, stage: str, entry: Entry, *args):
    try:
        return job(entry, *args), None
    except Exception as exc:
        return None, failure_row(entry, stage, error_line(exc), traceback.format_exc(limit=-3))


def _worker_init() -> None:
    import threading
    import time

    import torch

    torch.set_num_threads(1)  # one model per core
    parent = os.getppid()

    def exit_with_parent():  # a stage that is killed takes its workers with it
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def largest_first(entries: list[Entry], data_dirs) -> list[Entry]:
    """``entries`` with the most multiply-adds first, as the counts in the first of ``data_dirs``
    that has them recorded them (unknown ones keep their place, after them): the longest jobs
    start first, so that no large model is left running alone at the end of a stage."""
    from zoo.tables import read_csv

    for folder in data_dirs:
        counts = read_csv(Path(folder) / "counts.csv")
        if not counts.empty:
            break
    else:
        return list(entries)
    gmacs = {(r.library, r.arch, int(r.img_size)): r.gmacs
             for r in counts[["library", "arch", "img_size", "gmacs"]].dropna().itertuples()}
    return sorted(entries, key=lambda e: -gmacs.get((e.library, e.arch, e.img_size), 0.0))


def each_model(entries: list[Entry], job, stage: str, *args, workers: int | None = None):
    """Yields ``(i, entry, result, failure)`` for every entry; ``job(entry, *args)`` runs in one of
    ``workers`` processes (one per core by default; 1 runs here, in order)."""
    workers = workers or min(len(entries), os.cpu_count() or 1)
    run = functools.partial(_guarded, job, stage)
    if workers <= 1:
        for i, entry in enumerate(entries, 1):
            yield (i, entry, *run(entry, *args))
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
        futures = {pool.submit(run, e, *args): e for e in entries}
        for i, fut in enumerate(as_completed(futures), 1):
            entry = futures[fut]
            try:
                result, failure = fut.result()
            except Exception as exc:  # the worker process itself died
                result, failure = None, failure_row(entry, stage, f"worker died: {error_line(exc)}")
            yield i, entry, result, failure
