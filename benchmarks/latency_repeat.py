"""Repeatability of the timing harness: ResNet-50 at batch 1 measured three times in one run, on
every core this process may use, as the latency stage measures it. The goal: the three medians
agree within 5% (the largest over the smallest, printed)."""

import sys

import torch

from zoo.catalogue.build import build, input_shape
from zoo.catalogue.entries import select
from zoo.measure import latency


def main() -> int:
    entry = select(["torchvision:resnet50.IMAGENET1K_V2"])[0]
    model = build(entry, "cpu")
    threads = latency.all_cores()
    step = latency.model_step(model, input_shape(entry), 1)
    medians = []
    for i in range(3):
        t = latency.time_one(step, threads=threads, min_run_time=2.0)
        medians.append(t.median * 1e3)
        print(f"run {i + 1}: median {t.median * 1e3:.2f} ms, p90 {t.p90 * 1e3:.2f} ms, "
              f"IQR {t.iqr * 1e3:.2f} ms over {t.runs} blocks ({t.status})")
    spread = max(medians) / min(medians)
    print(f"ResNet-50, batch 1, {threads} thread(s), torch {torch.__version__}, "
          f"{latency.cpu_name()}: largest / smallest median = {spread:.3f} "
          f"({'within' if spread <= 1.05 else 'NOT within'} 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
