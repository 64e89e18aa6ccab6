"""Time and peak memory of the memory stage, in one run.

    python benchmarks/memory_speed.py [--keep DIR] [selection ...]    (default: the default zoo)

Runs ``zoo predict`` on the selection into a temporary folder (``--keep DIR``: into DIR, kept, to
compare with ``data/``) and prints the wall time, the time per model, and the peak RSS of the
largest process (the stage runs one worker per core).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="write into DIR and keep it")
    parser.add_argument("selection", nargs="*", default=["default"])
    args = parser.parse_args()
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()) as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "zoo", "predict", *args.selection,
                                 "--data", out],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "ZOO_CACHE": "off"})  # measured, not recalled
        lines = []
        for line in proc.stderr:  # the stage's progress, shown as it comes
            sys.stderr.write(line)
            lines.append(line.rstrip("\n"))
        proc.wait()
        seconds = time.perf_counter() - t0
    models = sum(1 for line in lines if line.startswith("memory ["))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(lines[-1] if lines else "no output")
    print(f"memory stage: {models} models in {seconds:.0f} s ({seconds / max(models, 1):.1f} s per "
          f"model); peak RSS of the largest process {rss:.0f} MiB")


if __name__ == "__main__":
    main()
