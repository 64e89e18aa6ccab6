"""Every use of torch's private API in zoo, in one module: when a torch release moves something,
this is the file to read.

- Cheaper fake tensors for the memory simulation (``fake_outputs``, ``fake_copy``): what
  ``FakeTensorMode`` gives, made without its general dispatch where that gives the same outputs.
- Questions about an op that torch answers only privately: whether it has a composite
  (CompositeImplicitAutograd) kernel, whether its outputs follow from its inputs' shapes, whether it
  is a higher-order operator; the key of one call.
- Names re-exported from private modules: ``FakeTensor``, ``FakeTensorMode``,
  ``TorchDispatchMode`` (``UncompiledDispatchMode``: one that torch does not wrap),
  ``tree_flatten``, ``DeviceContext``, and stride helpers.

Nothing here imports the rest of zoo.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
import weakref
from unittest import mock

import torch
from torch import nn
from torch._prims_common import (  # noqa: F401
    get_computation_dtype,
    make_channels_last_strides_for,
    make_contiguous_strides_for,
)
from torch._subclasses.fake_tensor import (  # noqa: F401
    FakeTensor,
    FakeTensorMode,
)
from torch.utils._device import DeviceContext  # noqa: F401
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: F401
from torch.utils import _pytree as pytree
from torch.utils._pytree import tree_flatten


def writes_to_inputs(func) -> bool:
    """Whether an op's schema says it writes to one of its inputs."""
    return func._schema.is_mutable


def is_higher_order(func) -> bool:
    return isinstance(func, torch._ops.HigherOrderOperator)


_COMPOSITE: dict = {}


def is_composite(func) -> bool:
    """Whether ``func.decompose`` has a decomposition to run (CompositeImplicitAutograd)."""
    composite = _COMPOSITE.get(func)
    if composite is None:
        dk = torch._C.DispatchKey.CompositeImplicitAutograd
        composite = dk in func.py_kernels or torch._C._dispatch_has_kernel_for_dispatch_key(
            func.name(), dk)
        _COMPOSITE[func] = composite
    return composite


def outputs_from_shapes(func) -> bool:
    """Whether an op returns new tensors (no view of an input), draws no random numbers and has
    no data-dependent output size, by its schema and tags: its outputs' sizes follow from its
    inputs' shapes."""
    schema = func._schema
    return (isinstance(func, torch._ops.OpOverload) and bool(schema.returns)
            and not any(r.alias_info for r in schema.returns)
            and not {torch.Tag.nondeterministic_seeded, torch.Tag.dynamic_output_shape,
                     torch.Tag.data_dependent_output} & set(func.tags))


def call_key(func, args, kwargs, tensor_key):
    """A hashable key of an op's call: ``tensor_key(t)`` for each tensor argument (None: the call
    has no key), the other arguments as they are; None where an argument is of another kind."""
    out = [func]

    def add(a) -> bool:
        if isinstance(a, torch.Tensor):
            k = tensor_key(a)
            if k is None:
                return False
            out.append(k)
        elif isinstance(a, (tuple, list)):
            out.append(len(a))
            return all(add(b) for b in a)
        elif a is None or isinstance(a, (bool, int, float, str, torch.dtype, torch.device,
                                         torch.memory_format, torch.layout)):
            out.append((type(a), a))
        else:
            return False
        return True

    if not all(add(a) for a in args):
        return None
    for k, v in kwargs.items():
        out.append(k)
        if not add(v):
            return None
    return tuple(out)


# ---- cheaper fake tensors ------------------------------------------------------------------------
# FakeTensorMode's dispatch is general (symbolic shapes, constants, its own cache, whose key costs
# more than most meta kernels); a simulation needs none of that. These shortcuts give the same
# outputs for less:
# - an op whose outputs follow from its inputs' shapes (no input returned as a view, no
#   randomness, no data-dependent size; writing to an input's data is allowed, as batch norm does
#   to its running statistics) is made again from what its first call with the same shapes,
#   strides, dtypes and other arguments returned, with a storage of its own as the op gives it;
# - an op for which the mode would only run the meta kernel and wrap the outputs runs that
#   kernel directly;
# - an op whose first call of a kind gave the mode's outputs by its meta kernel (or by a few lines
#   of shapes: convolution, batch norm and their backward) is answered that way for that kind;
# - a view runs its meta kernel on the input's storage, an in-place op returns its input (each
#   once checked against the mode);
# - fake tensors are made without FakeTensor's constructor (``_wrap``), and fake tensors act as
#   meta ones without the mode's generator-based context manager (``_InKernel``).
# tests/test_memory.py checks that they change no figure against the mode's own dispatch.

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
    """An op whose outputs follow from its inputs' shapes (``outputs_from_shapes``),
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
    with _InKernel(mode):
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


class _InKernel:
    """What FakeTensorMode's ``in_kernel_invocation_manager`` does (fake tensors act as meta
    tensors, no dispatch mode runs), as a class: entered some 30,000 times a model, the
    generator-based original costs 7% of a simulation."""

    __slots__ = ("mode", "previous", "guards")

    def __init__(self, mode):
        self.mode = mode

    def __enter__(self):
        self.previous = self.mode.in_kernel_invocation
        self.guards = (torch._C._DisableTorchDispatch(), torch._C._PreserveDispatchKeyGuard())
        for guard in self.guards:
            guard.__enter__()
        self.mode.in_kernel_invocation = True
        torch._C._set_meta_in_tls_dispatch_include(True)

    def __exit__(self, *exc):
        self.mode.in_kernel_invocation = self.previous
        for guard in reversed(self.guards):
            guard.__exit__(*exc)


def _fake_empty(mode, size, stride, dtype, device, view_of=None, offset=0) -> FakeTensor:
    """A fake tensor made without dispatching an op: a storage of its own, or a view of
    ``view_of``'s storage."""
    with _InKernel(mode):
        empty = torch.empty_strided(size, stride, dtype=dtype, device="meta")
        if view_of is not None:
            empty.set_(view_of.untyped_storage(), offset, size, stride)
    return _wrap(mode, empty, device)


_STATES = weakref.WeakKeyDictionary()  # mode -> {device: a new FakeTensor's attributes}


def _wrap(mode, meta: torch.Tensor, device) -> FakeTensor:
    """``FakeTensor(mode, meta, device)``, made without the constructor's argument checks and
    attribute descriptors (70 us a tensor, a tenth of a simulation): the tensor wrapped as the
    constructor wraps it, with the attributes the constructor gave the first tensor of this mode
    and device (the device and empty memos; the mode)."""
    states = _STATES.setdefault(mode, {})
    attributes = states.get(device, False)
    if attributes is False:
        first = FakeTensor(mode, meta, device)
        attributes = {k: v for k, v in first.__dict__.items() if k != "fake_mode"}
        # a mode that gives more (debug traces) is left to the constructor
        plain = all(v is None for k, v in attributes.items() if k != "_fake_device")
        states[device] = attributes if plain else None
        return first
    if attributes is None:
        return FakeTensor(mode, meta, device)
    t = torch.Tensor._make_subclass(FakeTensor, meta, meta.requires_grad, dispatch_device=True,
                                    device_for_backend_keys=device)
    if mode._allow_unsafe_data_ptr_access:
        torch._C._set_warn_deprecated_on_mutable_data_ptr(t)
    else:
        torch._C._set_throw_on_mutable_data_ptr(t)
    t.__dict__.update(attributes)
    t.fake_mode = mode
    return t


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


def fake_outputs(func, args, kwargs, mode, outputs: dict):
    """The op's outputs on fake tensors, made the cheapest way that gives what FakeTensorMode
    gives: again from the shapes of an earlier call (an op whose outputs follow from its
    inputs' shapes, or a view), or from the op's meta kernel without the mode's dispatch
    (see _meta_direct); by the mode's dispatch otherwise."""
    key = _fake_key(func, args, kwargs, mode)
    entry = outputs.get(key) if key is not None else None
    if entry is not None:
        return _fake_outputs(entry, mode)
    if key is None and (_simple_view(func) or func in _ALIASING) \
            and not torch.is_inference_mode_enabled():
        return _view(func, args, kwargs, mode, outputs)
    if key is None and _in_place_on_first(func):
        return _in_place(func, args, kwargs, mode, outputs)
    out = _meta_call(func, args, kwargs, mode) if _meta_direct(func) else None
    if out is None and key is not None:
        out = _checked_meta_call(func, args, kwargs, mode)
    if out is None:
        out = func(*args, **kwargs)
    if key is not None:
        entry = _fake_entry(out)
        if entry is not None and _shares_storage(out, args, kwargs):
            # an alias its schema does not declare (_unsafe_view): made as a view from now on
            _ALIASING.add(func)
        elif entry is not None:
            outputs[key] = entry
    return out


# An op whose outputs follow from its inputs' shapes but which FakeTensorMode runs by a Python
# decomposition (batch norm and its backward, layer norm's backward, most activations' backward,
# and, under inference_mode, composite ops such as conv2d or batch_norm) costs the mode one full
# dispatch per op inside the decomposition: 6 to 23 ms for one batch norm. Its meta kernel, run on
# the fake tensors as meta tensors, gives the outputs in 1 to 6 ms, but not always the same
# outputs (a bf16 batch norm's saved statistics are fp32 by the meta kernel, bf16 by the
# decomposition). So the first call of each kind (op, other arguments, and each tensor's
# ``_layout_key``) runs both ways, and later calls of that kind take the meta
# kernel only where the two gave the same outputs (sizes, strides, dtypes, storages).
_CHECKED: dict = {}


def _layout_key(t):
    """A tensor argument's part of a call's kind: dtype, rank, contiguity, the order of its
    strides (its memory format, at any rank), its unit dimensions, whether it starts its storage."""
    if not isinstance(t, FakeTensor) or t.constant is not None:
        return None
    stride = t.stride()
    return (t.dtype, t.is_contiguous(), tuple(sorted(range(len(stride)), key=lambda i: -stride[i])),
            tuple(n == 1 for n in t.shape), t.storage_offset() == 0)


def _described(out):
    if isinstance(out, torch.Tensor):
        return (type(out), tuple(out.shape), out.stride(), out.dtype, out.device,
                out.storage_offset(), out.untyped_storage().nbytes())
    if isinstance(out, (tuple, list)):
        return (type(out), tuple(_described(o) for o in out))
    return out


def _checked_meta_call(func, args, kwargs, mode):
    """The outputs of ``func`` (whose outputs follow from its inputs' shapes) by its meta kernel
    where calls of this kind were found to give what the mode gives; by the mode's dispatch
    otherwise (None: the caller dispatches)."""
    if "device" in kwargs:
        return None
    kind = call_key(func, args, kwargs, _layout_key)
    if kind is None:
        return None
    same = _CHECKED.get(kind)
    if same is False:
        return None
    try:
        rule = _SHAPE_RULES.get(func)
        fast = rule(args, kwargs, mode) if rule is not None and not kwargs else None
        if fast is None:
            fast = _meta_call(func, args, kwargs, mode)
    except Exception:  # noqa: BLE001 - no meta kernel for these arguments: the mode's way
        fast = None
    if same and fast is not None:
        return fast if same is True else _patched(fast, same, mode)
    out = func(*args, **kwargs)
    _CHECKED[kind] = fast is not None and _agreement(fast, out)
    return out


# Outputs by a few lines of shapes, for ops whose meta kernel is a Python decomposition that
# costs some 3 ms a call (batch norm and its backward: one call for each new shape, dtype and
# mode, the larger part of a convolutional network's simulation). Like a meta kernel, a rule is
# taken only for calls of a kind whose first call gave what the mode gives (see _agreement).
def _like(mode, t):
    with _InKernel(mode):
        meta = torch.empty_like(t)
    return _wrap(mode, meta, t.fake_device)


def _batch_norm_rule(args, kwargs, mode):
    """native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum,
    eps): the output like the input, the saved mean and inverse deviation per channel."""
    x = args[0]
    if x.dim() < 2:
        return None
    stats = get_computation_dtype(x.dtype)
    channels = (x.shape[1],)
    return _like(mode, x), _contiguous(mode, x, channels, stats), _contiguous(mode, x, channels, stats)


def _batch_norm_backward_rule(args, kwargs, mode):
    """native_batch_norm_backward(grad_out, input, weight, running_mean, running_var,
    save_mean, save_invstd, train, eps, output_mask): the input's gradient like the input,
    the weight's and bias's per channel in the weight's dtype, each where the mask asks."""
    if len(args) != 10:
        return None
    x, weight, mask = args[1], args[2], args[9]
    if x.dim() < 2:
        return None
    dtype, channels = weight.dtype if weight is not None else x.dtype, (x.shape[1],)
    return (_like(mode, x) if mask[0] else None,
            _contiguous(mode, x, channels, dtype) if mask[1] else None,
            _contiguous(mode, x, channels, dtype) if mask[2] else None)


def _contiguous(mode, t, size, dtype):
    """A new contiguous fake tensor of ``size`` on ``t``'s device."""
    return _fake_empty(mode, tuple(size), tuple(make_contiguous_strides_for(size)), dtype,
                       t.fake_device)


def _dense_convolution(x, weight) -> bool:
    """A batched convolution whose input and weight are contiguous (the mode then gives
    contiguous outputs; channels-last ones are left to the meta kernel)."""
    return (x.dim() == weight.dim() >= 3 and x.is_contiguous() and weight.is_contiguous()
            and type(weight) is FakeTensor)


def _convolution_rule(args, kwargs, mode):
    """convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
    groups), not transposed: the output's spatial sizes by the usual formula,
    (size + 2 padding - dilation (kernel - 1) - 1) // stride + 1."""
    if len(args) != 9:
        return None
    x, weight, _, stride, padding, dilation, transposed = args[:7]
    if transposed or not _dense_convolution(x, weight):
        return None
    n = x.dim() - 2
    if not (len(stride) == len(padding) == len(dilation) == n):
        return None
    spatial = [(x.shape[2 + i] + 2 * padding[i] - dilation[i] * (weight.shape[2 + i] - 1) - 1)
               // stride[i] + 1 for i in range(n)]
    if min(spatial) <= 0:
        return None
    return _contiguous(mode, x, (x.shape[0], weight.shape[0], *spatial), x.dtype)


def _convolution_backward_rule(args, kwargs, mode):
    """convolution_backward(grad_out, input, weight, bias_sizes, stride, padding, dilation,
    transposed, output_padding, groups, output_mask): gradients the shapes of the input, the
    weight and the bias, in the output gradient's dtype, where the mask asks."""
    if len(args) != 11:
        return None
    grad, x, weight, bias_sizes, mask = args[0], args[1], args[2], args[3], args[10]
    if not _dense_convolution(x, weight) or (mask[2] and bias_sizes is None):
        return None
    return (_contiguous(mode, x, x.shape, grad.dtype) if mask[0] else None,
            _contiguous(mode, x, weight.shape, grad.dtype) if mask[1] else None,
            _contiguous(mode, x, bias_sizes, grad.dtype) if mask[2] else None)


_SHAPE_RULES = {torch.ops.aten.native_batch_norm.default: _batch_norm_rule,
                torch.ops.aten.native_batch_norm_backward.default: _batch_norm_backward_rule,
                torch.ops.aten.convolution.default: _convolution_rule,
                torch.ops.aten.convolution_backward.default: _convolution_backward_rule}


def _agreement(fast, out):
    """True where the meta kernel's outputs are the mode's. Where they are but for some outputs
    of a tuple, a patch: for each such output, (index, size, stride, dtype) to make in place of
    the kernel's, size and stride None where they are the kernel's. Two differences are patched:
    an output the mode gives empty (an eval-mode batch norm's statistics: ``(0,)`` by the CPU
    decomposition, full-size by the meta kernel), and an output the mode gives in another dtype
    (a bf16 batch norm's saved statistics: bf16 by the decomposition, fp32 by the meta kernel;
    the same for every call of the kind, whose tensors' dtypes are part of it). False otherwise."""
    if _described(fast) == _described(out):
        return True
    if not (isinstance(fast, tuple) and isinstance(out, tuple) and len(fast) == len(out)):
        return False
    patch = []
    for i, (f, o) in enumerate(zip(fast, out)):
        if _described(f) == _described(o):
            continue
        if not (isinstance(o, torch.Tensor) and isinstance(f, torch.Tensor)
                and o.device == f.device):
            return False
        if o.numel() == 0 and o.untyped_storage().nbytes() == 0:
            patch.append((i, tuple(o.shape), o.stride(), o.dtype))
        elif (o.shape == f.shape and o.stride() == f.stride() and _one_entry(o) is not None
              and _one_entry(f) is not None):
            patch.append((i, None, None, o.dtype))  # a storage of its own, another dtype
        else:
            return False
    return tuple(patch)


def _patched(fast, patch, mode):
    out = list(fast)
    for i, size, stride, dtype in patch:
        if size is None:
            size, stride = tuple(fast[i].shape), fast[i].stride()
        out[i] = _fake_empty(mode, size, stride, dtype, fast[i].device)
    return tuple(out)


_IN_PLACE: dict = {}


def _in_place_on_first(func) -> bool:
    """An op that writes its first argument and returns it, and writes nothing else (``silu_``,
    ``hardswish_``, ``add_``): on fake tensors its output is its first argument, once its meta
    kernel has accepted the call's shapes and dtypes."""
    known = _IN_PLACE.get(func)
    if known is None:
        known = False
        schema = getattr(func, "_schema", None)
        if isinstance(func, torch._ops.OpOverload) and schema.arguments and len(schema.returns) == 1:
            first, ret = schema.arguments[0], schema.returns[0]
            known = (str(ret.type) == "Tensor" and ret.alias_info is not None
                     and first.alias_info is not None and first.alias_info.is_write
                     and ret.alias_info.before_set == first.alias_info.before_set
                     and not any(a.alias_info is not None and a.alias_info.is_write
                                 for a in schema.arguments[1:])
                     and not {torch.Tag.nondeterministic_seeded, torch.Tag.dynamic_output_shape,
                              torch.Tag.data_dependent_output} & set(func.tags))
        _IN_PLACE[func] = known
    return known


_SELF = "self"  # the cached outcome of an in-place call: its first argument


def _in_place(func, args, kwargs, mode, outputs: dict):
    """An in-place op (``_in_place_on_first``) on fake tensors: by the mode's dispatch the first
    time for the call's shapes, its first argument itself from then on."""
    key = _fake_key(func, args, kwargs, mode, view=True)
    if key is not None and outputs.get(key) is _SELF:
        return args[0]
    out = func(*args, **kwargs)
    if key is not None and out is args[0]:
        outputs[key] = _SELF
    return out


def _view(func, args, kwargs, mode, outputs: dict):
    """A view op (one output aliasing the first input): its output is the meta kernel's view of
    the input's storage, wrapped as a fake tensor (a few microseconds; the mode's own dispatch
    takes 0.1 to 2 ms) wherever the first call of its kind (``_view_kind``) gave what the mode
    gives; by the mode's dispatch otherwise. ``view`` itself: see ``_keyed_view``."""
    base = args[0]
    if func is _VIEW:
        return _keyed_view(func, args, kwargs, mode, outputs)
    kind = _view_kind(func, args, kwargs, mode)
    same = _VIEW_CHECKED.get(kind) if kind is not None else False
    if same:
        try:
            return _meta_view(func, args, kwargs, mode, base)
        except Exception:  # noqa: BLE001 - (a view its strides do not allow): as the mode raises
            pass
    out = func(*args, **kwargs)
    if same is None:
        try:
            fast = _meta_view(func, args, kwargs, mode, base)
        except Exception:  # noqa: BLE001 - the mode's way for this kind
            fast = None
        _VIEW_CHECKED[kind] = bool(
            fast is not None and type(out) is FakeTensor and _described(fast) == _described(out)
            and fast.untyped_storage() is out.untyped_storage() and out.constant is None)
    return out


_VIEW_CHECKED: dict = {}
# ``view`` is answered by the mode through torch's Python reference, which gives some unit
# dimensions other strides than the meta kernel does (NaFlexViT, CrossViT, MViTv2): a later op
# that asks whether its input is contiguous may then copy it, or not. So its outputs are remade
# from the mode's first answer for the same shapes and strides instead.
_VIEW = torch.ops.aten.view.default


def _keyed_view(func, args, kwargs, mode, outputs: dict):
    key = _fake_key(func, args, kwargs, mode, view=True)
    entry = outputs.get(key) if key is not None else None
    base = args[0]
    if entry is not None:
        size, stride, offset, dtype = entry
        return _fake_empty(mode, size, stride, dtype, base.device, view_of=base, offset=offset)
    out = func(*args, **kwargs)
    if key is not None and type(out) is FakeTensor and out.constant is None \
            and out.untyped_storage() is base.untyped_storage() and out.dtype == base.dtype:
        outputs[key] = (tuple(out.shape), out.stride(), out.storage_offset(), out.dtype)
    return out


def _view_kind(func, args, kwargs, mode):
    """(op, the input's dtype and rank, the other arguments' types); None where the input is not
    a plain fake tensor of ``mode`` or another argument is a tensor."""
    base = args[0]
    if type(base) is not FakeTensor or base.fake_mode is not mode or base.constant is not None:
        return None
    others = []
    for a in (*args[1:], *kwargs.values()):
        if isinstance(a, (list, tuple)):
            others.append((type(a), len(a)))
        elif isinstance(a, torch.Tensor):
            return None
        else:
            others.append(type(a))
    return (func, base.dtype, base.dim(), tuple(kwargs), tuple(others))


def _meta_view(func, args, kwargs, mode, base):
    with _InKernel(mode):
        view = func(*args, **kwargs)
    return _wrap(mode, view, base.fake_device)


@contextlib.contextmanager
def fake_tensor_errors_unlogged():
    """Inside: FakeTensorMode does not log the traceback of an op that fails before it raises
    (the caller expects the failure and handles it)."""
    import logging

    log = logging.getLogger("torch._subclasses.fake_tensor")  # the module's own logger
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def fake_copy(meta_model: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """``meta_model`` with every parameter and buffer a fresh fake CPU tensor of the same shape
    and strides: what ``to_empty(device="cpu")`` under ``mode`` gives, without dispatching an op
    per tensor. Tensors shared between modules stay shared."""
    cpu = torch.device("cpu")
    made: dict[int, torch.Tensor] = {}  # id of a meta tensor of the model (they all stay alive)

    def fake(t: torch.Tensor) -> torch.Tensor:
        return _fake_empty(mode, t.shape, t.stride(), t.dtype, cpu)

    def parameter(t: torch.Tensor) -> torch.Tensor:
        # what nn.Parameter(fake(t)) gives (a fake tensor marked as a parameter), without the
        # detach it dispatches through the mode
        p = fake(t).requires_grad_(t.requires_grad)
        p._is_param = True
        return p

    originals = []  # keeps the meta tensors alive, so that no id is reused while copying
    with mode:
        for module in meta_model.modules():
            for table, as_param in ((module._parameters, True), (module._buffers, False)):
                for name, t in table.items():
                    if t is None:
                        continue
                    if id(t) not in made:
                        originals.append(t)
                        made[id(t)] = parameter(t) if as_param else fake(t)
                    table[name] = made[id(t)]
    return meta_model


def device_query(func, args):
    """A fake tensor's device, answered as ``FakeTensorMode`` answers ``prim.device`` (None where
    ``func`` is not that query on a fake tensor outside a kernel)."""
    if func is _DEVICE and type(args[0]) is FakeTensor \
            and not args[0].fake_mode.in_kernel_invocation:
        return args[0].fake_device
    return None


class UncompiledDispatchMode(TorchDispatchMode):
    """A dispatch mode whose ``__torch_dispatch__`` torch does not wrap to keep ``torch.compile``
    out of it (nothing is compiled inside a simulation; the wrapper is 3% of one)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


class _AttentionAsOneOp(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch._C._nn.scaled_dot_product_attention:
            with torch._C._AutoDispatchBelowAutograd():
                return func(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def attention_as_one_op():
    """Inside (without autograd): ``F.scaled_dot_product_attention`` reaches the dispatch modes
    as one op, as under ``inference_mode``, and allocates its output alone, as CUDA's fused
    kernels do (flash and memory-efficient attention, which serve every mask in inference). On
    CPU tensors under ``no_grad`` it would decompose into the math path wherever the mask's dtype
    or shape does not suit the CPU's fused kernel, with the whole attention matrix."""
    return _AttentionAsOneOp()


def adam_reads_step_as_one():
    """Adam reads its step count with ``.item()``, which fake tensors cannot answer; the count's
    value changes no tensor's size, so it reads 1 inside this context."""
    return mock.patch("torch.optim.adam._get_value", lambda _: 1.0)


# ---- CUDA's autocast op lists, applied to CPU tensors -------------------------------------------
# A simulation runs on fake CPU tensors (the autograd engine needs a real device for CUDA ones), so
# autocast runs by the CPU's lists. CUDA's differ: layer_norm, group_norm, softmax, exp, sum and
# more run in fp32 under CUDA autocast and stay in bf16 under the CPU's, which makes an AMP step on
# a GPU hold more than the CPU lists predict (ConvNeXt-T AMP training: 7% more allocated on an
# H200 than the CPU lists gave). ``cuda_autocast_lists`` registers, for the ops that have an
# AutocastCUDA kernel and no AutocastCPU kernel, Python kernels at the AutocastCPU key that do what
# CUDA's do (aten/src/ATen/autocast_mode.cpp: each op's policy below), and for the ops that only
# the CPU casts, a fallthrough. tests/test_memory.py checks each policy against CUDA's own kernels,
# run forward on fake CUDA tensors.
CUDA_AUTOCAST = {
    "lower": ("_convolution", "convolution", "einsum", "addmv", "addr",
              "mv", "chain_matmul", "linalg_multi_dot", "lstm_cell", "gru_cell", "rnn_tanh_cell",
              "rnn_relu_cell", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell"),
    "fp32": ("acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p",
             "reciprocal", "rsqrt", "sinh", "tan", "pow.Tensor_Scalar", "pow.Tensor_Tensor",
             "pow.Scalar", "softplus", "layer_norm", "native_layer_norm", "group_norm", "rms_norm",
             "frobenius_norm.dim", "nuclear_norm", "nuclear_norm.dim", "cosine_similarity",
             "dist", "pdist", "renorm", "logsumexp", "upsample_nearest1d", "upsample_nearest2d",
             "upsample_nearest3d", "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
             "_upsample_nearest_exact3d", "upsample_linear1d", "upsample_bilinear2d",
             "_upsample_bilinear2d_aa", "upsample_trilinear3d", "upsample_bicubic2d",
             "_upsample_bicubic2d_aa", "norm.Scalar", "norm.ScalarOpt_dim"),
    "fp32_set_opt_dtype": ("softmax.int", "log_softmax.int", "cumprod", "cumsum",
                           "linalg_vector_norm", "linalg_matrix_norm", "linalg_matrix_norm.str_ord",
                           "sum", "sum.dim_IntList"),
    "promote": ("addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "vdot", "index_put",
                "scatter_add", "tensordot"),
}
# CUDA's kernels alone, never called on CPU tensors
CUDA_ONLY_OPS = ("_cudnn_rnn", "cudnn_convolution", "cudnn_convolution_transpose",
                 "_scaled_dot_product_flash_attention")
# only the CPU's autocast casts these (fp32 or promote); CUDA's lets them through
CPU_ONLY_AUTOCAST = ("reflection_pad1d", "reflection_pad2d", "replication_pad1d",
                     "replication_pad2d", "replication_pad3d", "max_pool3d", "avg_pool3d",
                     "adaptive_avg_pool3d", "adaptive_max_pool3d", "grid_sampler_2d",
                     "grid_sampler_3d")


def _cast_all(value, to):
    """``value`` with its floating tensors of another floating dtype cast to ``to`` (not float64:
    autocast leaves double alone)."""
    if isinstance(value, torch.Tensor):
        eligible = value.is_floating_point() and value.dtype not in (to, torch.float64)
        return value.to(to) if eligible else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_all(v, to) for v in value)
    return value


def _policy_kernel(op, policy: str):
    dtype_at = next((i for i, a in enumerate(op._schema.arguments) if a.name == "dtype"), None)

    def kernel(*args, **kwargs):
        with torch.autocast("cpu", enabled=False):
            if policy in ("lower", "fp32"):
                to = torch.get_autocast_dtype("cpu") if policy == "lower" else torch.float32
                args, kwargs = _cast_all(args, to), _cast_all(kwargs, to)
            elif policy == "fp32_set_opt_dtype":  # fp32 out unless the call names a dtype
                positional = dtype_at is not None and dtype_at < len(args)
                given = args[dtype_at] if positional else kwargs.get("dtype")
                first = next((a for a in args if isinstance(a, torch.Tensor)), None)
                if given is None and first is not None and first.is_floating_point():
                    if positional:
                        args = (*args[:dtype_at], torch.float32, *args[dtype_at + 1:])
                    else:
                        kwargs = {**kwargs, "dtype": torch.float32}
            else:  # promote: every floating input to the widest floating dtype among them
                floats = [t.dtype for t in pytree.tree_leaves((args, kwargs))
                          if isinstance(t, torch.Tensor) and t.is_floating_point()]
                if len(set(floats)) > 1:
                    wide = functools.reduce(torch.promote_types, floats)
                    args, kwargs = _cast_all(args, wide), _cast_all(kwargs, wide)
            return op(*args, **kwargs)
    return kernel


@contextlib.contextmanager
def cuda_autocast_lists():
    """Inside: CPU autocast casts as CUDA autocast does (see CUDA_AUTOCAST)."""
    lib = torch.library.Library("aten", "IMPL")
    try:
        for policy, names in CUDA_AUTOCAST.items():
            for name in names:
                base, _, overload = name.partition(".")
                op = getattr(getattr(torch.ops.aten, base), overload or "default")
                lib.impl(name, _policy_kernel(op, policy), "AutocastCPU")
        with warnings.catch_warnings():  # overriding the CPU's own kernels is the point
            warnings.simplefilter("ignore")
            for name in CPU_ONLY_AUTOCAST:
                lib.impl(name, torch.library.fallthrough_kernel, "AutocastCPU")
        yield
    finally:
        lib._destroy()
