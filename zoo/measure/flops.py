"""The reference count: multiply-accumulates of one forward pass, and FLOPs of one training step.

Convention (the one torchvision publishes as ``_ops`` and timm with ``TIMM_FUSED_ATTN=0``):
- counted: every convolution (grouped and depthwise by their true cost, Cin/groups x K x K per
  output element), every matrix product (linear layers, ``matmul``/``bmm``/``einsum`` products),
  and the two matrix products inside attention (Q K^T and A V), fused kernels included;
- left out: normalisation, activations, pooling, softmax, residual additions, bias additions,
  resizing. These are memory-bound and small (fvcore and thop add some of them; see the per-op
  breakdown for how much);
- one multiply-add (MAC) is one unit; ``gmacs`` is 1e9 MACs at batch 1.

The count applies torch's own FLOP formulas (those of ``FlopCounterMode``) on the meta device, in
``ProductCounter`` below: shapes only, no arithmetic, so it sees the same ops as a GPU run would
(on real CPU tensors the CPU flash-attention kernel and torchvision's fused multi-head attention
hide attention from it). It gives ``FlopCounterMode``'s numbers (tests/test_formulas.py checks it),
several times faster.

Training FLOPs are forward + backward of one step per sample in train mode, in FLOPs (2 per MAC).
torch's formula for ``convolution_backward`` ignores ``groups`` and over-counts grouped and
depthwise layers by about the group count; ``conv_backward_flop`` below replaces it: each of the
input gradient and the weight gradient costs exactly one forward convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import torch
from torch import nn
from torch.utils.flop_counter import flop_registry, shape_wrapper

from zoo.torch_private import (
    TorchDispatchMode,
    call_key,
    get_computation_dtype,
    is_composite,
    is_higher_order,
    make_channels_last_strides_for,
    make_contiguous_strides_for,
    outputs_from_shapes,
    writes_to_inputs,
)

aten = torch.ops.aten

# op name (torch's overload packet name, or a counter's own op name) -> category of the breakdown
OP_CATEGORIES = {
    "convolution": "conv", "_convolution": "conv", "conv": "conv", "convolution_backward": "conv",
    "addmm": "linear", "mm": "linear", "linear": "linear", "_scaled_mm": "linear",
    "bmm": "matmul", "baddbmm": "matmul", "matmul": "matmul", "einsum": "matmul",
    "scaled_dot_product_attention": "attention",
    "_scaled_dot_product_efficient_attention": "attention",
    "_scaled_dot_product_flash_attention": "attention",
    "_scaled_dot_product_flash_attention_for_cpu": "attention",
    "_scaled_dot_product_cudnn_attention": "attention",
    "_efficient_attention_forward": "attention", "_flash_attention_forward": "attention",
    "batch_norm": "norm", "layer_norm": "norm", "group_norm": "norm", "instance_norm": "norm",
    "adaptive_avg_pool2d": "pool", "upsample_nearest2d": "other", "upsample_bilinear2d": "other",
}


ACTIVATIONS = ("relu", "gelu", "silu", "swish", "sigmoid", "tanh", "hardswish", "hardsigmoid",
               "hardtanh", "mish", "elu", "softmax", "prelu", "leakyrelu", "identity")


def op_category(op: str) -> str:
    """The breakdown's category of an op, whichever counter named it: torch's ``aten.convolution``,
    fvcore's ``batch_norm``, or thop's module type ``BatchNorm2d``."""
    name = op.split("::")[-1].split(".")[-1] if "::" in op else op.rsplit(".", 1)[-1]
    if name in OP_CATEGORIES:
        return OP_CATEGORIES[name]
    low = name.lower()
    if "attention" in low:
        return "attention"
    if low.endswith("_backward"):
        return "backward"
    if low.startswith("conv"):
        return "conv"
    if "linear" in low:
        return "linear"
    if "norm" in low:
        return "norm"
    if "pool" in low:
        return "pool"
    if low.startswith(ACTIVATIONS) or low.rstrip("_") in ACTIVATIONS:
        return "activation"
    return "other"


def conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                       transposed, _output_padding, _groups, output_mask, out_shape=None) -> int:
    """FLOPs of ``aten.convolution_backward``, correct for grouped and depthwise convolution.

    The forward costs 2 x (output elements) x (Cin/groups x kh x kw) FLOPs (weight shape
    ``[Cout, Cin/groups, kh, kw]``; for a transposed conv the roles of input and output swap).
    The input gradient is a transposed convolution with the same weights and the weight gradient a
    correlation of input and output gradient: each costs exactly one forward.
    """
    per_out = prod(w_shape[1:])
    forward = 2 * prod(x_shape if transposed else grad_out_shape) * per_out
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


@dataclass
class Count:
    """The reference counter's view of one forward pass."""

    macs: int
    by_op: dict[str, int]  # op name -> MACs
    attention: dict[str, int] = field(default_factory=dict)  # op -> MACs inside attention modules
    layers: list[dict] = field(default_factory=list)  # leaf modules, in call order

    def rows(self) -> list[tuple[str, str, int]]:
        """(op, category, MACs): a product op inside an attention module (on meta, fused attention
        runs as ``bmm``) is category "attention", the rest by ``op_category``."""
        out = []
        for op, macs in sorted(self.by_op.items()):
            inside = self.attention.get(op, 0)
            if inside:
                out.append((op, "attention", inside))
            if macs - inside:
                out.append((op, op_category(op), macs - inside))
        return out

    @property
    def by_category(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _op, cat, macs in self.rows():
            out[cat] = out.get(cat, 0) + macs
        return out


def _is_attention(module: nn.Module) -> bool:
    name = type(module).__name__
    return "Attention" in name or "Attn" in name


# Ops that hold no matrix product: run as they are instead of being decomposed in Python first
# (FlopCounterMode decomposes every op it has no formula for, to find products inside; a
# batch norm's decomposition alone is most of a ResNet's counting time on meta).
_NORMS = {"native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
          "_native_batch_norm_legit_functional", "native_layer_norm", "native_group_norm",
          "_softmax", "_safe_softmax", "_log_softmax", "native_dropout", "max_pool2d_with_indices",
          "avg_pool2d", "_adaptive_avg_pool2d", "mean", "sum", "rms_norm", "_fused_rms_norm"}
_NO_SKIP = {torch.ops.aten.size.default, torch.ops.aten.sym_size.default,
            torch.ops.aten.stride.default, torch.ops.aten.sym_stride.default,
            torch.ops.aten.numel.default, torch.ops.aten.sym_numel.default,
            torch.ops.aten.dim.default, torch.ops.aten.storage_offset.default,
            torch.ops.aten.sym_storage_offset.default, torch.ops.aten.is_contiguous.default,
            torch.ops.aten.is_contiguous.memory_format, torch.ops.prim.layout.default}


def _holds_no_product(func) -> bool:
    return torch.Tag.pointwise in func.tags or func.overloadpacket.__name__ in _NORMS


_PURE: dict = {}  # op -> whether the op is pure (see is_pure)


def is_pure(func) -> bool:
    """Whether an op neither writes to nor returns a view of its inputs, draws no random numbers
    and has no data-dependent output size: its output sizes follow from its inputs' shapes."""
    pure = _PURE.get(func)
    if pure is None:
        pure = outputs_from_shapes(func) and not writes_to_inputs(func)
        _PURE[func] = pure
    return pure


def _meta_key(t: torch.Tensor):
    return (tuple(t.shape), t.stride(), t.dtype, t.storage_offset()) if t.is_meta else None


def _shape_key(func, args, kwargs):
    """A hashable key of an op's call on meta tensors (shapes, strides, dtypes and the other
    arguments), or None where it has none."""
    return call_key(func, args, kwargs, _meta_key)


def _shapes_of(out):
    if isinstance(out, torch.Tensor):
        return (tuple(out.shape), out.stride(), out.dtype) if out.is_meta else None
    if isinstance(out, tuple) and all(isinstance(t, torch.Tensor) and t.is_meta for t in out):
        return [(tuple(t.shape), t.stride(), t.dtype) for t in out]
    return None


def _from_shapes(shapes):
    if isinstance(shapes, list):
        return tuple(torch.empty_strided(s, st, dtype=d, device="meta") for s, st, d in shapes)
    s, st, d = shapes
    return torch.empty_strided(s, st, dtype=d, device="meta")


# ---- shape rules for ops whose meta kernels are slow --------------------------------------------
# The meta kernels of norms, of some activations and of addmm are Python decompositions that take
# about a millisecond per new shape, more than the rest of a count. Their outputs follow simple rules,
# applied here only where they are sure (inputs laid out as torch lays out a new tensor; anything
# else runs the kernel); tests/test_formulas.py checks them against the kernels.

_ACTIVATION_OPS = {aten.gelu.default, aten.relu.default, aten.hardswish.default,
                   aten.hardsigmoid.default, aten.silu.default, aten.sigmoid.default,
                   aten.tanh.default, aten.mish.default, aten.elu.default,
                   aten.leaky_relu.default}


def _laid_out_new(t) -> bool:
    """A meta float tensor with the strides of a new contiguous or channels-last tensor."""
    if not (isinstance(t, torch.Tensor) and t.is_meta and t.is_floating_point()
            and t.storage_offset() == 0 and t.numel() > 0):
        return False
    stride = tuple(t.stride())
    return stride == _contiguous_strides(t) or (
        t.dim() == 4 and stride == tuple(make_channels_last_strides_for(t.shape)))


def _contiguous_strides(t) -> tuple:
    return tuple(make_contiguous_strides_for(t.shape))


def _like(t, dtype=None):
    return torch.empty_strided(t.shape, t.stride(), dtype=dtype or t.dtype, device="meta")


def _stats(shape, x):
    """Mean and inverse deviation of a norm: in float32 for half-precision inputs."""
    dtype = get_computation_dtype(x.dtype)
    return (torch.empty(shape, dtype=dtype, device="meta"),
            torch.empty(shape, dtype=dtype, device="meta"))


def _channel_vectors(c, *ts) -> bool:
    return all(t is None or (isinstance(t, torch.Tensor) and t.is_meta and tuple(t.shape) == (c,))
               for t in ts)


def _batch_norm_rule(x, weight, bias, running_mean, running_var, training, momentum, eps):
    if not (_laid_out_new(x) and x.dim() >= 2
            and _channel_vectors(x.shape[1], weight, bias, running_mean, running_var)
            and (running_mean is not None and running_var is not None if not training
                 # training with running statistics needs two values per channel
                 else running_var is None or x.numel() > x.shape[1])):
        return None
    return (_like(x), *_stats((x.shape[1],), x))


def _layer_norm_rule(x, normalized_shape, weight, bias, eps):
    # the kernel makes its input contiguous first: a new contiguous tensor, unless the input
    # already is contiguous (then with its own strides, which may be unusual in size-1 dims)
    k = len(normalized_shape)
    if not (isinstance(x, torch.Tensor) and x.is_meta and x.is_floating_point()
            and x.numel() > 0 and 0 < k <= x.dim()
            and (not x.is_contiguous() or x.stride() == _contiguous_strides(x))
            and tuple(x.shape[x.dim() - k:]) == tuple(normalized_shape)
            and all(t is None or (isinstance(t, torch.Tensor) and t.is_meta
                                  and tuple(t.shape) == tuple(normalized_shape))
                    for t in (weight, bias))):
        return None
    return (torch.empty(x.shape, dtype=x.dtype, device="meta"),
            *_stats(tuple(x.shape[:x.dim() - k]) + (1,) * k, x))


def _addmm_rule(bias, m1, m2, *, beta=1, alpha=1):
    tensors = (bias, m1, m2)
    if not (all(isinstance(t, torch.Tensor) and t.is_meta and t.is_floating_point()
                and t.dtype == m1.dtype for t in tensors)
            and m1.dim() == 2 and m2.dim() == 2 and m1.shape[1] == m2.shape[0]
            and bias.dim() <= 2 and all(b in (1, n) for b, n in zip(
                reversed(bias.shape), (m2.shape[1], m1.shape[0])))):
        return None
    return torch.empty((m1.shape[0], m2.shape[1]), dtype=m1.dtype, device="meta")


def _activation_rule(x, *args, **kwargs):
    return _like(x) if _laid_out_new(x) else None


_IN_PLACE = {aten.relu_.default, aten.hardtanh_.default, aten.hardswish_.default,
             aten.hardsigmoid_.default, aten.silu_.default, aten.sigmoid_.default,
             aten.tanh_.default, aten.elu_.default, aten.leaky_relu_.default, aten.mish_.default}


def _in_place_rule(x, *args, **kwargs):
    return x if isinstance(x, torch.Tensor) and x.is_meta and x.is_floating_point() else None


SHAPE_RULES = {aten.native_batch_norm.default: _batch_norm_rule,
               aten.native_layer_norm.default: _layer_norm_rule,
               aten.addmm.default: _addmm_rule,
               **{op: _activation_rule for op in _ACTIVATION_OPS},
               **{op: _in_place_rule for op in _IN_PLACE}}


class MetaShapes:
    """Runs ops on meta tensors; an op already run on the same shapes is not run again (meta
    kernels are mostly Python, and the repeated blocks of a network cost most of a pass): its
    output is made from the shapes recorded the first time. Only for ops that neither write to nor
    return a view of their inputs. Used as a dispatch mode (``with MetaShapes(): ...``) it speeds up
    any shape-only pass, e.g. thop's."""

    def __init__(self):
        self.outputs: dict = {}

    def __call__(self, func, args, kwargs):
        return self.run(func, args, kwargs)[0]

    def run(self, func, args, kwargs):
        """(the op's output, the call's key or None)."""
        key = _shape_key(func, args, kwargs) if is_pure(func) else None
        if key is not None:
            shapes = self.outputs.get(key)
            if shapes is not None:
                return _from_shapes(shapes), key
        rule = SHAPE_RULES.get(func)
        out = rule(*args, **kwargs) if rule is not None else None
        if out is None:
            out = func(*args, **kwargs)
        if key is not None:
            shapes = _shapes_of(out)
            if shapes is None:
                key = None
            else:
                self.outputs[key] = shapes
        return out, key

    def mode(self) -> TorchDispatchMode:
        run = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if is_higher_order(func):
                    return NotImplemented
                return run(func, args, kwargs or {})

        return _Mode()


class ProductCounter(TorchDispatchMode):
    """torch's own FLOP formulas (``torch.utils.flop_counter.flop_registry``), applied as
    ``FlopCounterMode`` applies them, with the overhead a count does not need left out: ops known
    to hold no product (pointwise ops, norms, softmax, pooling) run directly instead of being
    decomposed first, and the enclosing module is followed by two global hooks instead of
    ``FlopCounterMode``'s module tracker (forward only; a backward pass is counted as a whole).

    ``flops`` maps op -> FLOPs; ``per_module`` module name -> FLOPs of the ops it ran itself (not
    its children); ``attention`` op -> FLOPs of products run inside an attention module."""

    def __init__(self, model: nn.Module | None = None, custom_mapping: dict | None = None):
        super().__init__()
        self.registry = {**flop_registry,
                         **{k: shape_wrapper(v) for k, v in (custom_mapping or {}).items()}}
        self.flops: dict[str, int] = {}
        self.per_module: dict[str, int] = {}
        self.attention: dict[str, int] = {}
        self.names = {id(m): n for n, m in model.named_modules()} if model is not None else {}
        self.stack: list[str] = []
        self.in_attention = 0
        self._handles = []
        self._depth = 0  # the mode is entered again to decompose an op: hooks once only
        self._run = MetaShapes()
        self._flops_of: dict = {}  # call key -> FLOPs (a formula depends on shapes only)

    def __enter__(self):
        if self.names and self._depth == 0:
            self._handles = [nn.modules.module.register_module_forward_pre_hook(self._enter),
                             nn.modules.module.register_module_forward_hook(self._exit)]
        self._depth += 1
        return super().__enter__()

    def __exit__(self, *args):
        self._depth -= 1
        if self._depth == 0:
            for h in self._handles:
                h.remove()
            self._handles = []
        return super().__exit__(*args)

    def _enter(self, module, _inputs):
        name = self.names.get(id(module))
        if name is not None:
            self.stack.append(name)
            self.in_attention += _is_attention(module)

    def _exit(self, module, _inputs, _output):
        name = self.names.get(id(module))
        if name is not None and self.stack and self.stack[-1] == name:
            self.stack.pop()
            self.in_attention -= _is_attention(module)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _NO_SKIP:
            return func(*args, **kwargs)
        if is_higher_order(func):
            return NotImplemented
        packet = func.overloadpacket
        if packet not in self.registry and not _holds_no_product(func) and is_composite(func):
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out, key = self._run.run(func, args, kwargs)
        if packet in self.registry:
            flops = self._flops_of.get(key) if key is not None else None
            if flops is None:
                flops = self.registry[packet](*args, **kwargs, out_val=out)
                if key is not None:
                    self._flops_of[key] = flops
            op = str(packet)
            self.flops[op] = self.flops.get(op, 0) + flops
            if self.stack:
                self.per_module[self.stack[-1]] = self.per_module.get(self.stack[-1], 0) + flops
            if self.in_attention and op_category(op) in ("matmul", "attention"):
                self.attention[op] = self.attention.get(op, 0) + flops
        return out


def count_forward(model: nn.Module, x: torch.Tensor) -> Count:
    """Reference MACs of ``model(x)``, by op, and a layer table (module, type, output shape, params,
    MACs) of the leaf modules. Run it on meta tensors."""
    layers: list[dict] = []
    names = {m: n for n, m in model.named_modules()}

    def record(module, _inputs, output):
        if next(module.children(), None) is not None:
            return
        out = output[0] if isinstance(output, (tuple, list)) and output else output
        shape = "x".join(str(d) for d in out.shape) if isinstance(out, torch.Tensor) else ""
        layers.append({
            "module": names.get(module, "?"),
            "type": type(module).__name__,
            "output_shape": shape,
            "params": sum(p.numel() for p in module.parameters(recurse=False)),
        })

    # Parameters stop requiring grad rather than running under no_grad: some models (CaiT) feed a
    # parameter's view to a submodule, which a module tracker rejects under no_grad.
    for p in model.parameters():
        p.requires_grad_(False)
    counter = ProductCounter(model)
    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        with counter:
            model(x)
    finally:
        handle.remove()
    by_op = {op: flops // 2 for op, flops in counter.flops.items()}
    seen = set()
    for row in layers:  # a module called twice appears once, with all its MACs
        row["macs"] = counter.per_module.get(row["module"], 0) // 2 \
            if row["module"] not in seen else 0
        seen.add(row["module"])
    attention = {op: flops // 2 for op, flops in counter.attention.items()}
    return Count(sum(by_op.values()), by_op, attention, layers)


def count_training_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of forward + backward of one training step per sample (train mode, every parameter
    trainable).

    The step runs at batch 2 (BatchNorm in train mode needs more than one value per channel) and
    is halved: every counted op is linear in the batch size.
    """
    x = torch.cat([x, x])
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    with ProductCounter(custom_mapping={aten.convolution_backward: conv_backward_flop}) as counter:
        out = model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        out.sum().backward()
    return sum(counter.flops.values()) // 2
