"""Device-free memory prediction: a simulation of the real step on fake tensors.

The model runs on ``FakeTensorMode`` CPU tensors (shapes, dtypes and the real kernels' output
sizes, no storage), under a dispatch-level tracker that sees every storage born and freed and
files it in one category:

- ``parameters``, ``buffers``: the model's own tensors;
- ``gradients``: a parameter's ``.grad`` once accumulated;
- ``optimizer``: tensors the optimizer keeps in its state;
- ``activations``: tensors autograd saves for the backward pass;
- ``temporaries``: everything else alive at a moment (outputs, workspace of one op, weight copies
  cast by autocast, the loss).

It predicts what CUDA's ``torch.cuda.max_memory_allocated`` would report, with the caching
allocator's rounding of each block to 512 bytes and the cuBLAS workspace that the allocator hands
out on the first matrix product of each thread (forward and autograd's backward thread), and
without the CUDA context, which that counter does not see either: ``max_memory_allocated`` counts
tensor blocks, ``max_memory_reserved`` the segments the allocator holds, and neither counts the
context (about 300-500 MB with lazy module loading), which ``nvidia-smi`` does show.

Batch size: every tensor of the step has a size affine in the batch (a fixed part + batch x a
per-sample part), and the step runs the same ops at any batch. So the step is simulated at two batch
sizes, and the memory after every event is interpolated to any other batch exactly (up to the
512-byte rounding): the peak at batch b is the largest of those lines at b. This is the source
document's law, memory = model part + batch x per-sample part, event by event.

The two batch sizes cost one simulation: at batch PROBE (2**32; fake tensors hold no data) every
storage's bytes show both parts at once, and the tracker counts each storage at both batch sizes
(``Simulator.runs``). Where the model's memory is not affine in the batch, torch refuses the sizes
at PROBE, and the step is simulated at each batch instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import weakref
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from zoo.measure import allocator
from zoo.torch_private import (
    FakeTensor,
    FakeTensorMode,
    UncompiledDispatchMode,
    adam_reads_step_as_one,
    attention_as_one_op,
    cuda_autocast_lists,
    device_query,
    fake_copy,
    fake_outputs,
    fake_tensor_errors_unlogged,
    tree_flatten,
)

_log = logging.getLogger(__name__)
CATEGORIES = ["parameters", "buffers", "gradients", "optimizer", "activations", "temporaries",
              "workspace"]
_OPTIMIZER, _TEMPORARIES = CATEGORIES.index("optimizer"), CATEGORIES.index("temporaries")
OPTIMIZERS = ["sgd", "momentum", "adamw"]
# fp32; AMP (fp32 weights, matrix products and convolutions under autocast); and the weights
# themselves in half precision (``model.half()``: how models are served)
PRECISIONS = ["fp32", "amp-fp16", "amp-bf16", "fp16", "bf16"]
AMP = {"amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}
HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
BLOCK = 512  # CUDA caching allocator: every block is a multiple of 512 bytes
CUBLAS_WORKSPACE = 32 * 2**20  # per thread that runs a matrix product; 32 MiB on Hopper (sm90)
MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "_scaled_mm", "matmul", "linear"}
SIM_BATCHES = (2, 4)  # BatchNorm in train mode needs more than one sample
# One simulation serves several batch sizes (Simulator.runs): it runs at batch PROBE, where a
# storage of ``fixed + batch x per_sample`` bytes has ``per_sample`` as its bytes' nearest multiple
# of PROBE, and ``fixed`` as the rest (within 2 GiB either way: no tensor of the catalogue that does
# not grow with the batch comes near). A tensor that grows faster than the batch passes int64's
# 2**63 bytes at PROBE, and torch refuses it: the simulation then runs at each batch instead.
PROBE = 1 << 32
_LANE = 64  # the tracker counts the bytes at each batch in one integer, 64 bits apiece
_STEP, _SECOND = 1 << 40, 1 << 41  # serials of the optimizer step's events, of a second step's


def block_bytes(nbytes: int) -> int:
    return BLOCK * math.ceil(nbytes / BLOCK) if nbytes else 0


class MemoryTracker(UncompiledDispatchMode):
    """Follows every storage's life and records memory by category after every op."""

    def __init__(self, workspace: int = CUBLAS_WORKSPACE, fake_mode: FakeTensorMode | None = None,
                 outputs: dict | None = None, shortcuts: bool = True,
                 batches: tuple[int, ...] | None = None):
        """``batches``: the model runs at batch PROBE, and the tracker counts every storage at
        each of these batch sizes instead (see ``traces``)."""
        super().__init__()
        self.batches = batches
        # bytes at each batch, packed in one integer (batch i's in bits 64i to 64i+63): sums and
        # comparisons of packed counts are those of each batch's, and a total is never negative
        self._size = block_bytes if batches is None else self._sizes
        self._each = 1 if batches is None else sum(1 << (_LANE * i) for i in range(len(batches)))
        self._smallest = min(batches) if batches else None
        self._known_sizes: dict[int, int] = {}
        self.fake_mode = fake_mode
        # fake tensors: ops made cheaper than by FakeTensorMode's dispatch (see torch_private.fake_outputs), with
        # outputs by call shapes in ``outputs``
        self.shortcuts = shortcuts and fake_mode is not None
        self.outputs = outputs if outputs is not None else {}
        self.meta_ok = False  # meta tensors are tracked too (the optimizer step on meta)
        self.live: dict[int, list] = {}  # id(storage) -> [bytes, category, serial]
        self.current = Counter()
        self._changed = False  # whether ``current`` changed since the last ``record``
        # every allocation and free, for the caching allocator's replay (zoo.measure.allocator):
        # (serial, bytes as the storage asks them) and (serial, -1)
        self.events: list[tuple[int, int]] = []
        self.workspace_ids: list[int] = []
        self._serial = 0
        self.timeline: list[list[int]] = []  # memory by category after every event
        self.workspace = workspace
        self.phase = "forward"
        self.active = True
        self._phases_with_workspace: set = set()
        self.run_start = 0  # events from here on are the step's own (before: the model, the input)
        self.grad_ids: list[int] = []

    # -- bookkeeping -------------------------------------------------------------------------
    def track(self, tensor: torch.Tensor, category: str) -> None:
        """Registers (or re-files) the storage behind ``tensor``."""
        if not isinstance(tensor, torch.Tensor) or (
                not self.meta_ok and type(tensor) is not FakeTensor and tensor.is_meta):
            return  # (a fake tensor's is_meta would be a dispatched query: 20 us a tensor)
        st = tensor.untyped_storage()
        key = id(st)
        if key in self.live:
            entry = self.live[key]
            if _rank(category) > _rank(entry[1]):
                self.current[entry[1]] -= entry[0]
                entry[1] = category
                self.current[category] += entry[0]
                self._changed = True
            return
        nbytes = st.nbytes()
        size = self._size(nbytes)
        self.live[key] = [size, category, self._allocate(nbytes)]
        weakref.finalize(st, self._free, key)
        self.current[category] += size
        self._changed = True

    def _sizes(self, nbytes: int) -> int:
        """The block sizes, packed, at each of ``batches`` of a storage of ``nbytes`` at PROBE
        (remembered: a step allocates the same few sizes again and again)."""
        size = self._known_sizes.get(nbytes)
        if size is None:
            size = self._known_sizes[nbytes] = self._new_sizes(nbytes)
        return size

    def _new_sizes(self, nbytes: int) -> int:
        per_sample, fixed = _affine(nbytes)
        if fixed + per_sample * self._smallest < 0:  # not affine (ceil(batch / 2) samples?)
            raise NotAffine(f"a storage of {nbytes} bytes at batch {PROBE}")
        return sum(block_bytes(fixed + per_sample * b) << (_LANE * i)
                   for i, b in enumerate(self.batches))

    def traces(self) -> list["Trace"]:
        """What a tracker at each batch size would have recorded: one ``Trace`` per batch of
        ``batches`` (one, of this tracker, without)."""
        if self.batches is None:
            return [Trace(self.timeline, self.events, self.run_start, self.workspace_ids,
                          self.grad_ids)]
        mask = (1 << _LANE) - 1
        ev = np.array(self.events, dtype=np.int64).reshape(-1, 2)
        per_sample, fixed = _affine(ev[:, 1])
        out = []
        for i, b in enumerate(self.batches):
            shift = _LANE * i
            sizes = np.where(ev[:, 1] < 0, -1, fixed + per_sample * b)
            out.append(Trace([[(v >> shift) & mask for v in row] for row in self.timeline],
                             np.stack([ev[:, 0], sizes], axis=1), self.run_start,
                             self.workspace_ids, self.grad_ids))
        return out

    def _allocate(self, nbytes: int) -> int:
        serial = self._serial
        self._serial += 1
        if self.active:
            self.events.append((serial, nbytes))
        return serial

    def _free(self, key: int) -> None:
        entry = self.live.pop(key, None)
        if entry is not None:
            self.current[entry[1]] -= entry[0]
            self._changed = True
            if self.active:
                self.events.append((entry[2], -1))
            self.record()

    def forget(self, *tensors: torch.Tensor) -> None:
        """Takes tracked storages out, as if they had never been on the device (Adam's step
        counts, which live on the host): their bytes leave the counts and their allocations the
        events."""
        gone = set()
        for tensor in tensors:
            entry = self.live.pop(id(tensor.untyped_storage()), None)
            if entry is not None:
                self.current[entry[1]] -= entry[0]
                self._changed = True
                gone.add(entry[2])
        if gone:  # (one pass over the events for all of them: a model has thousands)
            self.events = [e for e in self.events if e[0] not in gone]

    def serials(self, category: str) -> list[int]:
        """The serials of the storages of ``category`` alive now."""
        return [e[2] for e in self.live.values() if e[1] == category]

    def record(self) -> None:
        """Appends memory by category, when it changed (ops that allocate nothing, such as
        views or fake tensors' device queries, add no event)."""
        if self.active and (self._changed or not self.timeline):
            self._changed = False
            row = [self.current[c] for c in CATEGORIES]
            if not self.timeline or row != self.timeline[-1]:
                self.timeline.append(row)

    def stop(self) -> "MemoryTracker":
        """Freezes the timeline: what is freed afterwards (the model itself) is not the step's."""
        self.grad_ids = self.serials("gradients")
        self.active = False
        return self

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.shortcuts:
            device = device_query(func, args)
            if device is not None:
                self.record()  # as after any op (a tensor may have been freed meanwhile)
                return device
            out = fake_outputs(func, args, kwargs, self.fake_mode, self.outputs)
        elif self.meta_ok and _writes_in_place_only(func) and _on_meta(args):
            # the optimizer step on meta tensors: an in-place multi-tensor op (AdamW's lerp_,
            # addcmul_, addcdiv_) allocates nothing and has no data to write, and its meta
            # kernel checks each tensor one by one (about 0.1 ms each): skipped
            self.record()
            return None
        else:
            out = func(*args, **kwargs)
        for t in ((out,) if isinstance(out, torch.Tensor) else
                  out if isinstance(out, (tuple, list)) else tree_flatten(out)[0]):
            if isinstance(t, torch.Tensor):
                self.track(t, "temporaries")
        # the first matrix product of a thread gets its cuBLAS workspace, after its output
        if self.workspace and self.phase not in self._phases_with_workspace \
                and func.__name__.split(".")[0] in MATMUL_OPS:
            self._phases_with_workspace.add(self.phase)
            self.current["workspace"] += self.workspace * self._each
            self._changed = True
            self.workspace_ids.append(self._allocate(self.workspace))
        self.record()
        return out

    def hooks(self):
        """Saved-tensor hooks that file what autograd keeps for backward as activations."""
        def pack(t):
            self.track(t, "activations")
            return t
        return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


def _affine(nbytes):
    """(per_sample, fixed) bytes of a storage of ``nbytes`` bytes at batch PROBE."""
    per_sample = (nbytes + PROBE // 2) // PROBE
    return per_sample, nbytes - per_sample * PROBE


class NotAffine(ValueError):
    """A storage whose size is not a fixed part + batch x a per-sample part (see PROBE)."""


@dataclass
class Trace:
    """What a tracker recorded of one simulated step at one batch size."""

    timeline: list  # memory by category after every event
    events: list | np.ndarray  # (serial, bytes; -1 for a free)
    run_start: int
    workspace_ids: list
    grad_ids: list


_IN_PLACE_ONLY: dict = {}


def _writes_in_place_only(func) -> bool:
    """Whether ``func`` is a multi-tensor (``_foreach_``) op that writes into its inputs and
    returns nothing."""
    known = _IN_PLACE_ONLY.get(func)
    if known is None:
        schema = getattr(func, "_schema", None)
        known = _IN_PLACE_ONLY[func] = bool(
            schema is not None and schema.name.startswith("aten::_foreach_")
            and not schema.returns and any(a.alias_info is not None and a.alias_info.is_write
                                           for a in schema.arguments))
    return known


def _on_meta(args) -> bool:
    first = args[0] if args else None
    return bool(isinstance(first, (list, tuple)) and first and isinstance(first[0], torch.Tensor)
                and first[0].is_meta)


def model_tensors(model: nn.Module):
    """(tensor, "parameters" or "buffers") in the order ``Module.to_empty`` and ``.cuda()``
    allocate them on the device: each module's children first, then its own parameters, then
    its own buffers."""
    for child in model.children():
        yield from model_tensors(child)
    for _, p in model.named_parameters(recurse=False):
        yield p, "parameters"
    for _, b in model.named_buffers(recurse=False):
        yield b, "buffers"


_RANKS = {c: i for i, c in enumerate(["temporaries", "activations", "workspace", "optimizer",
                                      "gradients", "buffers", "parameters"])}


def _rank(category: str) -> int:
    return _RANKS[category]


# ---- one simulated step ---------------------------------------------------------------------

@contextlib.contextmanager
def _autocast(precision: str, cache: bool = True):
    """Autocast for ``precision``, casting as CUDA's autocast does (its op lists, not the CPU's:
    ``torch_private.cuda_autocast_lists``). ``cache``: whether a weight cast once is kept for
    the rest of the pass."""
    if precision not in AMP:
        with torch.autocast("cpu", enabled=False):
            yield
        return
    with cuda_autocast_lists(), torch.autocast("cpu", dtype=AMP[precision], cache_enabled=cache):
        yield


def make_optimizer(name: str, params):
    # foreach=True: the implementation CUDA defaults to (and its temporaries)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, foreach=True)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3, foreach=True)
    raise ValueError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")


def _output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


# Outputs by call shapes (see _fake_key), shared by all simulators of a process: models share
# many shapes (a family's blocks, the same network in two libraries).
_OUTPUTS: dict = {}
_OUTPUTS_LIMIT = 500_000  # entries; past it the cache starts afresh


class Simulator:
    """One model on fake CPU tensors (``fake=False``: real ones), simulated as often as needed.

    The fake model is made once; each simulation starts from the same state (no gradients, no
    hooks, no optimizer, checkpointing off) and tracks the model's tensors afresh.
    ``shortcuts=False`` runs every op through FakeTensorMode's own dispatch (and its cache), the
    reference the shortcuts are tested against; ``probe=False`` simulates the step at each batch
    size (``runs``), the reference the one simulation at PROBE is tested against."""

    def __init__(self, meta_model: nn.Module, fake: bool = True, shortcuts: bool = True,
                 dtype: torch.dtype = torch.float32, probe: bool = True):
        self.fake = fake
        self.probe = probe  # one simulation for every batch size (see runs)
        self.dtype = dtype  # of the weights and the input: float16 or bfloat16 for fp16, bf16
        if dtype != torch.float32:
            meta_model = meta_model.to(dtype)
        self.shortcuts = shortcuts
        self.mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else None
        if fake and shortcuts:
            # The mode's own cache keys every call at a cost above most meta kernels; the
            # simulators' cache serves the repeats instead.
            self.mode.cache_enabled = False
        # the model's tensors as meta shapes, for the optimizer step (see step)
        self.meta_tensors = [[(p.shape, p.dtype, p.requires_grad) for p in meta_model.parameters()],
                             [(b.shape, b.dtype) for b in meta_model.buffers()]]
        if len(_OUTPUTS) > _OUTPUTS_LIMIT:
            _OUTPUTS.clear()
        if fake:
            self.model = fake_copy(meta_model, self.mode)
        else:
            self.model = meta_model.to_empty(device="cpu")
            with torch.no_grad():  # real tensors (the check against a real run): defined values
                for t in list(self.model.parameters()) + list(self.model.buffers()):
                    t.normal_(0, 0.01) if t.is_floating_point() else t.zero_()

    def _tensors(self):
        return self.mode if self.mode is not None else contextlib.nullcontext()

    def _tracker(self, workspace: int, batches: tuple | None = None) -> MemoryTracker:
        tracker = MemoryTracker(workspace, self.mode, _OUTPUTS, self.shortcuts, batches)
        for t, category in model_tensors(self.model):
            tracker.track(t, category)
        return tracker

    def _clean(self) -> None:
        for p in self.model.parameters():
            p.grad = None

    def runs(self, input_shape: tuple, batches: tuple, mode: str, precision: str = "fp32",
             workspace: int = CUBLAS_WORKSPACE, checkpointing: bool = False) -> list[Trace]:
        """``run`` at each of ``batches``, as one ``Trace`` each. On fake tensors the step is
        simulated once, at batch PROBE, and each tensor's bytes at every batch follow from its
        bytes there: as exact as a run at each batch, at the cost of one. Where that cannot be
        (a tensor that is not affine in the batch, an op that refuses such sizes), it runs at
        each batch."""
        if self.fake and self.probe:
            try:
                with fake_tensor_errors_unlogged():
                    return self.run(input_shape, PROBE, mode, precision, workspace, checkpointing,
                                    batches=tuple(batches)).traces()
            except Exception as exc:  # noqa: BLE001 (a model that fails fails again below)
                _log.debug("simulated at each batch size: %s: %s", type(exc).__name__, exc)
        return [self.run(input_shape, b, mode, precision, workspace, checkpointing).traces()[0]
                for b in batches]

    def run(self, input_shape: tuple, batch: int, mode: str, precision: str = "fp32",
            workspace: int = CUBLAS_WORKSPACE, checkpointing: bool = False,
            batches: tuple | None = None) -> MemoryTracker:
        """One inference pass (``mode="inference"``, as under ``inference_mode``) or one training
        forward + backward (``mode="training"``). ``batches``: a tracker that counts bytes at
        these batch sizes (``batch`` must be PROBE; see ``runs``)."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
        if HALF.get(precision, torch.float32) != self.dtype:
            raise ValueError(f"precision {precision} needs a Simulator made with the weights in "
                             f"{HALF.get(precision, torch.float32)}, not {self.dtype}")
        model = self.model
        if checkpointing and not hasattr(model, "set_grad_checkpointing"):
            raise ValueError("this model does not support gradient checkpointing")
        handles = []
        try:
            with self._tensors():
                tracker = self._tracker(workspace, batches)
                if checkpointing:
                    model.set_grad_checkpointing(True)
                x = torch.empty(batch, *input_shape, dtype=self.dtype)
                tracker.track(x, "temporaries")
                tracker.record()
                tracker.run_start = len(tracker.events)
                if mode == "inference":
                    # Served as under inference_mode, simulated under no_grad: on a GPU the two
                    # allocate the same tensors, and autocast keeps no weight casts under
                    # inference_mode (hence cache=False). Under inference_mode, FakeTensorMode
                    # gets composite ops (conv2d, max_pool2d) whole and decomposes them out of
                    # the tracker's sight, missing what they allocate inside (max pooling's
                    # int64 indices, which CUDA makes without autograd too), at 1-2 ms an op.
                    # Attention stays one op, as under inference_mode (attention_as_one_op).
                    model.eval()
                    with tracker, torch.no_grad(), _autocast(precision, cache=False), \
                            attention_as_one_op():
                        out = model(x)
                        del out
                    return tracker.stop()
                model.train()
                for p in model.parameters():
                    if p.requires_grad:
                        handles.append(p.register_post_accumulate_grad_hook(
                            lambda p: tracker.track(p.grad, "gradients")))
                with tracker:
                    with tracker.hooks(), _autocast(precision):
                        loss = _output(model(x)).float().mean()
                    tracker.phase = "backward"  # autograd's own thread: a second cuBLAS workspace
                    loss.backward()
                    del loss
                    tracker.record()
                return tracker.stop()
        finally:
            for h in handles:
                h.remove()
            if checkpointing:
                model.set_grad_checkpointing(False)
            self._clean()

    def step(self, optimizer: str) -> MemoryTracker:
        """The optimizer step in steady state: parameters with gradients, two steps (the first
        creates the state), timeline of the second. Independent of the batch size.

        With fake tensors the step runs on meta tensors of the same shapes instead: an optimizer
        step picks no device-specific kernel (the step counts stay on the CPU, as on CUDA), and
        fake tensors would cost more than the step's ops themselves (their cache keys every
        parameter of each multi-tensor op)."""
        if not self.fake:
            return self._step(optimizer, list(self.model.parameters()),
                              list(self.model.buffers()))
        params, buffers = self.meta_tensors
        return self._step(optimizer,
                          [torch.empty(s, dtype=d, device="meta").requires_grad_(g)
                           for s, d, g in params],
                          [torch.empty(s, dtype=d, device="meta") for s, d in buffers])

    def _step(self, optimizer: str, params: list, buffers: list) -> MemoryTracker:
        tracker = MemoryTracker(0)
        tracker.meta_ok = True
        for p in params:
            tracker.track(p, "parameters")
        for b in buffers:
            tracker.track(b, "buffers")
        trainable = [p for p in params if p.requires_grad]
        try:
            for p in trainable:
                p.grad = torch.empty_like(p)
                tracker.track(p.grad, "gradients")
            opt = make_optimizer(optimizer, trainable)
            with tracker, adam_reads_step_as_one():
                tracker.run_start = len(tracker.events)
                opt.step()
                counts = []
                for state in opt.state.values():
                    for k, v in state.items():
                        if k == "step":  # a host tensor without capturable or fused
                            counts.append(v)
                        else:
                            tracker.track(v, "optimizer")
                tracker.forget(*counts)
                tracker.second_step = len(tracker.events)
                tracker.timeline.clear()
                tracker.record()
                opt.step()
                tracker.record()
            return tracker.stop()
        finally:
            for p in trainable:
                p.grad = None


def simulate(build_model, input_shape: tuple, batch: int, mode: str, precision: str = "fp32",
             workspace: int = CUBLAS_WORKSPACE, checkpointing: bool = False,
             fake: bool = True) -> MemoryTracker:
    """``Simulator.run`` on a model from ``build_model`` (it returns an ``nn.Module`` on the meta
    device); ``fake=False`` runs the same on real CPU tensors."""
    return Simulator(build_model(), fake, dtype=HALF.get(precision, torch.float32)).run(
        input_shape, batch, mode, precision, workspace,
                                              checkpointing)


def simulate_step(build_model, optimizer: str, fake: bool = True) -> MemoryTracker:
    """``Simulator.step`` on a model from ``build_model``."""
    return Simulator(build_model(), fake).step(optimizer)


# ---- the prediction for any batch -----------------------------------------------------------

@dataclass
class Prediction:
    """Peak memory as a function of batch size, from two simulated batch sizes.

    Training with an optimizer: the forward/backward timeline with the optimizer's state resident
    (steady state: it survives from the previous step; gradients do not, ``zero_grad`` frees
    them), followed by the step's own timeline, which holds the input batch too.
    """

    mode: str
    precision: str
    optimizer: str | None
    b1: int
    b2: int
    m1: np.ndarray  # events x categories at b1
    m2: np.ndarray
    step: np.ndarray | None = None  # events x categories of the optimizer step
    input_bytes_per_sample: int = 0
    # For the caching allocator's replay: the run's allocations and frees at b1 and b2 (serial,
    # bytes; bytes -1 for a free), None where they differ in more than their sizes
    events1: np.ndarray | None = None
    events2: np.ndarray | None = None
    run_start: int = 0  # events before it: the model's tensors and the input
    workspace_ids: tuple = ()
    workspace_bytes: int = 0  # each cuBLAS workspace, as simulated
    grad_ids: tuple = ()
    step_events: tuple | None = None  # the optimizer's first and second step (serial, bytes)

    def with_step(self, step: "MemoryTracker", **changes) -> "Prediction":
        """This forward/backward with the optimizer step ``step`` (``Simulator.step``)."""
        events = step.events
        return dataclasses.replace(
            self, step=np.array(step.timeline, dtype=float),
            step_events=(events[step.run_start:step.second_step], events[step.second_step:]),
            **changes)

    # ---- the caching allocator's replay ----------------------------------------------------
    def trace(self, batch: int, workspace: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """(ids, bytes, mark): the allocations and frees of the measured protocol at ``batch``,
        for ``zoo.measure.allocator.replay``: the model and the input, a first step (it makes
        the cuBLAS workspaces and the optimizer's state), then, from ``mark`` (where the
        measurement resets its peaks), a second step. A training step is the forward and
        backward pass, the optimizer step, and the gradients freed (``zero_grad``).
        ``workspace``: the cuBLAS workspace's size on the card (default: as simulated)."""
        ids, pieces, mark = self._protocol()
        s1, s2 = self.events1[:, 1], self.events2[:, 1]
        sizes = self._interpolated(s1, s2, batch)
        if self.b1 != self.b2:
            sizes = np.where(s1 < 0, -1, np.maximum(0, np.rint(sizes))).astype(np.int64)
        k = self.run_start
        head, run = sizes[:k], sizes[k:]
        is_ws, first, second, free = pieces
        if workspace is not None and is_ws.any():
            run = np.where(is_ws, workspace, run)
        return ids, np.concatenate([head, run, first, free, run[~is_ws], second, free]), mark

    def _protocol(self):
        """The parts of ``trace`` that do not depend on the batch: every event's id, the
        pieces that are not the forward/backward pass's (which of its events are cuBLAS
        workspaces, the optimizer's two steps, the gradients' frees) and the mark."""
        cached = getattr(self, "_protocol_cache", None)
        if cached is not None:
            return cached
        if self.events1 is None:
            raise ValueError("no allocation trace: the two simulated batch sizes ran different ops")
        ids = self.events1[:, 0].astype(np.int64)
        k = self.run_start
        run_ids = ids[k:]
        is_ws = np.isin(run_ids, np.array(self.workspace_ids, dtype=np.int64))
        first, second = self.step_events if self.step_events is not None else ([], [])
        first = np.array(first, dtype=np.int64).reshape(-1, 2)
        second = np.array(second, dtype=np.int64).reshape(-1, 2)
        grads = np.array(self.grad_ids, dtype=np.int64)
        before = [ids[:k], run_ids, first[:, 0] + _STEP, grads]  # zero_grad(set_to_none=True)
        after = [run_ids[~is_ws] + _SECOND, second[:, 0] + _STEP, grads + _SECOND]
        mark = sum(map(len, before))
        self._protocol_cache = (np.concatenate(before + after), (
            is_ws, first[:, 1], second[:, 1], np.full(len(grads), -1, dtype=np.int64)), mark)
        return self._protocol_cache

    def replay(self, batch: int, capacity: int | None = None,
               workspace: int | None = None) -> "allocator.Replay":
        """The caching allocator at ``batch`` (``capacity``: the bytes it may reserve; raises
        ``allocator.OutOfMemory`` past it; ``workspace``: as in ``trace``)."""
        _, sizes, mark = self.trace(batch, workspace)
        slots = getattr(self, "_slots", None)
        if slots is None:
            slots = self._slots = allocator.dense(self._protocol()[0])[0]
        return allocator.replay_slots(slots, sizes, capacity, mark)

    def largest_batch_replayed(self, capacity: int, limit: int = 1 << 16,
                               workspace: int | None = None) -> int:
        """The largest batch that runs without an out-of-memory error when the allocator may
        reserve ``capacity`` bytes (0 if none), with a cuBLAS ``workspace`` of that size. The
        largest batch by allocated bytes bounds it from above (the reserved memory holds the
        allocated); from there the search goes down."""
        simulated = self.workspace_bytes * len(self.workspace_ids)
        used = (workspace if workspace is not None else self.workspace_bytes) * len(self.workspace_ids)
        hi = self.largest_batch(capacity + simulated - used, limit)

        if hi == 0:
            return 0
        # Where a batch runs, the margin (capacity - reserved peak) shrinks smoothly with the
        # batch; where it fails, the bytes the allocator lacked tell only how far the one
        # request it failed on was from fitting. So: steps down from hi by that deficit over
        # the bytes a sample adds (doubling while failures follow each other), and once batches
        # have run, the line through the last two margins (one margin: the per-sample bytes)
        # extrapolated to zero, or the middle of the bracket where the line passes a batch that
        # failed; this ends on the boundary in a few replays.
        per_sample = max(1.0, (self.at(hi)[0] - self.at(max(hi // 2, 1))[0]) / max(hi - hi // 2, 1))
        lo, fail, b, failures = 0, hi + 1, hi, 0
        ran: list[tuple[int, int]] = []  # (batch, margin) of the batches that ran
        while fail - lo > 1:
            try:
                r = self.replay(b, capacity, workspace)
            except allocator.OutOfMemory as oom:
                fail, failures = b, failures + 1
                if not ran:
                    scale = oom.reserved / oom.allocated if oom.allocated else 1.0
                    step = math.ceil(oom.deficit / (per_sample * scale))
                    b = fail - max(1, step) * 2 ** (failures - 1)
                else:
                    b = (lo + fail) // 2
            else:
                lo, failures = b, 0
                ran.append((b, capacity - r.max_reserved))
                if len(ran) >= 2 and ran[-1][0] != ran[-2][0]:
                    (b1, m1), (b2, m2) = ran[-2], ran[-1]
                    slope = (m1 - m2) / (b2 - b1)  # bytes a sample takes of the margin
                else:
                    slope = per_sample
                b = lo + int(ran[-1][1] / slope) if slope > 0 else lo + 1
                if b >= fail:  # the line overshoots (cached segments released on the way)
                    b = (lo + fail) // 2
            if not lo < b < fail:
                b = lo + 1 if b <= lo else fail - 1
        return lo

    def _interpolated(self, at_b1, at_b2, batch: int):
        """What was ``at_b1`` at batch b1 and ``at_b2`` at b2, at ``batch`` (linear in the
        batch); simulated at one batch size: exact there, unknown elsewhere."""
        if self.b1 == self.b2:
            if batch != self.b1:
                raise ValueError(f"simulated at batch {self.b1} only, asked for batch {batch}")
            return at_b1
        return at_b1 + (batch - self.b1) / (self.b2 - self.b1) * (at_b2 - at_b1)

    def _state(self) -> float:
        """The optimizer's state, resident through the forward and backward pass."""
        return self.step[-1, _OPTIMIZER]

    def _timeline(self, batch: int) -> np.ndarray:
        m = self._interpolated(self.m1, self.m2, batch)
        if self.step is None:
            return m
        m = m.copy()
        m[:, _OPTIMIZER] += self._state()
        step = self.step.copy()
        step[:, _TEMPORARIES] += batch * self.input_bytes_per_sample
        return np.vstack([m, step])

    def at(self, batch: int) -> tuple[int, dict[str, int]]:
        """(peak bytes, breakdown at the peak) at ``batch``. Each event's total is affine in the
        batch: the totals come from the two simulated rows' sums, and only the peak's row is
        made (what ``_timeline(batch)`` gives, for the cost of one row: the largest-batch
        searches ask for dozens of batches). Bytes are whole numbers and the interpolation's
        factor a multiple of 1/2 (batches 2 and 4), so the sums are exact either way."""
        totals = self._totals(batch)
        i = int(np.argmax(totals))
        return int(round(totals[i])), {c: int(round(v)) for c, v in zip(CATEGORIES, self._row(batch, i))}

    def _totals(self, batch: int) -> np.ndarray:
        """Each row's sum in ``_timeline(batch)``."""
        sums = getattr(self, "_sums", None)
        if sums is None:
            sums = self._sums = (self.m1.sum(axis=1), self.m2.sum(axis=1),
                                 None if self.step is None else self.step.sum(axis=1))
        s1, s2, step = sums
        t = self._interpolated(s1, s2, batch)
        if step is None:
            return t
        return np.concatenate([t + self._state(), step + batch * self.input_bytes_per_sample])

    def _row(self, batch: int, i: int) -> np.ndarray:
        """Row ``i`` of ``_timeline(batch)``."""
        n = len(self.m1)
        if i >= n:
            row = self.step[i - n].copy()
            row[_TEMPORARIES] += batch * self.input_bytes_per_sample
            return row
        row = np.array(self._interpolated(self.m1[i], self.m2[i], batch))  # (a copy)
        if self.step is not None:
            row[_OPTIMIZER] += self._state()
        return row

    def parts(self, batch: int) -> dict[str, int]:
        """Each category's own maximum over the step at ``batch`` (not necessarily at the same
        moment): parameters, buffers, gradients, optimizer state, saved activations, the largest
        temporaries, workspace."""
        m = self._timeline(batch).max(axis=0)
        return {c: int(round(v)) for c, v in zip(CATEGORIES, m)}

    def activations_per_sample(self) -> float:
        """Bytes saved for backward per sample (slope of the activations' maximum)."""
        i = CATEGORIES.index("activations")
        return (self.m2[:, i].max() - self.m1[:, i].max()) / (self.b2 - self.b1)

    def law(self, batches=(1, 2, 4, 8, 16, 32, 64, 128, 256)) -> tuple[float, float, float]:
        """Least-squares fit of peak = model + batch x per_sample over ``batches``:
        (model part, per-sample part, worst relative residual)."""
        b = np.array(batches, dtype=float)
        peaks = np.array([self.at(int(x))[0] for x in batches], dtype=float)
        per_sample, model = np.polyfit(b, peaks, 1)
        worst = float(np.max(np.abs(model + per_sample * b - peaks) / peaks))
        return float(model), float(per_sample), worst

    def largest_batch(self, budget: int, limit: int = 1 << 16) -> int:
        """The largest batch whose predicted peak fits in ``budget`` bytes (0 if none)."""
        if self.at(1)[0] > budget:
            return 0
        lo, hi = 1, 2
        while hi <= limit and self.at(hi)[0] <= budget:
            lo, hi = hi, hi * 2
        if hi > limit:
            return limit
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.at(mid)[0] <= budget else (lo, mid)
        return lo


def frees_in_serial_order(events: list) -> np.ndarray:
    """``events`` ((serial, bytes) pairs; bytes -1 for a free) as an array, each run of frees
    with nothing allocated between them in serial order. Storages freed together (a graph's saved
    tensors, when the graph goes) go in an order that two runs of the same step need not share;
    the caching allocator ends such a run in the same state whatever its order (a freed block
    merges with its free neighbours either way, and no peak moves while memory is freed)."""
    e = np.array(events, dtype=np.int64).reshape(-1, 2)
    free = e[:, 1] < 0
    if free.any():
        e = e[np.lexsort((e[:, 0], free, np.cumsum(~free)))]
    return e


def predict(build_model, input_shape: tuple, mode: str, precision: str = "fp32",
            optimizer: str | None = None, batches=SIM_BATCHES, step: MemoryTracker | None = None,
            workspace: int = CUBLAS_WORKSPACE, checkpointing: bool = False,
            fake: bool = True) -> Prediction:
    """Prediction for one (mode, precision, optimizer). ``build_model`` returns a meta model, or is
    a ``Simulator`` already made. ``step`` reuses a simulated optimizer step (``Simulator.step``:
    it does not depend on the batch or the precision). ``batches``: the two simulated batch
    sizes, or one, for a prediction at that batch size only."""
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
    sim = build_model if isinstance(build_model, Simulator) else Simulator(
        build_model(), fake, dtype=HALF.get(precision, torch.float32))
    b1, b2 = (batches[0], batches[-1])
    traces = sim.runs(input_shape, (b1, b2) if b2 != b1 else (b1,), mode, precision, workspace,
                      checkpointing)
    t1, t2 = traces[0], traces[-1]
    if len(t1.timeline) != len(t2.timeline):
        raise RuntimeError(f"the step ran different ops at batch {b1} and {b2}: "
                           "memory cannot be interpolated")
    e1, e2 = frees_in_serial_order(t1.events), frees_in_serial_order(t2.events)
    same = (e1.shape == e2.shape and t1.run_start == t2.run_start
            and np.array_equal(e1[:, 0], e2[:, 0]) and np.array_equal(e1[:, 1] < 0, e2[:, 1] < 0))
    pred = Prediction(mode, precision, optimizer, b1, b2, np.array(t1.timeline, dtype=float),
                      np.array(t2.timeline, dtype=float), None,
                      block_bytes(sim.dtype.itemsize * math.prod(input_shape)),
                      e1 if same else None, e2 if same else None, t1.run_start,
                      tuple(t1.workspace_ids), workspace, tuple(t1.grad_ids))
    if optimizer:
        return pred.with_step(step if step is not None else sim.step(optimizer))
    return pred
