"""``zoo memory``: one model's predicted memory, its breakdown at the peak, and what fits."""

from __future__ import annotations

import re
import sys

from zoo.catalogue.cards import ALLOCATOR_HEADROOM, CONTEXT_BYTES, usable_bytes
from zoo.errors import UsageError, error_line
from zoo.measure import memory
from zoo.store.schema import MAX_BATCH, largest_batch_text

PRECISION_ALIASES = {"amp": "fp16", "fp32": "fp32", "fp16": "fp16", "bf16": "bf16",
                     "amp-fp16": "fp16", "amp-bf16": "bf16"}
MAX_GPU_GB = 10_000  # far beyond any card; a larger size is a typo


def parse_gpu(text: str) -> float:
    """A card size in GB (taken as GiB), within what a card can be."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(gb|gib|g)?\s*", text, re.I)
    if not m:
        raise UsageError(f"--gpu {text!r}: expected a size such as 24GB")
    gb = float(m.group(1))
    if usable_bytes(gb) <= 0:
        raise UsageError(f"--gpu {text!r}: no larger than the {CONTEXT_BYTES // 2**20} MiB the CUDA "
                         "context takes")
    if gb > MAX_GPU_GB:
        raise UsageError(f"--gpu {text!r}: larger than any card (at most {MAX_GPU_GB:,} GB)")
    return gb


def parse_batch(batch: int) -> int:
    if not 1 <= batch <= MAX_BATCH:
        raise UsageError(f"--batch {batch}: must be between 1 and {MAX_BATCH:,}")
    return batch


def resolve(model: str, input_arg: str | None, log=sys.stderr):
    """(name, entry) for a zoo name or 'package.module:function'. A bare architecture name takes
    the library's default weights, and says so on ``log``."""
    from zoo.catalogue.entries import (
        default_weights,
        is_user_model,
        parse_shape,
        select,
        user_model,
    )

    if is_user_model(model):
        entry = user_model(model, input_arg)
        return model, entry
    matches = select([model])
    entry = matches[0] if len(matches) == 1 else default_weights(matches)
    if len(matches) > 1:
        print(f"zoo: {model!r} names {len(matches)} weights; using {entry.library}:{entry.name} "
              "(the library's default)", file=log)
    if input_arg:
        from zoo.catalogue.entries import UserModel

        shape = parse_shape(input_arg)
        entry = UserModel(entry.library, entry.arch, entry.weights, shape[-1], shape)
    return f"{entry.library}:{entry.name}", entry


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main(args) -> int:
    from zoo.catalogue.build import build, input_shape

    batch = parse_batch(args.batch)
    if args.optimizer not in memory.OPTIMIZERS:
        raise UsageError(f"--optimizer {args.optimizer!r}: choose from {', '.join(memory.OPTIMIZERS)}")
    if args.precision not in PRECISION_ALIASES:
        raise UsageError(f"--precision {args.precision!r}: choose from fp32, amp, fp16, bf16")
    precision = PRECISION_ALIASES[args.precision]
    gpu = parse_gpu(args.gpu)
    name, entry = resolve(args.model, args.input)
    shape = input_shape(entry)
    optimizer = args.optimizer if args.mode == "training" else None
    sim = memory.Simulator(build(entry, "meta"))
    try:
        pred = memory.predict(sim, shape, args.mode, precision, optimizer)
    except UsageError:
        raise
    except (RuntimeError, ValueError, TypeError, AssertionError, IndexError) as exc:
        raise UsageError(f"{name}: the model rejects input {'x'.join(map(str, shape))}: "
                         f"{error_line(exc)}") from None
    peak, parts = pred.at(batch)
    model_part, per_sample, worst = pred.law()
    budget = usable_bytes(gpu)
    fits = pred.largest_batch(budget, MAX_BATCH)
    what = f"{args.mode}, {args.precision}" + (f", {optimizer}" if optimizer else "")
    print(f"{name}  input {batch}x{'x'.join(map(str, shape))}  ({what})")
    print(f"{'category':<14}{'memory':>18}")
    for c in memory.CATEGORIES:
        print(f"{c:<14}{_mib(parts[c]):>18}")
    print(f"{'peak':<14}{_mib(peak):>18}   (predicted torch.cuda.max_memory_allocated)")
    print(f"law: {_mib(model_part)} + batch x {_mib(per_sample)} (worst residual "
          f"{100 * worst:.1f}% over batch 1-256)")
    cap = " (the search stops there)" if fits >= MAX_BATCH else ""
    print(f"largest batch on a {args.gpu} GPU: {largest_batch_text(fits)}{cap} (usable {_mib(budget)}: "
          f"{_mib(CONTEXT_BYTES)} kept for the CUDA context, {100 * ALLOCATOR_HEADROOM:.0f}% "
          f"for the allocator)")
    return 0
