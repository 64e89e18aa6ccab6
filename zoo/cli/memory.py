"""``zoo memory``: one model's predicted memory, its breakdown at the peak, and what fits."""

from __future__ import annotations

import re
import sys

from zoo.catalogue import cards
from zoo.errors import UsageError, error_line
from zoo.measure import memory
from zoo.store.schema import MAX_BATCH, largest_batch_text

PRECISION_ALIASES = {"amp": "amp-fp16", **{p: p for p in memory.PRECISIONS}}


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
    from zoo.stages import memory as memory_stage

    batch = parse_batch(args.batch)
    if args.optimizer not in memory.OPTIMIZERS:
        raise UsageError(f"--optimizer {args.optimizer!r}: choose from {', '.join(memory.OPTIMIZERS)}")
    if args.precision not in PRECISION_ALIASES:
        raise UsageError(f"--precision {args.precision!r}: choose from "
                         f"{', '.join(PRECISION_ALIASES)}")
    precision = PRECISION_ALIASES[args.precision]
    if precision in memory.HALF and args.mode == "training":
        raise UsageError(f"--precision {args.precision}: weights in half precision are modelled "
                         "for inference; train with amp-fp16 or amp-bf16")
    card = cards.find(args.gpu)
    name, entry = resolve(args.model, args.input)
    shape = input_shape(entry)
    optimizer = args.optimizer if args.mode == "training" else None
    try:
        pred = memory.predict(lambda: build(entry, "meta"), shape, args.mode, precision, optimizer)
    except UsageError:
        raise
    except (RuntimeError, ValueError, TypeError, AssertionError, IndexError) as exc:
        raise UsageError(f"{name}: the model rejects input {'x'.join(map(str, shape))}: "
                         f"{error_line(exc)}") from None
    peak, parts = pred.at(batch)
    replay = pred.replay(batch, workspace=card.cublas_workspace) if pred.events1 is not None else None
    model_part, per_sample, worst = pred.law()
    fits = memory_stage.largest_batch(pred, card, [])  # by allocated bytes where no trace
    what = f"{args.mode}, {precision}" + (f", {optimizer}" if optimizer else "")
    print(f"{name}  input {batch}x{'x'.join(map(str, shape))}  ({what})")
    print(f"{'category':<14}{'memory':>18}")
    for c in memory.CATEGORIES:
        print(f"{c:<14}{_mib(parts[c]):>18}")
    print(f"{'peak':<14}{_mib(peak):>18}   (the tensors' blocks at the peak)")
    if replay is not None:  # no trace where the two simulated batch sizes ran different ops
        print(f"{'allocated':<14}{_mib(replay.max_allocated):>18}   "
              "(torch.cuda.max_memory_allocated, by the caching allocator's replay)")
        print(f"{'reserved':<14}{_mib(replay.max_reserved):>18}   (torch.cuda.max_memory_reserved)")
    print(f"law: {_mib(model_part)} + batch x {_mib(per_sample)} (worst residual "
          f"{100 * worst:.1f}% over batch 1-256)")
    cap = " (the search stops there)" if fits >= MAX_BATCH else ""
    print(f"largest batch on {card.name}: {largest_batch_text(fits)}{cap} (the allocator may "
          f"reserve {_mib(card.capacity)}: {_mib(card.cuda_total)} CUDA total less "
          f"{cards.CONTEXT_MIB} MiB for the CUDA context)")
    return 0
