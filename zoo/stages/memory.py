"""The memory stage: for each model, predicted peak memory of inference and of one training step
(batch sweep x optimizer x precision), the fitted law, the largest batch per GPU size and what the
usual savings buy. Writes ``data/memory.csv``, ``data/memory-fit.csv``, ``data/memory-savings.csv``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from zoo.catalogue.build import build, input_shape
from zoo.catalogue.cards import GPU_GB, usable_bytes
from zoo.catalogue.entries import KEY, Entry
from zoo.measure import memory
from zoo.stages import base as stage
from zoo.stages.base import Stage
from zoo.stages.run import error_line, traceback_text
from zoo.store.schema import MAX_BATCH, TABLES, largest_batch_text

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
SAVINGS_BATCH = 32


def predictions(sim: memory.Simulator, shape, problems: list | None = None
                ) -> dict[tuple, memory.Prediction]:
    """Every (mode, precision, optimizer) for one model; the forward/backward pass is simulated
    once per precision and shared by the optimizers, whose step is simulated once each.

    fp32 must run; a model that cannot run under AMP (an op the CPU autocast lists leave in the
    wrong dtype) loses only its AMP rows, and ``problems`` gets the reason."""
    out = {}
    steps = {o: sim.step(o) for o in memory.OPTIMIZERS}
    for precision in ("fp32", "bf16"):
        try:
            inference = memory.predict(sim, shape, "inference", precision)
            fb = memory.predict(sim, shape, "training", precision)
        except Exception as exc:
            if precision == "fp32" or problems is None:
                raise
            problems.append(("amp", error_line(exc), traceback_text()))
            continue
        # fp16 and bf16 autocast run the same ops with 2-byte elements: the same memory
        # (tests/test_memory.py checks it), so one simulation serves both
        for p in (("fp16", "bf16") if precision == "bf16" else ("fp32",)):
            out[("inference", p, "")] = dataclasses.replace(inference, precision=p)
            for o in memory.OPTIMIZERS:
                out[("training", p, o)] = fb.with_step(steps[o], precision=p, optimizer=o)
    return out


def savings(sim: memory.Simulator, shape, preds) -> dict:
    """Bytes saved at batch SAVINGS_BATCH against training in fp32 with AdamW. The variants
    (in-place activations, checkpointing) are simulated at that batch size itself."""
    b = SAVINGS_BATCH
    base = preds[("training", "fp32", "adamw")]
    peak = base.at(b)[0]
    amp = preds.get(("training", "bf16", "adamw"))
    row = {"batch": b, "peak_fp32_adamw_bytes": peak,
           "saved_by_amp_bf16_bytes": peak - amp.at(b)[0] if amp else None,
           "saved_by_sgd_bytes": peak - preds[("training", "fp32", "sgd")].at(b)[0],
           "saved_by_accumulation_4x_bytes": peak - base.at(b // 4)[0]}
    if _can_run_inplace(sim.model):
        with _inplace(sim.model):
            row["saved_by_inplace_bytes"] = _saved(peak, lambda: memory.predict(
                sim, shape, "training", "fp32", batches=(b,)), base)
    else:  # every activation that can run in place already does
        row["saved_by_inplace_bytes"] = 0
    row["saved_by_checkpointing_bytes"] = None
    if hasattr(sim.model, "set_grad_checkpointing"):
        row["saved_by_checkpointing_bytes"] = _saved(peak, lambda: memory.predict(
            sim, shape, "training", "fp32", checkpointing=True, batches=(b,)), base)
    return row


def _saved(peak: int, predict_variant, base: memory.Prediction) -> int | None:
    """Bytes a variant of the model saves at SAVINGS_BATCH, with the base's optimizer step;
    None where the model cannot run that way (an activation after a split cannot be in place;
    some timm models refuse checkpointing)."""
    try:
        variant = predict_variant()
    except (RuntimeError, AssertionError, NotImplementedError, ValueError):
        return None
    return peak - dataclasses.replace(variant, optimizer="adamw", step=base.step,
                                      step_events=base.step_events).at(SAVINGS_BATCH)[0]


def _can_run_inplace(model) -> bool:
    """Whether some module could run in place and does not (a dropout of rate 0 does nothing
    either way)."""
    return any(getattr(m, "inplace", True) is False and getattr(m, "p", None) != 0
               for m in model.modules())


@contextlib.contextmanager
def _inplace(model):
    """Every module that can run in place does (``inplace=True``) while inside."""
    changed = [m for m in model.modules()
               if hasattr(m, "inplace") and isinstance(m.inplace, bool) and not m.inplace]
    for m in changed:
        m.inplace = True
    try:
        yield model
    finally:
        for m in changed:
            m.inplace = False


def memory_model(entry: Entry) -> dict:
    start = time.perf_counter()
    sim = memory.Simulator(build(entry, "meta"))
    shape = input_shape(entry)
    problems: list = []
    preds = predictions(sim, shape, problems)
    key = dict(zip(KEY, entry.key))
    rows, fits = [], []
    for (mode, precision, optimizer), pred in preds.items():
        for b in BATCHES:
            peak, parts = pred.at(b)
            rows.append({**key, "mode": mode, "precision": precision, "optimizer": optimizer,
                         "batch": b, "peak_bytes": peak, **{f"{c}_bytes": v for c, v in parts.items()}})
        model_part, per_sample, worst = pred.law()
        parts = pred.parts(SAVINGS_BATCH)
        fits.append({**key, "mode": mode, "precision": precision, "optimizer": optimizer,
                     "model_bytes": model_part, "per_sample_bytes": per_sample,
                     "worst_residual": worst,
                     "parameter_bytes": parts["parameters"], "buffer_bytes": parts["buffers"],
                     "gradient_bytes": parts["gradients"], "optimizer_bytes": parts["optimizer"],
                     "activation_bytes_per_sample": pred.activations_per_sample(),
                     f"temporaries_max_bytes_b{SAVINGS_BATCH}": parts["temporaries"],
                     **{f"max_batch_{g}gb": pred.largest_batch(usable_bytes(g), MAX_BATCH)
                        for g in GPU_GB}})
    return {"memory.csv": rows, "memory-fit.csv": fits,
            "memory-savings.csv": [{**key, **savings(sim, shape, preds)}],
            "memory-failures.csv": [{**key, "stage": f"memory-{what}", "error": error,
                                     "traceback": tb} for what, error, tb in problems],
            "seconds": time.perf_counter() - start}


def print_model(entry: Entry, out=sys.stdout) -> None:
    """One model's memory laws and what fits, printed (your own model: nothing is written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = memory_model(entry)
    print(f"{entry.arch}  input Bx{'x'.join(map(str, input_shape(entry)))}", file=out)
    head = (f"{'mode':<10}{'precision':<10}{'optimizer':<10}{'model part':>14}{'per sample':>14}"
            f"{'peak @32':>14}" + "".join(f"{f'fits {g}GB':>11}" for g in (24, 80)))
    print(head, file=out)
    for f in result["memory-fit.csv"]:
        peak32 = f["model_bytes"] + 32 * f["per_sample_bytes"]
        print(f"{f['mode']:<10}{f['precision']:<10}{f['optimizer'] or '-':<10}"
              f"{f['model_bytes'] / 2**20:>10,.1f} MiB{f['per_sample_bytes'] / 2**20:>10,.2f} MiB"
              f"{peak32 / 2**20:>10,.1f} MiB"
              + "".join(f"{largest_batch_text(f[f'max_batch_{g}gb']):>11}" for g in (24, 80)),
              file=out)
    for p in result["memory-failures.csv"]:
        print(f"note: {p['stage']}: {p['error']}", file=out)
    print("peak = predicted torch.cuda.max_memory_allocated; 'fits' is the largest batch "
          "(zoo memory MODEL --gpu SIZE for one configuration)", file=out)


def _status(result: dict) -> str:
    text = f"ok in {result['seconds']:.1f}s"
    problems = result["memory-failures.csv"]
    return text + (", but " + "; ".join(p["error"] for p in problems) if problems else "")


def _summary(done: int, models: int, failed: int, seconds: float, data_dir: Path) -> str:
    return (f"predicted memory of {done} of {models} models in {seconds:.0f}s, {failed} failed "
            f"-> {data_dir / 'memory.csv'}")


STAGE = Stage(
    module="zoo.stages.memory",
    name="memory",
    tables=("memory.csv", "memory-fit.csv", "memory-savings.csv", "memory-failures.csv"),
    columns={"memory-fit.csv": [*TABLES["memory-fit.csv"].columns,
                                f"temporaries_max_bytes_b{SAVINGS_BATCH}",
                                *(f"max_batch_{g}gb" for g in GPU_GB)]},
    measure=lambda entry, settings: memory_model(entry),
    code=("zoo.stages.memory", "zoo.measure.memory", "zoo.catalogue.cards", "zoo.torch_private"),
    status=_status,
    label="memory ",
    summary=_summary,
)


def run(entries: list[Entry], data_dir: Path | None = None, log=sys.stderr, **how) -> dict:
    """Predict ``entries`` and merge them into the memory CSVs of ``data_dir`` (see
    ``zoo.stages.base.run`` for ``how``: workers, cache, scheduler, limits)."""
    return stage.run(STAGE, entries, data_dir, log=log, **how)
