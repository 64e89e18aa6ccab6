"""The sweep machinery's figures, in one run: a warm rerun of the default zoo through every stage,
and the speed-up of two Dask workers over one.

    python benchmarks/sweep.py [--cache DIR] [--dask SELECTION ...] [--only warm|dask]

Warm rerun: ``zoo count default`` and ``zoo predict default`` into a fresh folder with the result
cache at DIR (filled first if it is empty: the cold run, about 13 minutes here), then both again:
the second pass is timed, each command as a user runs it (a new process). Dask: ``zoo count`` of
the selection (default: the default zoo's timm tags, about 100) on a local cluster of one worker
process, then of two, without the cache; prints both times and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def zoo(*args, cache) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo", *args], check=True, stderr=subprocess.DEVNULL,
                   env={**os.environ, "ZOO_CACHE": str(cache)})
    return time.perf_counter() - t0


def warm_rerun(cache: str) -> None:
    with tempfile.TemporaryDirectory() as out:
        cold = [zoo(stage, "default", "--data", out, cache=cache) for stage in ("count", "predict")]
        warm = [zoo(stage, "default", "--data", out, cache=cache) for stage in ("count", "predict")]
    print(f"default zoo, count + predict: first pass {sum(cold):.0f} s "
          f"({cold[0]:.0f} + {cold[1]:.0f}; cold unless {cache} held results), "
          f"warm rerun {sum(warm):.1f} s ({warm[0]:.1f} + {warm[1]:.1f})")


def dask_speedup(selection: list[str]) -> None:
    import dask
    from distributed import LocalCluster

    times = {}
    for n in (1, 2):
        with dask.config.set({"distributed.worker.daemon": False}), \
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                             dashboard_address=None) as cluster, \
                tempfile.TemporaryDirectory() as out:
            times[n] = zoo("count", *selection, "--data", out, "--scheduler",
                           cluster.scheduler_address, cache="off")
    print(f"zoo count {' '.join(selection)} on Dask: 1 worker {times[1]:.0f} s, 2 workers "
          f"{times[2]:.0f} s: speed-up {times[1] / times[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help="result cache folder (default: a new one)")
    parser.add_argument("--dask", nargs="*", default=["timm"])
    parser.add_argument("--only", choices=["warm", "dask"], default=None)
    args = parser.parse_args()
    if args.only != "dask":
        if args.cache:
            warm_rerun(args.cache)
        else:
            with tempfile.TemporaryDirectory() as cache:
                warm_rerun(cache)
    if args.only != "warm":
        dask_speedup(args.dask)


if __name__ == "__main__":
    main()
