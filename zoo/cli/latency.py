"""``zoo latency``: one model's inference time against batch size, printed; and the checks of the
timing options that ``zoo time`` shares."""

from __future__ import annotations

from zoo.errors import UsageError, error_line
from zoo.measure import latency
from zoo.store.schema import MAX_BATCH


def parse_batches(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]: positive whole numbers up to the largest batch the zoo knows."""
    try:
        batches = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        raise UsageError(f"--batch {text!r}: expected batch sizes such as 1,8,32") from None
    if not batches or not all(1 <= b <= MAX_BATCH for b in batches):
        raise UsageError(f"--batch {text!r}: each batch size must be between 1 and {MAX_BATCH:,}")
    return batches


def parse_threads(threads: int | None) -> int:
    cores = latency.all_cores()
    if threads is None:
        return cores
    if not 1 <= threads <= cores:
        raise UsageError(f"--threads {threads}: this machine lets this process use 1 to {cores}")
    return threads


def parse_budget(budget: float) -> float:
    if not budget > 0:
        raise UsageError(f"--budget {budget:g}: must be a positive number of seconds")
    return budget


def timing_settings(args) -> dict:
    """``zoo time``'s settings, checked before anything is timed."""
    from zoo.stages import latency as latency_stage

    return latency_stage.settings(parse_batches(args.batch), parse_budget(args.budget),
                                  threads=parse_threads(args.threads))


def main(args) -> int:
    from zoo.cli.memory import resolve
    from zoo.stages import latency as latency_stage

    batches = parse_batches(args.batch)
    threads = parse_threads(args.threads)
    budget = parse_budget(args.budget)
    if args.device not in ("cpu", "cuda"):
        raise UsageError(f"--device {args.device!r}: choose cpu or cuda")
    if args.precision not in latency.PRECISIONS:
        raise UsageError(f"--precision {args.precision!r}: choose from "
                         f"{', '.join(latency.PRECISIONS)}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is visible to this process")
    name, entry = resolve(args.model, args.input)
    how = {**latency_stage.settings(batches, budget, threads=threads), "device": args.device,
           "device_name": latency.device_name(args.device), "precision": args.precision,
           "channels_last": args.channels_last}
    try:
        latency_stage.print_model(entry, how)
    except UsageError:
        raise
    except (RuntimeError, ValueError, TypeError, AssertionError, IndexError) as exc:
        raise UsageError(f"{name}: failed: {error_line(exc)}") from None
    return 0
