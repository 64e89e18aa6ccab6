"""The latency stage: each model's inference time against batch size on this machine's CPU, all
cores, and at batch 1 on one core. Writes ``data/latency.csv``, with timm's column names where they
mean the same (``infer_batch_size``, ``infer_img_size``, ``infer_step_time`` in ms,
``infer_samples_per_sec``), so the table joins timm's own benchmark tables.

Models are timed one at a time, in one worker process, never two at once on the same cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import zoo
from zoo.catalogue.build import build, input_shape
from zoo.catalogue.entries import KEY, Entry
from zoo.measure import latency
from zoo.stages import base as stage
from zoo.stages.base import Stage
from zoo.store.cache import library_versions

VERSION_COLUMNS = ("torch_version", "torchvision_version", "timm_version")


def settings(batches=latency.BATCHES, budget: float = latency.BUDGET,
             min_run_time: float = latency.MIN_RUN_TIME, threads: int | None = None) -> dict:
    """Everything that changes a figure; part of each result's cache key."""
    return {"device": "cpu", "device_name": latency.cpu_name(),
            "threads": threads or latency.all_cores(), "precision": "fp32", "channels_last": False,
            "batches": sorted(set(batches)), "budget": budget, "min_run_time": min_run_time}


def rows_of(entry: Entry, timings: list[latency.Timing], how: dict, threads: int) -> list[dict]:
    versions = dict(library_versions())
    key = dict(zip(KEY, entry.key))

    def ms(s):
        return None if s is None else s * 1e3

    return [{**key, "device": how["device"], "device_name": how["device_name"], "threads": threads,
             "precision": how["precision"], "channels_last": int(how["channels_last"]),
             "infer_batch_size": t.batch, "infer_img_size": input_shape(entry)[-1],
             "infer_step_time": ms(t.median), "infer_step_time_p90": ms(t.p90),
             "infer_step_time_iqr": ms(t.iqr), "infer_runs": t.runs,
             "infer_samples_per_sec": t.per_second, "status": t.status,
             "zoo_version": zoo.__version__, **{c: versions.get(c, "") for c in VERSION_COLUMNS}}
            for t in timings]


def time_model(entry: Entry, how: dict) -> list[dict]:
    """The sweep at ``how["threads"]``, and the smallest batch on one thread where that is more
    than one."""
    model = build(entry, how["device"])
    if how["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    shape = input_shape(entry)

    def step(batch):
        return latency.model_step(model, shape, batch, precision=how["precision"],
                                  channels_last=how["channels_last"], device=how["device"])

    rows = []
    for threads, batches in [(how["threads"], how["batches"])] + (
            [(1, [min(how["batches"])])] if how["threads"] > 1 else []):
        timings = latency.sweep(step, batches, threads=threads, budget=how["budget"],
                                min_run_time=how["min_run_time"])
        rows += rows_of(entry, timings, how, threads)
    return rows


def _status(result: dict) -> str:
    rows = result["latency.csv"]
    most = max(r["threads"] for r in rows)
    timed = [r for r in rows if r["threads"] == most and r["infer_step_time"] is not None]
    if not timed:
        return "no batch size timed"
    best = max(timed, key=lambda r: r["infer_samples_per_sec"])
    one = [r for r in rows if r["threads"] == 1 and most > 1 and r["infer_step_time"] is not None]
    skipped = sum(r["infer_step_time"] is None for r in rows)
    flagged = sum(r["status"] in ("noisy", "few runs") for r in rows)
    first = timed[0]
    return (f"batch {first['infer_batch_size']}: {first['infer_step_time']:.1f} ms on {most} "
            f"threads" + (f", {one[0]['infer_step_time']:.1f} ms on 1" if one else "")
            + f"; best {best['infer_samples_per_sec']:.0f} img/s at batch {best['infer_batch_size']}"
            + (f", {skipped} skipped" if skipped else "")
            + (f", {flagged} noisy or few runs" if flagged else ""))


def _summary(done: int, models: int, failed: int, seconds: float, data_dir: Path) -> str:
    return (f"timed {done} of {models} models in {seconds:.0f}s, {failed} failed -> "
            f"{data_dir / 'latency.csv'}"
            + (f" (see {data_dir / 'latency-failures.csv'})" if failed else ""))


STAGE = Stage(
    module="zoo.stages.latency",
    name="latency",
    tables=("latency.csv", "latency-failures.csv"),
    measure=lambda entry, how: {"latency.csv": time_model(entry, how)},
    code=("zoo.stages.latency", "zoo.measure.latency"),
    status=_status,
    label="latency ",
    summary=_summary,
    one_at_a_time=True,
)


def run(entries: list[Entry], data_dir: Path | None = None, log=sys.stderr, *,
        how: dict | None = None, **limits) -> dict:
    """Time ``entries`` one at a time and merge them into ``data_dir``'s latency.csv (``limits``:
    timeout, memory limit, cache; see ``zoo.stages.base.run``)."""
    return stage.run(STAGE, entries, data_dir, log=log, settings=how or settings(), **limits)


def print_model(entry: Entry, how: dict, out=sys.stdout) -> None:
    """One model's timings, printed (nothing is written to data/)."""
    rows = time_model(entry, how)
    print(f"{entry.library}:{entry.name}  input {'x'.join(map(str, input_shape(entry)))}  "
          f"{how['device']} ({how['device_name']}), {how['precision']}"
          + (", channels-last" if how["channels_last"] else ""), file=out)
    print(f"{'threads':>7} {'batch':>6} {'median ms':>10} {'p90 ms':>9} {'IQR ms':>8} {'runs':>5} "
          f"{'img/s':>9}  status", file=out)
    for r in rows:
        if r["infer_step_time"] is None:
            print(f"{r['threads']:>7} {r['infer_batch_size']:>6} {'':>10} {'':>9} {'':>8} {'':>5} "
                  f"{'':>9}  {r['status']}", file=out)
            continue
        print(f"{r['threads']:>7} {r['infer_batch_size']:>6} {r['infer_step_time']:>10.2f} "
              f"{r['infer_step_time_p90']:>9.2f} {r['infer_step_time_iqr']:>8.2f} "
              f"{r['infer_runs']:>5} {r['infer_samples_per_sec']:>9.1f}  {r['status']}", file=out)
