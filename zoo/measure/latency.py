"""Inference time of one model against batch size, on this machine.

How a figure is measured (the Methods page says the same):

- the model has real, randomly initialised weights (its library's own initialisation), in
  ``eval()`` and under ``torch.inference_mode()``, fed a random input of the batch's size;
- ``WARMUP`` steps are run and thrown away (one, where one takes over ``min_run_time``), then
  ``torch.utils.benchmark.Timer.blocked_autorange`` times blocks of steps until ``min_run_time`` seconds have been spent (its block-size estimate is
  more warm-up); a step's time is its block's time over the block's steps;
- at least ``MIN_BLOCKS`` blocks are timed where the budget allows (else the status is
  ``few runs``); per batch size: the median step time, its 90th percentile and interquartile range
  (over blocks: each block's time over its steps) and the number of blocks; images per second =
  batch / median;
- a batch whose spread is too large (IQR over ``NOISE`` of the median) is measured once more where
  the budget allows, and kept with status ``noisy`` if it still is; nothing is dropped;
- a model has a time budget: a batch size whose projected cost (from the last batch's time per
  image) would take the model past it is not run, nor is any larger one, and each is kept as a
  ``skipped`` row. The smallest batch size always runs.

The clock is a parameter, so the harness is tested on a fake clock (``tests/test_latency.py``).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

# torch is imported where it is used: the command line reads this module's defaults without it.

BATCHES = (1, 2, 4, 8, 16, 32, 64)
PRECISIONS = ("fp32", "bf16")
WARMUP = 2  # steps thrown away before timing (after the first, which builds caches)
NOISE = 0.10  # IQR over this share of the median: measured again, then kept as "noisy"
MIN_BLOCKS = 3  # timed blocks a median, p90 and IQR need; fewer (past the budget): "few runs"
MIN_RUN_TIME = 0.5  # seconds of timed steps per batch size
BUDGET = 8.0  # seconds of timing per model and thread count (batch 1 always runs)


@dataclass
class Timing:
    batch: int
    status: str  # "ok", "noisy", or "skipped: <why>"
    median: float | None = None  # seconds per step
    p90: float | None = None
    iqr: float | None = None
    runs: int | None = None  # timed blocks
    steps_per_run: int | None = None

    @property
    def per_second(self) -> float | None:
        return self.batch / self.median if self.median else None


def stats(times: list[float]) -> tuple[float, float, float]:
    """Median, 90th percentile and interquartile range of per-step times."""
    a = np.asarray(times, dtype=float)
    q1, med, q3, p90 = np.percentile(a, [25, 50, 75, 90])
    return float(med), float(p90), float(q3 - q1)


def warmups(per_step: float | None, min_run_time: float) -> int:
    """Warm-up steps: ``WARMUP``, or fewer where they would take over ``min_run_time``."""
    if per_step is None or per_step <= 0:
        return WARMUP
    return max(1, min(WARMUP, math.ceil(min_run_time / per_step)))


def time_one(step: Callable[[], object], *, threads: int, min_run_time: float,
             clock: Callable[[], float] = time.perf_counter,
             deadline: float | None = None) -> Timing:
    """One batch size: warm-up, then ``blocked_autorange`` and at least ``MIN_BLOCKS`` blocks;
    measured again where noisy. Nothing more is started that would end past ``deadline`` (by
    ``clock``): a timing left with fewer blocks has the status ``few runs``."""
    import torch

    # torch.utils.benchmark imports the C++ extension helper, which logs a warning on a machine
    # without CUDA; timing on the CPU needs none of it.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        warmed, steps = 0.0, 0
        for _ in range(WARMUP):
            begin = clock()
            step()
            warmed += clock() - begin
            steps += 1
            if warmed >= min_run_time:  # a slow step: one is warm-up enough
                break
    finally:
        torch.set_num_threads(before)
    guess = warmed / steps
    timer = Timer(stmt="step()", globals={"step": step}, timer=clock, num_threads=threads)

    def measure() -> tuple[list[float], int]:
        # long enough for MIN_BLOCKS blocks of slow steps, as far as the deadline allows (it
        # keeps room for the block-size estimate, one more step)
        want = max(min_run_time, (MIN_BLOCKS - 0.5) * guess)
        if deadline is not None:
            want = min(want, max(0.0, deadline - clock() - guess))
        m = timer.blocked_autorange(min_run_time=want)
        return list(m.times), m.number_per_run

    begin = clock()
    times, number = measure()
    median, p90, iqr = stats(times)
    if len(times) >= MIN_BLOCKS and iqr > NOISE * median \
            and (deadline is None or 2 * clock() - begin <= deadline):
        times, number = measure()  # once more: a spread can be a passing disturbance
        median, p90, iqr = stats(times)
    status = ("few runs" if len(times) < MIN_BLOCKS
              else "noisy" if iqr > NOISE * median else "ok")
    return Timing(0, status, median, p90, iqr, len(times), number)


def projected_cost(per_step: float, min_run_time: float) -> float:
    """Seconds one batch size is expected to take, from its step time: warm-up, the block-size
    estimate (a block) and the timed blocks (at least ``MIN_BLOCKS``, at least ``min_run_time``)."""
    blocks = max(math.ceil(min_run_time / per_step), MIN_BLOCKS)
    return (warmups(per_step, min_run_time) + 1 + blocks) * per_step


def sweep(make_step: Callable[[int], Callable[[], object]], batches=BATCHES, *, threads: int,
          budget: float = BUDGET, min_run_time: float = MIN_RUN_TIME,
          clock: Callable[[], float] = time.perf_counter) -> list[Timing]:
    """Times ``make_step(batch)()`` at each batch size, smallest first, within ``budget`` seconds
    (by ``clock``); the batch sizes it leaves out are ``skipped`` rows. The smallest always runs."""
    start = clock()
    out: list[Timing] = []
    batches = sorted(batches)
    for i, batch in enumerate(batches):
        if out:
            last = out[-1]
            projected = projected_cost(last.median * batch / last.batch, min_run_time)
            if clock() - start + projected > budget:
                why = (f"skipped: about {projected:.1f} s more would pass the model's "
                       f"{budget:g} s budget")
                out += [Timing(b, why) for b in batches[i:]]
                break
        timing = time_one(make_step(batch), threads=threads, min_run_time=min_run_time,
                          clock=clock, deadline=start + budget)
        timing.batch = batch
        out.append(timing)
    return out


def model_step(model, shape: tuple, batch: int, *, precision: str = "fp32",
               channels_last: bool = False, device: str = "cpu") -> Callable[[], object]:
    """One inference step of ``model`` on a random input of ``batch`` samples; synchronised on
    CUDA, so that a step's time is the device's."""
    import torch

    x = torch.randn(batch, *shape, device=device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    cast = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        with torch.inference_mode():
            if cast is None:
                model(x)
            else:
                with cast:
                    model(x)
        sync()

    return step


def cpu_name() -> str:
    """The CPU's model name, as the kernel reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return cpu_name()


def all_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
