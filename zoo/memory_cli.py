"""``zoo memory``: one model's predicted memory, its breakdown at the peak, and what fits."""

from __future__ import annotations

import importlib
import re
import sys

from zoo import memory
from zoo.memory_stage import CONTEXT_BYTES, ALLOCATOR_HEADROOM, usable_bytes

PRECISION_ALIASES = {"amp": "fp16", "fp32": "fp32", "fp16": "fp16", "bf16": "bf16",
                     "amp-fp16": "fp16", "amp-bf16": "bf16"}


class BadInput(ValueError):
    pass


def parse_gpu(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(gb|gib|g)?\s*", text, re.I)
    if not m or float(m.group(1)) <= 0:
        raise BadInput(f"--gpu {text!r}: expected a size such as 24GB")
    return float(m.group(1))


def parse_shape(text: str) -> tuple[int, ...]:
    parts = re.split(r"[x,]", text.strip().lower())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise BadInput(f"--input {text!r}: expected a shape such as 3x224x224") from None
    if not shape or any(d <= 0 for d in shape):
        raise BadInput(f"--input {text!r}: every dimension must be positive")
    return shape


def resolve(model: str, input_arg: str | None):
    """(name, meta-device builder, input shape) for a zoo name or 'package.module:function'."""
    if ":" in model and not model.startswith(("timm:", "torchvision:")):
        module_name, _, func_name = model.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise BadInput(f"cannot load {model!r}: {exc}") from None
        if input_arg is None:
            raise BadInput("your own model needs --input, e.g. --input 3x224x224")

        def make():
            import torch

            try:
                with torch.device("meta"):
                    return func()
            except Exception:
                return func().to("meta")
        return model, make, parse_shape(input_arg)
    from zoo.build import build
    from zoo.catalogue import select

    matches = select([model])
    entry = next((e for e in matches if e.library == "torchvision"), matches[0])
    shape = parse_shape(input_arg) if input_arg else (3, entry.img_size, entry.img_size)
    return f"{entry.library}:{entry.name}", lambda: build(entry, "meta"), shape


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main(args) -> int:
    from zoo.catalogue import UnknownModel

    try:
        if args.batch <= 0:
            raise BadInput(f"--batch {args.batch}: must be a positive integer")
        if args.optimizer not in memory.OPTIMIZERS:
            raise BadInput(f"--optimizer {args.optimizer!r}: choose from "
                           f"{', '.join(memory.OPTIMIZERS)}")
        if args.precision not in PRECISION_ALIASES:
            raise BadInput(f"--precision {args.precision!r}: choose from fp32, amp, fp16, bf16")
        precision = PRECISION_ALIASES[args.precision]
        gpu = parse_gpu(args.gpu)
        name, make, shape = resolve(args.model, args.input)
        optimizer = args.optimizer if args.mode == "training" else None
        try:
            pred = memory.predict(make, shape, args.mode, precision, optimizer)
        except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(f"the model rejects input {'x'.join(map(str, shape))}: {first}") from None
    except (BadInput, UnknownModel) as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    peak, parts = pred.at(args.batch)
    model_part, per_sample, worst = pred.law()
    budget = usable_bytes(gpu)
    fits = pred.largest_batch(budget)
    what = f"{args.mode}, {args.precision}" + (f", {optimizer}" if optimizer else "")
    print(f"{name}  input {args.batch}x{'x'.join(map(str, shape))}  ({what})")
    print(f"{'category':<14}{'memory':>18}")
    for c in memory.CATEGORIES:
        print(f"{c:<14}{_mib(parts[c]):>18}")
    print(f"{'peak':<14}{_mib(peak):>18}   (predicted torch.cuda.max_memory_allocated)")
    print(f"law: {_mib(model_part)} + batch x {_mib(per_sample)} (worst residual "
          f"{100 * worst:.1f}% over batch 1-256)")
    print(f"largest batch on a {args.gpu} GPU: {fits} (usable {_mib(budget)}: "
          f"{_mib(CONTEXT_BYTES)} kept for the CUDA context, {100 * ALLOCATOR_HEADROOM:.0f}% "
          f"for the allocator)")
    return 0
