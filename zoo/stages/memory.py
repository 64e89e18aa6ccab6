"""The memory stage: for each model, predicted peak memory of inference and of one training step
(batch sweep x optimizer x precision), the fitted law, the largest batch per GPU size and what the
usual savings buy. Writes ``data/memory.csv``, ``data/memory-fit.csv``, ``data/memory-savings.csv``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import torch

from zoo.catalogue.build import build, input_shape
from zoo.catalogue import cards
from zoo.catalogue.entries import KEY, Entry
from zoo.measure import memory
from zoo.stages import base as stage
from zoo.stages.base import Stage
from zoo.stages.run import error_line, traceback_text
from zoo.store.schema import MAX_BATCH, TABLES, largest_batch_text

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
# the largest batch per card is searched for inference and for training with AdamW (what the
# will-it-fit tables show; each search replays the step several times); SGD's and momentum's:
# zoo memory MODEL --optimizer sgd --gpu CARD
FIT_OPTIMIZERS = ("", "adamw")
SAVINGS_BATCH = 32


def predictions(sim: memory.Simulator, shape, problems: list | None = None,
                half: memory.Simulator | None = None) -> dict[tuple, memory.Prediction]:
    """Every (mode, precision, optimizer) for one model; the forward/backward pass is simulated
    once per precision and shared by the optimizers, whose step is simulated once each.
    ``half``: the same model with its weights in fp16, for inference in fp16 and bf16.

    fp32 must run; a model that cannot run under AMP (an op the CPU autocast lists leave in the
    wrong dtype) or in half precision loses only those rows, and ``problems`` gets the reason."""
    out = {}
    steps = {o: sim.step(o) for o in memory.OPTIMIZERS}
    for precision in ("fp32", "amp-bf16"):
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
        for p in (("amp-fp16", "amp-bf16") if precision == "amp-bf16" else ("fp32",)):
            out[("inference", p, "")] = dataclasses.replace(inference, precision=p)
            for o in memory.OPTIMIZERS:
                out[("training", p, o)] = fb.with_step(steps[o], precision=p, optimizer=o)
    if half is not None:
        try:
            inference = memory.predict(half, shape, "inference", "fp16")
        except Exception as exc:
            if problems is None:
                raise
            problems.append(("half", error_line(exc), traceback_text()))
        else:  # weights in fp16 or bf16: 2-byte elements either way, the same ops
            for p in ("fp16", "bf16"):
                out[("inference", p, "")] = dataclasses.replace(inference, precision=p)
    return out


def savings(sim: memory.Simulator, shape, preds) -> dict:
    """Bytes saved at batch SAVINGS_BATCH against training in fp32 with AdamW. The variants
    (in-place activations, checkpointing) are simulated at that batch size itself."""
    b = SAVINGS_BATCH
    base = preds[("training", "fp32", "adamw")]
    peak = base.at(b)[0]
    amp = preds.get(("training", "amp-bf16", "adamw"))
    row = {"batch": b, "peak_fp32_adamw_bytes": peak,
           "saved_by_amp_bf16_bytes": peak - amp.at(b)[0] if amp else None,
           "saved_by_sgd_bytes": peak - preds[("training", "fp32", "sgd")].at(b)[0],
           "saved_by_accumulation_4x_bytes": peak - base.at(b // 4)[0]}
    row.update(_inplace_savings(sim, shape, base, peak))
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


def _inplace_savings(sim: memory.Simulator, shape, base: memory.Prediction, peak: int) -> dict:
    """What in-place activations do for this model, in three columns:

    - ``inplace_case``: "saves" where some activation could run in place and does not;
      "already in place" where every one that can already does (torchvision's ReLUs);
      "not possible" where none can (GELU and the like have no in-place form);
    - ``saved_by_inplace_bytes``: what switching on the ones that could saves (0 where none can);
    - ``inplace_vs_out_of_place_bytes``: what in-place activations save against the same model
      with every one of them out of place (empty where none can run in place).
    Empty where the model cannot run that way (an activation after a split cannot be in place)."""
    could = _switchable(sim.model, False)
    does = _switchable(sim.model, True)
    if not could and not does:
        return {"inplace_case": "not possible", "saved_by_inplace_bytes": 0,
                "inplace_vs_out_of_place_bytes": None}

    def variant(modules, inplace):
        with _set_inplace(modules, inplace):
            return _saved(peak, lambda: memory.predict(
                sim, shape, "training", "fp32", batches=(SAVINGS_BATCH,)), base)

    saved = variant(could, True) if could else 0  # all in place: peak - saved
    lost = variant(does, False) if does else 0  # all out of place: peak - lost (lost <= 0)
    both = None if saved is None or lost is None else saved - lost
    return {"inplace_case": "saves" if could else "already in place",
            "saved_by_inplace_bytes": saved, "inplace_vs_out_of_place_bytes": both}


def _switchable(model, inplace: bool) -> list:
    """The modules with an ``inplace`` switch set to ``inplace`` (a dropout of rate 0 does
    nothing either way)."""
    return [m for m in model.modules() if isinstance(getattr(m, "inplace", None), bool)
            and m.inplace is inplace and getattr(m, "p", None) != 0]


@contextlib.contextmanager
def _set_inplace(modules: list, inplace: bool):
    """``modules`` run with ``inplace`` set while inside."""
    for m in modules:
        m.inplace = inplace
    try:
        yield
    finally:
        for m in modules:
            m.inplace = not inplace


def memory_model(entry: Entry) -> dict:
    start = time.perf_counter()
    meta = build(entry, "meta")
    half = memory.Simulator(copy.deepcopy(meta), dtype=torch.float16)
    sim = memory.Simulator(meta)
    shape = input_shape(entry)
    problems: list = []
    preds = predictions(sim, shape, problems, half)
    key = dict(zip(KEY, entry.key))
    rows, fits = [], []
    replayed: dict = {}  # fp16 and bf16 rows share one prediction, and its replays
    for (mode, precision, optimizer), pred in preds.items():
        same = replayed.setdefault((id(pred.m1), optimizer), {})
        for b in BATCHES:
            peak, parts = pred.at(b)
            if b not in same:
                same[b] = _replay(pred, b, problems)
            rows.append({**key, "mode": mode, "precision": precision, "optimizer": optimizer,
                         "batch": b, "peak_bytes": peak, **same[b],
                         **{f"{c}_bytes": v for c, v in parts.items()}})
        model_part, per_sample, worst = pred.law()
        parts = pred.parts(SAVINGS_BATCH)
        if "fits" not in same:
            same["fits"] = {f"max_batch_{card.slug}": largest_batch(pred, card, problems)
                            if optimizer in FIT_OPTIMIZERS else None for card in cards.FIT_CARDS}
        fits.append({**key, "mode": mode, "precision": precision, "optimizer": optimizer,
                     "model_bytes": model_part, "per_sample_bytes": per_sample,
                     "worst_residual": worst,
                     "parameter_bytes": parts["parameters"], "buffer_bytes": parts["buffers"],
                     "gradient_bytes": parts["gradients"], "optimizer_bytes": parts["optimizer"],
                     "activation_bytes_per_sample": pred.activations_per_sample(),
                     f"temporaries_max_bytes_b{SAVINGS_BATCH}": parts["temporaries"],
                     **same["fits"]})
    return {"memory.csv": rows, "memory-fit.csv": fits,
            "memory-savings.csv": [{**key, **savings(sim, shape, preds)}],
            "memory-failures.csv": [{**key, "stage": f"memory-{what}", "error": error,
                                     "traceback": tb} for what, error, tb in problems],
            "seconds": time.perf_counter() - start}


def _replay(pred: memory.Prediction, batch: int, problems: list) -> dict:
    """What torch.cuda.max_memory_allocated and max_memory_reserved would report (an H100's or
    H200's cuBLAS workspace), by the caching allocator's replay; empty where the two simulated
    batch sizes allocated differently (no trace to interpolate) or the replay failed (its
    reason goes to ``problems``)."""
    empty = {"allocated_bytes": None, "reserved_bytes": None}
    if pred.events1 is None:
        return empty
    try:
        r = pred.replay(batch)
    except Exception as exc:  # noqa: BLE001 - the rows stand without it; the reason is kept
        _note(problems, exc)
        return empty
    return {"allocated_bytes": r.max_allocated, "reserved_bytes": r.max_reserved}


def largest_batch(pred: memory.Prediction, card: cards.Card, problems: list) -> int:
    """The largest batch that runs on ``card`` by the allocator's replay within its capacity (by
    allocated bytes where no trace could be interpolated or the replay failed)."""
    if pred.events1 is not None:
        try:
            return pred.largest_batch_replayed(card.capacity, MAX_BATCH, card.cublas_workspace)
        except Exception as exc:  # noqa: BLE001
            _note(problems, exc)
    return pred.largest_batch(card.capacity, MAX_BATCH)


def _note(problems: list, exc: Exception) -> None:
    if not any(what == "replay" for what, _, _ in problems):  # once per model
        problems.append(("replay", error_line(exc), traceback_text()))


def print_model(entry: Entry, out=sys.stdout) -> None:
    """One model's memory laws and what fits, printed (your own model: nothing is written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = memory_model(entry)
    print(f"{entry.arch}  input Bx{'x'.join(map(str, input_shape(entry)))}", file=out)
    shown = [cards.BY_SLUG["rtx_4090"], cards.BY_SLUG["h100"]]
    head = (f"{'mode':<10}{'precision':<10}{'optimizer':<10}{'model part':>14}{'per sample':>14}"
            f"{'peak @32':>14}" + "".join(f"{c.name:>11}" for c in shown))
    print(head, file=out)
    for f in result["memory-fit.csv"]:
        peak32 = f["model_bytes"] + 32 * f["per_sample_bytes"]
        print(f"{f['mode']:<10}{f['precision']:<10}{f['optimizer'] or '-':<10}"
              f"{f['model_bytes'] / 2**20:>10,.1f} MiB{f['per_sample_bytes'] / 2**20:>10,.2f} MiB"
              f"{peak32 / 2**20:>10,.1f} MiB"
              + "".join(f"{largest_batch_text(f[f'max_batch_{c.slug}']) or '-':>11}"
                        for c in shown),
              file=out)
    for p in result["memory-failures.csv"]:
        print(f"note: {p['stage']}: {p['error']}", file=out)
    print("peak = predicted torch.cuda.max_memory_allocated; under each card, the largest batch "
          "that runs by the caching allocator's replay (zoo memory MODEL --gpu CARD for one "
          "configuration and any card)", file=out)


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
                                *(f"max_batch_{c.slug}" for c in cards.FIT_CARDS)]},
    measure=lambda entry, settings: memory_model(entry),
    code=("zoo.stages.memory", "zoo.measure.memory", "zoo.measure.allocator", "zoo.catalogue.cards",
          "zoo.catalogue:gpus.csv", "zoo.torch_private"),
    status=_status,
    label="memory ",
    summary=_summary,
)


def run(entries: list[Entry], data_dir: Path | None = None, log=sys.stderr, **how) -> dict:
    """Predict ``entries`` and merge them into the memory CSVs of ``data_dir`` (see
    ``zoo.stages.base.run`` for ``how``: workers, cache, scheduler, limits)."""
    return stage.run(STAGE, entries, data_dir, log=log, **how)
