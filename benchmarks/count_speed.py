"""Speed of the reference count against thop and fvcore on real CPU tensors, in one run.

For each model of the fixed "bench" set, each path runs in a fresh process (so peak memory is its
own; each path runs twice and the second, warm run is timed): the reference path (build on meta,
``zoo.measure.flops.count_forward``), and thop and fvcore as their users run them (a real CPU model with
initialised weights, a real input). Prints seconds, the ratios, and each
process's peak RSS. ``--zoo`` also times ``zoo count default`` into a temporary folder.

    python benchmarks/count_speed.py [--zoo]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time


def _measure(path: str, name: str, queue) -> None:
    import warnings

    from zoo.catalogue.entries import select

    warnings.simplefilter("ignore")
    entry = select([name])[0]
    for _warm_up_then_timed in range(2):
        t0 = time.perf_counter()
        macs = _count(path, entry)
        seconds = time.perf_counter() - t0
    queue.put((seconds, macs / 1e9, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _count(path, entry):
    import torch

    from zoo.catalogue.build import build, example_input
    from zoo.measure.flops import count_forward

    if path == "reference":
        macs = count_forward(build(entry, "meta"), example_input(entry)).macs
    elif path == "thop":
        import thop

        model = build(entry, "cpu")
        macs, _ = thop.profile(model, inputs=(example_input(entry, "cpu"),), verbose=False)
    else:
        from fvcore.nn import FlopCountAnalysis

        model = build(entry, "cpu")
        with torch.no_grad():
            fa = FlopCountAnalysis(model, example_input(entry, "cpu"))
            fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            macs = fa.total()
    return macs


def measure(path: str, name: str) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(path, name, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    from zoo.catalogue.entries import select

    print(f"{'model':42} {'path':9} {'seconds':>8} {'GMACs':>9} {'peak RSS MiB':>12} {'x ref':>7}")
    for entry in select(["bench"]):
        name = f"{entry.library}:{entry.name}"
        ref = None
        for path in ("reference", "thop", "fvcore"):
            seconds, gmacs, rss = measure(path, name)
            ref = ref or seconds
            print(f"{entry.name:42} {path:9} {seconds:8.3f} {gmacs:9.3f} {rss:12.0f} "
                  f"{seconds / ref:7.1f}", flush=True)
    if "--zoo" in sys.argv:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "zoo", "count", "default", "--data", out],
                           check=True, stderr=subprocess.DEVNULL,
                           env={**os.environ, "ZOO_CACHE": "off"})  # measured, not recalled
            print(f"whole default zoo: {time.perf_counter() - t0:.0f} s "
                  f"(peak RSS of the largest worker: "
                  f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
