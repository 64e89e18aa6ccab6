"""Run one job per model, in worker processes, where a failure becomes a row instead of a crash.

Each stage (counts, memory) hands ``each_model`` a module-level function ``job(entry, *args)``;
what comes back, in completion order, is ``(i, entry, result, failure, peak)`` with exactly one of
result and failure set, and ``peak`` the resident memory the model's process reached while it ran
(bytes; None where the system does not say). Workers are a ``pebble`` process pool: a worker process
that dies or hangs takes only its model down. After each model a worker hands the memory it freed
back to the system, so one giant model does not leave every later model a larger process.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import re
import signal
import sysconfig
import traceback
import warnings
from concurrent.futures import as_completed
from pathlib import Path

from zoo.catalogue.entries import KEY, Entry
from zoo.errors import error_line


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


_PACKAGES = re.compile(r'File "[^"]*?/(site|dist)-packages/')
_ZOO = re.compile('File "' + re.escape(str(Path(__file__).resolve().parents[1]) + os.sep))
_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep


def traceback_text(limit: int = -3) -> str:
    """The exception being handled, its last ``limit`` frames, with paths that are the same on
    every machine (``site-packages/torch/...``, ``zoo/...``), so a failure row is too."""
    return portable(traceback.format_exc(limit=limit))


def portable(text: str) -> str:
    """``text`` with the install locations of files taken out of their paths."""
    text = _ZOO.sub('File "', text)
    return _PACKAGES.sub('File "site-packages/', text).replace(_STDLIB, "").replace(
        'File "site-packages/zoo/', 'File "zoo/')


def failure_row(entry: Entry, stage: str, error: str, tb: str = "") -> dict:
    return {**dict(zip(KEY, entry.key)), "stage": stage, "error": error, "traceback": tb}


def _guarded(job, stage: str, entry: Entry, *args):
    """``job(entry, *args)`` as ``(result, None, peak)`` or ``(None, failure row, peak)``, with
    ``peak`` the process's resident memory at its highest during the job. What torch logs
    meanwhile (its fake-tensor machinery logs a traceback for errors it re-raises) is kept out of
    the terminal and goes into the failure row's traceback."""
    _reset_peak()
    with _captured_torch_logs() as logged, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # libraries' deprecation notices are not the user's news
        try:
            outcome = job(entry, *args), None
        except Exception as exc:
            tb = traceback_text()
            logs = logged.getvalue()
            failure = failure_row(entry, stage, error_line(exc),
                                  tb + (f"\ntorch logged:\n{portable(logs)}" if logs else ""))
            outcome = None, {**failure, "cacheable": True}  # the same code will raise it again
    peak = _peak_bytes()
    _give_memory_back()
    return (*outcome, peak)


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (Linux), else None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> None:
    """Start this process's high-water mark of resident memory (VmHWM) again from now (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_bytes() -> int | None:
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def _give_memory_back() -> None:
    """Free what the job left unreachable and return the C heap's free pages to the system
    (glibc keeps them otherwise: a worker that ran a 2.5 GiB model would start the next one at
    that size).

    What outlives a job (torch, timm, the shape caches: half a million objects) is then frozen:
    later collections, this one's and the interpreter's own, no longer go over it (0.4 s a
    model), and it is still freed when nothing refers to it."""
    import ctypes
    import gc

    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@contextlib.contextmanager
def _captured_torch_logs():
    """Every torch logger that writes to the terminal (torch gives several their own handler)
    writes into the yielded buffer instead, while inside."""
    import logging

    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "torch" or name.startswith("torch.")]
    saved = [(log, log.handlers[:]) for log in loggers if log.handlers]
    for log, _ in saved:
        log.handlers[:] = [capture]
    try:
        yield buffer
    finally:
        for log, handlers in saved:
            log.handlers[:] = handlers


OUT_OF_MEMORY = 86  # a worker's exit status when it passes its memory limit


def _worker_init(parent: int, memory_limit: float | None = None) -> None:
    """In each worker: one thread; an exit as soon as ``parent`` (the stage's process) is gone,
    even if it was killed before this worker finished starting; and an exit with status
    OUT_OF_MEMORY once its resident memory passes ``memory_limit`` bytes."""
    import threading
    import time

    if os.getppid() != parent:
        os._exit(1)
    # pebble's worker ignores SIGINT by now; until then the signal was blocked (see worker_pool),
    # and one that came in that time is dropped, not delivered
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _fixed_mmap_threshold()
    import gc

    import torch

    torch.set_num_threads(1)  # one model per core
    # A job makes millions of short-lived objects (fake tensors, their storages and finalizers),
    # freed by reference counts; the interpreter's collections after every 700 of them cost a
    # simulation 5%. Each job ends in a full collection (_give_memory_back).
    gc.set_threshold(GC_THRESHOLD, 10, 10)

    def watch():
        page = os.sysconf("SC_PAGE_SIZE")
        ticks = 0
        while True:
            if ticks % 20 == 0 and os.getppid() != parent:
                os._exit(1)
            if memory_limit and _resident_pages() * page > memory_limit:
                os._exit(OUT_OF_MEMORY)
            ticks += 1
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
GC_THRESHOLD = 20_000  # a worker's allocations between two of the interpreter's collections


def _fixed_mmap_threshold(size: int = 128 * 1024) -> None:
    """Blocks of ``size`` bytes and more come from their own mappings, returned to the system when
    freed. glibc's default raises that threshold to the largest block freed so far (up to 32 MiB):
    after one giant model, a worker would keep every later model's freed tensors under 32 MiB
    resident, and peak about 1 GiB higher than the same model in a fresh process. Setting the
    threshold fixes it."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, size)
    except (OSError, AttributeError):  # not glibc
        pass


def _resident_pages() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1])
    except OSError:  # not Linux: no limit
        return 0


def largest_first(entries: list[Entry], data_dirs) -> list[Entry]:
    """``entries`` with the most multiply-adds first, as the counts in the first of ``data_dirs``
    that has them recorded them (unknown ones keep their place, after them): the longest jobs
    start first, so that no large model is left running alone at the end of a stage."""
    from zoo.errors import DataError
    from zoo.store import tables

    for folder in data_dirs:
        try:
            counts = tables.read(folder, "counts.csv")
        except DataError:
            continue
        if not counts.empty:
            break
    else:
        return list(entries)
    gmacs = {(r.library, r.arch, int(r.img_size)): r.gmacs
             for r in counts[["library", "arch", "img_size", "gmacs"]].dropna().itertuples()}
    return sorted(entries, key=lambda e: -gmacs.get((e.library, e.arch, e.img_size), 0.0))


def _lost(exc: BaseException, timeout: float | None, memory_limit: float | None) -> str:
    """Why a worker gave no result."""
    from pebble import ProcessExpired

    if isinstance(exc, TimeoutError):
        return f"timeout: no result after {timeout:g}s"
    if isinstance(exc, ProcessExpired):
        code = exc.exitcode
        if code == OUT_OF_MEMORY:
            return f"out of memory: the worker passed its {memory_limit / 2**30:g} GiB limit"
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return f"killed: the worker was ended by {name}" + (
                " (out of memory?)" if name == "SIGKILL" else "")
        return f"killed: the worker process exited with status {code}"
    return f"worker failed: {error_line(exc)}"


def each_model(entries: list[Entry], job, stage: str, *args, workers: int | None = None,
               timeout: float | None = None, memory_limit: float | None = None,
               scheduler: str | None = None, in_process: bool | None = None):
    """Yields ``(i, entry, result, failure, peak)`` for every entry; ``job(entry, *args)`` runs in one of
    ``workers`` processes (one per core by default; ``workers=1`` runs here, in order, without
    limits, unless ``in_process`` is False), or on the Dask cluster at ``scheduler``.

    A worker that raises, dies (``os._exit``, a signal, the kernel's out-of-memory killer), passes
    ``memory_limit`` bytes or runs past ``timeout`` seconds costs only its model: a failure row, a
    fresh worker, and the sweep goes on. Interrupted (Ctrl-C), every worker is stopped before the
    interruption goes on up."""
    if scheduler:
        from zoo.stages.cluster import each_model_on

        yield from each_model_on(scheduler, entries, job, stage, *args, timeout=timeout,
                                 memory_limit=memory_limit)
        return
    if workers == 1 and in_process is not False:
        for i, entry in enumerate(entries, 1):
            yield (i, entry, *_guarded(job, stage, entry, *args))
        return
    if not entries:
        return
    with worker_pool(min(len(entries), workers or os.cpu_count() or 1), memory_limit) as pool:
        futures = {pool.schedule(_guarded, args=(job, stage, e, *args), timeout=timeout): e
                   for e in entries}
        for i, fut in enumerate(as_completed(futures), 1):
            entry = futures[fut]
            yield (i, entry, *outcome(fut, entry, stage, timeout, memory_limit))


def outcome(fut, entry: Entry, stage: str, timeout, memory_limit) -> tuple:
    """(result, failure, peak) of a finished worker future."""
    try:
        return fut.result()
    except Exception as exc:  # the worker itself was lost: not a fact about the model to keep
        return None, failure_row(entry, stage, _lost(exc, timeout, memory_limit)), None


@contextlib.contextmanager
def worker_pool(workers: int, memory_limit: float | None = None):
    """A pebble pool of spawned workers, stopped (every worker ended) on the way out.

    The terminal's Ctrl-C goes to the whole process group, and it is for this process alone: it
    stops the pool. A worker ignores SIGINT once it runs, but a spawned one takes seconds to get
    there (it imports the main module again), and there an interruption would print a traceback.
    So each worker starts with SIGINT blocked: a process inherits the signal mask of the thread
    that starts it, and the pool's threads, which start the replacement workers, inherit it from
    this one. The mask is set while the pool starts, and only then."""
    from multiprocessing import resource_tracker

    from pebble import ProcessPool

    resource_tracker.ensure_running()  # launching it unblocks SIGINT in this thread: do it first
    pool = ProcessPool(workers, initializer=_worker_init, initargs=(os.getpid(), memory_limit),
                       context=multiprocessing.get_context("spawn"))
    try:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            if not pool.active:  # starts the first workers and the pool's threads
                raise RuntimeError("the worker pool did not start")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        yield pool
    finally:
        pool.stop()
        pool.join()
