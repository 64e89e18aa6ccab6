"""The three independent counters the reference is compared with, each run as its users run it.

Each gets a freshly built model, so hooks or buffers one leaves behind cannot reach another.
Every count comes back in MACs with the counter's own per-op breakdown and a note of what it could
not count (fvcore's unsupported ops are kept, not silenced).

- thop (``ultralytics-thop``): module hooks; counts MACs of conv/linear plus BatchNorm, activation
  and pooling work; functional ops (``F.scaled_dot_product_attention``, ``x @ y``) are invisible.
  Shape-only, so it runs on the meta device.
- fvcore: traces the model with ``torch.jit`` on real CPU tensors; its "flop" is one MAC; it adds
  norm and pooling work and lists ops it has no handle for (fused attention among them).
- torch: ``FlopCounterMode`` on CPU tensors under ``eval()`` + ``no_grad`` as a user would run it;
  CPU fused-attention kernels escape it (the reference runs the same counter on meta instead).
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from dataclasses import dataclass

import torch

from zoo.catalogue.build import build, build_cpu_fast, example_input
from zoo.catalogue.entries import Entry
from zoo.measure.flops import MetaShapes


@dataclass
class CounterResult:
    macs: float | None
    by_op: dict[str, float]  # counter's own op or module-type name -> MACs
    note: str = ""


def run_thop(entry: Entry, gmacs: float | None = None) -> CounterResult:
    import thop

    model = build(entry, "meta")
    # MetaShapes only spares re-running meta kernels for shapes already seen: thop's hooks see
    # the same modules and shapes
    with warnings.catch_warnings(), MetaShapes().mode():
        warnings.simplefilter("ignore")
        macs, _params, layers = thop.profile(model, inputs=(example_input(entry, "meta"),),
                                             verbose=False, ret_layer_info=True)
    by_type: Counter = Counter()

    def walk(tree, prefix):
        for name, (ops, _p, children) in tree.items():
            path = f"{prefix}.{name}" if prefix else name
            own = ops - sum(c[0] for c in children.values())
            if own:
                by_type[type(model.get_submodule(path)).__name__] += own
            walk(children, path)

    walk(layers, "")
    return CounterResult(float(macs), dict(by_type))


class CounterSkipped(Exception):
    """A counter not run on a model, and why (its cell is empty, the reason in counter-notes)."""


# fvcore traces a real forward on CPU tensors: its arithmetic and memory are real. It runs where
# that stays small: weights that fit beside their activations in one worker under 4 GB (3.73 GiB),
# and a forward that costs seconds, not minutes. Above either, the counter is not run; the
# reference, thop and torch count the model on the meta device or fake tensors, and fvcore's
# difference from the reference shows on the same architecture at a smaller size.
# A worker's peak is about 0.75 GiB (torch and timm imported) + the weights + up to 0.45 GiB for
# the trace and a batch-1 forward (FocalNet-H: 2.56 GiB of weights, 3.72 GiB at its peak). So 2.45
# GiB of weights at most: RegNetY-128GF (2.40) and ViT-H/14 (2.35) keep their fvcore count.
FVCORE_MAX_WEIGHT_BYTES = int(2.45 * 2**30)
FVCORE_MAX_GMACS = 200.0  # by the reference count; ViT-H/14 at 224 is 167


def run_fvcore(entry: Entry, gmacs: float | None = None) -> CounterResult:
    from fvcore.nn import FlopCountAnalysis

    weights = sum(t.numel() * t.element_size() for t in build(entry, "meta").state_dict().values())
    if weights > FVCORE_MAX_WEIGHT_BYTES:
        raise CounterSkipped(f"not run: fvcore needs the weights on real CPU tensors "
                             f"({weights / 2**30:.1f} GiB, over the "
                             f"{FVCORE_MAX_WEIGHT_BYTES / 2**30:g} GiB allowed)")
    if gmacs is not None and gmacs > FVCORE_MAX_GMACS:
        raise CounterSkipped(f"not run: fvcore runs a real forward pass on the CPU ({gmacs:.0f} "
                             f"GMACs, over the {FVCORE_MAX_GMACS:g} allowed)")
    model = build_cpu_fast(entry)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, example_input(entry, "cpu"))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = analysis.total()
        by_op = dict(analysis.by_operator())
        unsupported = analysis.unsupported_ops()
    note = "; ".join(f"{op} x{n}" for op, n in sorted(unsupported.items()))
    return CounterResult(float(total), {k: float(v) for k, v in by_op.items()},
                         f"unsupported: {note}" if note else "")


# Below this many GMACs a real CPU forward costs less than a fake one (fake tensors do no
# arithmetic but cost more per op); both give the same count.
REAL_BELOW_GMACS = 3.0


def run_torch_cpu(entry: Entry, gmacs: float | None = None) -> CounterResult:
    """``FlopCounterMode`` as run on CPU tensors, under ``eval()`` and ``no_grad``. Dispatch picks
    the same CPU kernels (so the same attention escapes it) on real tensors and on fake CPU tensors,
    which do no arithmetic: models the reference puts above ``REAL_BELOW_GMACS`` run on fake
    tensors, smaller ones on real zero-filled tensors, whichever is faster."""
    from torch.utils.flop_counter import FlopCounterMode

    from zoo.torch_private import FakeTensorMode

    real = gmacs is not None and gmacs < REAL_BELOW_GMACS
    model = build_cpu_fast(entry) if real else build(entry, "meta")
    with warnings.catch_warnings(), \
            (contextlib.nullcontext() if real else FakeTensorMode(allow_non_fake_inputs=True)):
        warnings.simplefilter("ignore")
        model = model if real else model.to_empty(device="cpu")
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example_input(entry, "cpu"))
    by_op = {str(op): flops / 2 for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    return CounterResult(counter.get_total_flops() / 2, by_op)


COUNTERS = {"thop": run_thop, "fvcore": run_fvcore, "torch": run_torch_cpu}


def versions() -> dict[str, str]:
    """The versions of the libraries a count depends on, as columns of counts.csv."""
    from zoo.store.cache import library_versions

    return dict(library_versions())
