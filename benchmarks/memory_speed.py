"""Time and peak memory of the memory stage, in one run.

    python benchmarks/memory_speed.py [selection ...]    (default: the whole default zoo)

Runs ``zoo predict`` on the selection into a temporary folder and prints the wall time, the time
per model, and the peak RSS of the largest process (the stage runs one worker per core).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    selection = sys.argv[1:] or ["default"]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "zoo", "predict", *selection, "--data", out],
                              capture_output=True, text=True,
                              env={**os.environ, "ZOO_CACHE": "off"})  # measured, not recalled
        seconds = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    models = sum(1 for line in lines if line.startswith("memory ["))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(lines[-1] if lines else "no output")
    print(f"memory stage: {models} models in {seconds:.0f} s ({seconds / max(models, 1):.1f} s per "
          f"model); peak RSS of the largest process {rss:.0f} MiB")


if __name__ == "__main__":
    main()
