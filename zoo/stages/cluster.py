"""The same sweep on a Dask distributed cluster: ``zoo count all --scheduler tcp://HOST:8786``.

Each model is one Dask task. Dask has no time limit per task, so the task runs the model in a child
process of the Dask worker, with the time and memory limits of a local run: a pool of one
worker process per Dask worker process, kept between tasks (torch is imported once), replaced
when a model kills it. Dask worker processes are daemonic by default, and a daemonic process may
not start children: start the workers with ``DASK_DISTRIBUTED__WORKER__DAEMON=False``.
Results come back to the process that started the sweep, which alone writes the data folder.
"""

from __future__ import annotations

import atexit
import threading

from zoo.errors import UsageError

_POOL = None
_POOL_LOCK = threading.Lock()


def _pool(memory_limit):
    """This Dask worker's pool of one model process (made on its first task)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            import contextlib

            from zoo.stages.run import worker_pool

            stack = contextlib.ExitStack()
            try:
                _POOL = stack.enter_context(worker_pool(1, memory_limit))
            except AssertionError as exc:  # "daemonic processes are not allowed to have children"
                raise RuntimeError("this Dask worker is daemonic and cannot start the model's "
                                   "process: start it with DASK_DISTRIBUTED__WORKER__DAEMON=False"
                                   ) from exc
            atexit.register(stack.close)
        return _POOL


def run_isolated(job, stage: str, entry, args: tuple, timeout, memory_limit):
    """On a Dask worker: ``job(entry, *args)`` in the worker's model process, within the limits.
    Returns (result, failure, peak) as a local run would."""
    from zoo.stages.run import _guarded, outcome

    fut = _pool(memory_limit).schedule(_guarded, args=(job, stage, entry, *args), timeout=timeout)
    return outcome(fut, entry, stage, timeout, memory_limit)


def each_model_on(scheduler: str, entries, job, stage: str, *args, timeout=None,
                  memory_limit=None):
    """``zoo.stages.run.each_model`` on the cluster whose scheduler is at ``scheduler``."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise UsageError("--scheduler needs Dask's distributed package: pip install 'zoo[cluster]'"
                         ) from None
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc})") from None
    with client:
        futures = {client.submit(run_isolated, job, stage, e, args, timeout, memory_limit,
                                 key=f"zoo-{stage}-{i}", pure=False): e
                   for i, e in enumerate(entries)}
        try:
            for i, fut in enumerate(as_completed(futures), 1):
                entry = futures[fut]
                try:
                    result, failure, peak = fut.result()
                except Exception as exc:  # the Dask worker itself was lost
                    from zoo.stages.run import error_line, failure_row

                    result, failure, peak = None, failure_row(
                        entry, stage, f"worker lost: {error_line(exc)}"), None
                yield i, entry, result, failure, peak
        finally:
            client.cancel(list(futures))
