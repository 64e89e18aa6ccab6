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
"""

from __future__ import annotations

import contextlib
import math
import weakref
from unittest import mock
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch._subclasses.fake_tensor import (FakeTensor, FakeTensorMode,
                                             in_kernel_invocation_manager)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from zoo.counting import call_key, is_composite, outputs_from_shapes

CATEGORIES = ["parameters", "buffers", "gradients", "optimizer", "activations", "temporaries",
              "workspace"]
OPTIMIZERS = ["sgd", "momentum", "adamw"]
PRECISIONS = ["fp32", "fp16", "bf16"]
BLOCK = 512  # CUDA caching allocator: every block is a multiple of 512 bytes
CUBLAS_WORKSPACE = 32 * 2**20  # per thread that runs a matrix product; 32 MiB on Hopper (sm90)
MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "_scaled_mm", "matmul", "linear"}
SIM_BATCHES = (2, 4)  # BatchNorm in train mode needs more than one sample


def block_bytes(nbytes: int) -> int:
    return BLOCK * math.ceil(nbytes / BLOCK) if nbytes else 0


class MemoryTracker(TorchDispatchMode):
    """Follows every storage's life and records memory by category after every op."""

    def __init__(self, workspace: int = CUBLAS_WORKSPACE, fake_mode: FakeTensorMode | None = None,
                 outputs: dict | None = None, shortcuts: bool = True):
        super().__init__()
        self.fake_mode = fake_mode
        # fake tensors: ops made cheaper than by FakeTensorMode's dispatch (see _shortcut), with
        # outputs by call shapes in ``outputs``
        self.shortcuts = shortcuts and fake_mode is not None
        self.outputs = outputs if outputs is not None else {}
        self.meta_ok = False  # meta tensors are tracked too (the optimizer step on meta)
        self.live: dict[int, list] = {}  # id(storage) -> [bytes, category]
        self.current = Counter()
        self.timeline: list[list[int]] = []  # memory by category after every event
        self.workspace = workspace
        self.phase = "forward"
        self.active = True
        self._phases_with_workspace: set = set()

    # -- bookkeeping -------------------------------------------------------------------------
    def track(self, tensor: torch.Tensor, category: str) -> None:
        """Registers (or re-files) the storage behind ``tensor``."""
        if not isinstance(tensor, torch.Tensor) or (tensor.is_meta and not self.meta_ok):
            return
        st = tensor.untyped_storage()
        key = id(st)
        if key in self.live:
            entry = self.live[key]
            if _rank(category) > _rank(entry[1]):
                self.current[entry[1]] -= entry[0]
                entry[1] = category
                self.current[category] += entry[0]
            return
        size = block_bytes(st.nbytes())
        self.live[key] = [size, category]
        self.current[category] += size
        weakref.finalize(st, self._free, key)

    def _free(self, key: int) -> None:
        entry = self.live.pop(key, None)
        if entry is not None:
            self.current[entry[1]] -= entry[0]
            self.record()

    def record(self) -> None:
        """Appends memory by category, when it changed (ops that allocate nothing, such as
        views or fake tensors' device queries, add no event)."""
        if self.active:
            row = [self.current[c] for c in CATEGORIES]
            if not self.timeline or row != self.timeline[-1]:
                self.timeline.append(row)

    def stop(self) -> "MemoryTracker":
        """Freezes the timeline: what is freed afterwards (the model itself) is not the step's."""
        self.active = False
        return self

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.shortcuts:
            if func is _DEVICE and type(args[0]) is FakeTensor \
                    and not args[0].fake_mode.in_kernel_invocation:
                self.record()  # as after any op (a tensor may have been freed meanwhile)
                return args[0].fake_device  # a fake tensor's device, as FakeTensorMode answers
            out = self._shortcut(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        if self.workspace and func.__name__.split(".")[0] in MATMUL_OPS \
                and self.phase not in self._phases_with_workspace:
            self._phases_with_workspace.add(self.phase)
            self.current["workspace"] += self.workspace
        for t in ((out,) if isinstance(out, torch.Tensor) else
                  out if isinstance(out, (tuple, list)) else tree_flatten(out)[0]):
            if isinstance(t, torch.Tensor):
                self.track(t, "temporaries")
        self.record()
        return out

    def _shortcut(self, func, args, kwargs):
        """The op's outputs on fake tensors, made the cheapest way that gives what FakeTensorMode
        gives: again from the shapes of an earlier call (an op whose outputs follow from its
        inputs' shapes, or a view), or from the op's meta kernel without the mode's dispatch
        (see _meta_direct); by the mode's dispatch otherwise."""
        mode = self.fake_mode
        key = _fake_key(func, args, kwargs, mode)
        entry = self.outputs.get(key) if key is not None else None
        if entry is not None:
            return _fake_outputs(entry, mode)
        if key is None and (_simple_view(func) or func in _ALIASING) \
                and not torch.is_inference_mode_enabled():
            return self._view(func, args, kwargs)
        out = _meta_call(func, args, kwargs, mode) if _meta_direct(func) else None
        if out is None:
            out = func(*args, **kwargs)
        if key is not None:
            entry = _fake_entry(out)
            if entry is not None and _shares_storage(out, args, kwargs):
                # an alias its schema does not declare (_unsafe_view): made as a view from now on
                _ALIASING.add(func)
            elif entry is not None:
                self.outputs[key] = entry
        return out

    def _view(self, func, args, kwargs):
        """A view op (one output aliasing the first input): its output's size, strides and offset
        depend only on the call's shapes; made again from the first call's as a view of the same
        storage (as FakeTensorMode's own cache does, with a cheaper key)."""
        key = _fake_key(func, args, kwargs, self.fake_mode, view=True)
        entry = self.outputs.get(key) if key is not None else None
        base = args[0]
        if entry is not None:
            size, stride, offset, dtype = entry
            return _fake_empty(self.fake_mode, size, stride, dtype, base.device, view_of=base,
                               offset=offset)
        out = func(*args, **kwargs)
        if key is not None and type(out) is FakeTensor and out.constant is None \
                and out.untyped_storage() is base.untyped_storage() and out.dtype == base.dtype:
            self.outputs[key] = (tuple(out.shape), out.stride(), out.storage_offset(), out.dtype)
        return out

    def hooks(self):
        """Saved-tensor hooks that file what autograd keeps for backward as activations."""
        def pack(t):
            self.track(t, "activations")
            return t
        return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


# ---- cheaper fake tensors ---------------------------------------------------------------------
# FakeTensorMode's dispatch is general (symbolic shapes, constants, its own cache, whose key costs
# more than most meta kernels); a simulation needs none of that. Two shortcuts give the same
# outputs for less:
# - an op whose outputs follow from its inputs' shapes (no input returned as a view, no
#   randomness, no data-dependent size; writing to an input's data is allowed, as batch norm does
#   to its running statistics) is made again from what its first call with the same shapes,
#   strides, dtypes and other arguments returned, with a storage of its own as the op gives it;
# - an op for which the mode would only run the meta kernel and wrap the outputs runs that
#   kernel directly.
# tests/test_memory.py checks that both change no figure against the mode's own dispatch.

_VIEWS: dict = {}


def _simple_view(func) -> bool:
    """A view op with one output aliasing its first argument (view, permute, transpose, ...)."""
    view = _VIEWS.get(func)
    if view is None:
        view = False
        if isinstance(func, torch._ops.OpOverload) and func.is_view:
            schema = func._schema
            rets, first = schema.returns, schema.arguments[0] if schema.arguments else None
            view = (len(rets) == 1 and str(rets[0].type) == "Tensor" and first is not None
                    and rets[0].alias_info is not None and first.alias_info is not None
                    and not rets[0].alias_info.is_write
                    and rets[0].alias_info.before_set == first.alias_info.before_set)
        _VIEWS[func] = view
    return view


_FRESH: dict = {}


def _fresh_outputs(func) -> bool:
    """An op whose outputs follow from its inputs' shapes (``counting.outputs_from_shapes``),
    pure or writing only to the data of some inputs (batch norm's running statistics): on fake
    tensors, which hold no data, that changes nothing. Not an op found aliasing its input."""
    fresh = _FRESH.get(func)
    if fresh is None:
        fresh = outputs_from_shapes(func) and torch.Tag.inplace_view not in func.tags
        _FRESH[func] = fresh
    return fresh and func not in _ALIASING


_ALIASING: set = set()  # ops found returning a view of their input though the schema says not
# Ops that draw random numbers only for dropout: without it, their outputs follow from shapes
_DROPOUT_ARG = {torch.ops.aten.scaled_dot_product_attention.default: (4, "dropout_p")}


def _without_dropout(func, args, kwargs) -> bool:
    where = _DROPOUT_ARG.get(func)
    if where is None:
        return False
    i, name = where
    p = args[i] if len(args) > i else kwargs.get(name, 0.0)
    return isinstance(p, (int, float)) and p == 0


def _fake_key(func, args, kwargs, mode, view: bool = False):
    if not isinstance(func, torch._ops.OpOverload) or not (
            view or _fresh_outputs(func) or _without_dropout(func, args, kwargs)):
        return None

    def tensor_key(a):
        if not _plain_fake(a, mode):
            return None
        return (tuple(a.shape), a.stride(), a.dtype, a.device, a.storage_offset())

    return call_key(func, args, kwargs, tensor_key)


def _plain_fake(t, mode) -> bool:
    """A fake tensor of ``mode`` that holds no constant value."""
    return type(t) is FakeTensor and t.fake_mode is mode and t.constant is None


_DIRECT: dict = {}
_DEVICE = torch.ops.prim.device.default


def _meta_direct(func) -> bool:
    """Whether FakeTensorMode, given only fake tensors of its own with static shapes and no
    constants, would run ``func``'s meta kernel and wrap its outputs, with nothing else (no
    decomposition, no fake-specific rule, no fallback). Such an op can skip the mode's dispatch."""
    direct = _DIRECT.get(func)
    if direct is None:
        direct = False
        try:
            direct = _meta_kernel_only(func)
        except Exception:  # another torch release: take the mode's own path
            direct = False
        _DIRECT[func] = direct
    return direct


def _meta_kernel_only(func) -> bool:
    from torch._decomp import decomposition_table, meta_table
    from torch._subclasses import fake_tensor as ft
    from torch._subclasses.fake_impls import has_meta, op_implementations_checks

    if not isinstance(func, torch._ops.OpOverload) or func.namespace != "aten":
        return False
    if func in ft._DISPATCH_META_HANDLERS or func in ft._DISPATCH_HANDLE_DIRECTLY \
            or func in FakeTensorMode.lift_fns or func is torch.ops.aten.to_dense.default:
        return False
    if torch.Tag.nondeterministic_seeded in func.tags or torch.Tag.data_dependent_output in func.tags:
        return False
    if func not in meta_table and not (torch.Tag.view_copy in func.tags
                                       or func in FakeTensorMode._cpp_meta_supports_symint):
        decomposition = decomposition_table.get(func)
        if decomposition is not None and decomposition.__module__.startswith("torch._decomp"):
            return False
        if is_composite(func):
            return False
    if torch._dynamo.config._custom_ops_profile is not None:
        return False
    if torch._library.simple_registry.singleton.find(func.name()).fake_impl.kernel:
        return False
    if any(check(func) for check, _ in op_implementations_checks):
        return False
    return has_meta(func)


def _meta_call(func, args, kwargs, mode):
    """``func``'s meta kernel on the fake tensors ``args``, outputs wrapped as FakeTensorMode
    does; None where an argument is not a plain fake tensor of ``mode`` (the caller then takes
    the mode's own path)."""
    flat = tree_flatten((args, kwargs))[0]
    seen = False
    for a in flat:
        if isinstance(a, torch.Tensor):
            if not _plain_fake(a, mode) or a.is_sparse:
                return None
            seen = True
        elif isinstance(a, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            return None
    if not seen:
        return None
    with in_kernel_invocation_manager(mode):
        out = func(*args, **kwargs)
    return mode.wrap_meta_outputs_with_default_device_logic(out, func, flat,
                                                            device=kwargs.get("device"))


def _shares_storage(out, args, kwargs) -> bool:
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    mine = {id(t.untyped_storage()) for t in outs}
    theirs = {id(t.untyped_storage()) for t in tree_flatten((args, kwargs))[0]
              if isinstance(t, torch.Tensor)}
    return bool(mine & theirs)


def _one_entry(t):
    if type(t) is not FakeTensor or t.constant is not None or t.is_sparse:
        return None
    size = tuple(t.shape)
    stride = t.stride()
    nbytes = t.untyped_storage().nbytes()
    needed = (1 + sum((n - 1) * st for n, st in zip(size, stride))) * t.element_size() \
        if all(size) else 0
    if t.storage_offset() != 0 or nbytes != needed:
        return None  # a storage larger than the tensor: not remade from shapes
    return (size, stride, t.dtype, t.device)


def _fake_empty(mode, size, stride, dtype, device, view_of=None, offset=0) -> FakeTensor:
    """A fake tensor made without dispatching an op: a storage of its own, or a view of
    ``view_of``'s storage."""
    with in_kernel_invocation_manager(mode):
        empty = torch.empty_strided(size, stride, dtype=dtype, device="meta")
        if view_of is not None:
            empty.set_(view_of.untyped_storage(), offset, size, stride)
    return FakeTensor(mode, empty, device)


def _fake_entry(out):
    if isinstance(out, torch.Tensor):
        return _one_entry(out)
    if isinstance(out, (tuple, list)) and out and all(isinstance(t, torch.Tensor) for t in out):
        entries = [_one_entry(t) for t in out]
        return (type(out), entries) if all(e is not None for e in entries) else None
    return None


def _fake_outputs(entry, mode):
    if isinstance(entry[0], type):
        kind, entries = entry
        return kind(_fake_empty(mode, *e) for e in entries)
    return _fake_empty(mode, *entry)


_RANKS = {c: i for i, c in enumerate(["temporaries", "activations", "workspace", "optimizer",
                                      "gradients", "buffers", "parameters"])}


def _rank(category: str) -> int:
    return _RANKS[category]


# ---- one simulated step ---------------------------------------------------------------------

def _autocast(precision: str):
    if precision == "fp32":
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cpu", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


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


def _fake_copy(meta_model: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """``meta_model`` with every parameter and buffer a fresh fake CPU tensor of the same shape
    and strides: what ``to_empty(device="cpu")`` under ``mode`` gives, without dispatching an op
    per tensor. Tensors shared between modules stay shared."""
    cpu = torch.device("cpu")
    made: dict[int, torch.Tensor] = {}  # id of a meta tensor of the model (they all stay alive)

    def fake(t: torch.Tensor) -> torch.Tensor:
        return _fake_empty(mode, t.shape, t.stride(), t.dtype, cpu)

    originals = []  # keeps the meta tensors alive, so that no id is reused while copying
    with mode:
        for module in meta_model.modules():
            for table, as_param in ((module._parameters, True), (module._buffers, False)):
                for name, t in table.items():
                    if t is None:
                        continue
                    if id(t) not in made:
                        originals.append(t)
                        made[id(t)] = (nn.Parameter(fake(t), requires_grad=t.requires_grad)
                                       if as_param else fake(t))
                    table[name] = made[id(t)]
    return meta_model


# Outputs by call shapes (see _fake_key), shared by all simulators of a process: models share
# many shapes (a family's blocks, the same network in two libraries).
_OUTPUTS: dict = {}
_OUTPUTS_LIMIT = 500_000  # entries; past it the cache starts afresh


class Simulator:
    """One model on fake CPU tensors (``fake=False``: real ones), simulated as often as needed.

    The fake model is made once; each simulation starts from the same state (no gradients, no
    hooks, no optimizer, checkpointing off) and tracks the model's tensors afresh.
    ``shortcuts=False`` runs every op through FakeTensorMode's own dispatch (and its cache), the
    reference the shortcuts are tested against."""

    def __init__(self, meta_model: nn.Module, fake: bool = True, shortcuts: bool = True):
        self.fake = fake
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
            self.model = _fake_copy(meta_model, self.mode)
        else:
            self.model = meta_model.to_empty(device="cpu")
            with torch.no_grad():  # real tensors (the check against a real run): defined values
                for t in list(self.model.parameters()) + list(self.model.buffers()):
                    t.normal_(0, 0.01) if t.is_floating_point() else t.zero_()

    def _tensors(self):
        return self.mode if self.mode is not None else contextlib.nullcontext()

    def _tracker(self, workspace: int) -> MemoryTracker:
        tracker = MemoryTracker(workspace, self.mode, _OUTPUTS, self.shortcuts)
        for p in self.model.parameters():
            tracker.track(p, "parameters")
        for b in self.model.buffers():
            tracker.track(b, "buffers")
        return tracker

    def _clean(self) -> None:
        for p in self.model.parameters():
            p.grad = None

    def run(self, input_shape: tuple, batch: int, mode: str, precision: str = "fp32",
            workspace: int = CUBLAS_WORKSPACE, checkpointing: bool = False) -> MemoryTracker:
        """One inference pass (``mode="inference"``, under ``inference_mode``) or one training
        forward + backward (``mode="training"``)."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
        model = self.model
        if checkpointing and not hasattr(model, "set_grad_checkpointing"):
            raise ValueError("this model does not support gradient checkpointing")
        handles = []
        try:
            with self._tensors():
                tracker = self._tracker(workspace)
                if checkpointing:
                    model.set_grad_checkpointing(True)
                x = torch.empty(batch, *input_shape)
                tracker.track(x, "temporaries")
                tracker.record()
                if mode == "inference":
                    model.eval()
                    with tracker, torch.inference_mode(), _autocast(precision):
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
            # Adam reads its step count with .item(), which fake tensors cannot answer; the
            # count's value changes no tensor's size, so it reads 1 here.
            with tracker, mock.patch("torch.optim.adam._get_value", lambda _: 1.0):
                opt.step()
                for state in opt.state.values():
                    for v in state.values():
                        tracker.track(v, "optimizer")
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
    return Simulator(build_model(), fake).run(input_shape, batch, mode, precision, workspace,
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

    def _timeline(self, batch: int) -> np.ndarray:
        if self.b1 == self.b2:  # simulated at one batch size: exact there, unknown elsewhere
            if batch != self.b1:
                raise ValueError(f"simulated at batch {self.b1} only, asked for batch {batch}")
            m = self.m1
        else:
            m = self.m1 + (batch - self.b1) / (self.b2 - self.b1) * (self.m2 - self.m1)
        if self.step is None:
            return m
        state = self.step[-1, CATEGORIES.index("optimizer")]
        m = m.copy()
        m[:, CATEGORIES.index("optimizer")] += state
        step = self.step.copy()
        step[:, CATEGORIES.index("temporaries")] += batch * self.input_bytes_per_sample
        return np.vstack([m, step])

    def at(self, batch: int) -> tuple[int, dict[str, int]]:
        """(peak bytes, breakdown at the peak) at ``batch``."""
        m = self._timeline(batch)
        totals = m.sum(axis=1)
        i = int(np.argmax(totals))
        return int(round(totals[i])), {c: int(round(v)) for c, v in zip(CATEGORIES, m[i])}

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


def predict(build_model, input_shape: tuple, mode: str, precision: str = "fp32",
            optimizer: str | None = None, batches=SIM_BATCHES, step: np.ndarray | None = None,
            workspace: int = CUBLAS_WORKSPACE, checkpointing: bool = False,
            fake: bool = True) -> Prediction:
    """Prediction for one (mode, precision, optimizer). ``build_model`` returns a meta model, or is
    a ``Simulator`` already made. ``step`` reuses a simulated optimizer step (it does not depend
    on the batch or the precision). ``batches``: the two simulated batch sizes, or one, for a
    prediction at that batch size only."""
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
    sim = build_model if isinstance(build_model, Simulator) else Simulator(build_model(), fake)
    b1, b2 = (batches[0], batches[-1])
    t1 = sim.run(input_shape, b1, mode, precision, workspace, checkpointing)
    t2 = sim.run(input_shape, b2, mode, precision, workspace, checkpointing) if b2 != b1 else t1
    if len(t1.timeline) != len(t2.timeline):
        raise RuntimeError(f"the step ran different ops at batch {b1} and {b2}: "
                           "memory cannot be interpolated")
    if optimizer and step is None:
        step = np.array(sim.step(optimizer).timeline, dtype=float)
    return Prediction(mode, precision, optimizer, b1, b2, np.array(t1.timeline, dtype=float),
                      np.array(t2.timeline, dtype=float), step if optimizer else None,
                      block_bytes(4 * math.prod(input_shape)))
