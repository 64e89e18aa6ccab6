"""The reference count: multiply-accumulates of one forward pass, and FLOPs of one training step.

Convention (the one torchvision publishes as ``_ops`` and timm with ``TIMM_FUSED_ATTN=0``):
- counted: every convolution (grouped and depthwise by their true cost, Cin/groups x K x K per
  output element), every matrix product (linear layers, ``matmul``/``bmm``/``einsum`` products),
  and the two matrix products inside attention (Q K^T and A V), fused kernels included;
- left out: normalisation, activations, pooling, softmax, residual additions, bias additions,
  resizing. These are memory-bound and small (fvcore and thop add some of them; see the per-op
  breakdown for how much);
- one multiply-add (MAC) is one unit; ``gmacs`` is 1e9 MACs at batch 1.

The count runs torch's ``FlopCounterMode`` on the meta device: shapes only, no arithmetic, so it
sees the same ops as a GPU run would (on real CPU tensors the CPU flash-attention kernel and
torchvision's fused multi-head attention hide attention from it).

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
from torch.utils.flop_counter import FlopCounterMode

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


def _attention_products(model: nn.Module, counts: dict) -> dict[str, int]:
    """MACs of the matrix products (Q K^T, A V) inside attention modules: modules whose class name
    contains "Attention" or "Attn", outermost only (a module's count includes its children's). Their
    projections are ``addmm`` and stay "linear"."""
    root = type(model).__name__
    modules = dict(model.named_modules())
    attention = [fqn for fqn in counts if fqn.startswith(root + ".")
                 and _is_attention(modules.get(fqn[len(root) + 1:], model))]
    outermost = [a for a in attention if not any(a.startswith(b + ".") for b in attention)]
    out: dict[str, int] = {}
    for fqn in outermost:
        for op, flops in counts[fqn].items():
            if op_category(str(op)) in ("matmul", "attention"):
                out[str(op)] = out.get(str(op), 0) + flops // 2
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
    # parameter's view to a submodule, which FlopCounterMode's module tracker rejects under no_grad.
    for p in model.parameters():
        p.requires_grad_(False)
    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        handle.remove()
    counts = counter.get_flop_counts()
    by_op = {str(op): flops // 2 for op, flops in counts.get("Global", {}).items()}
    root = type(model).__name__
    per_module = {k[len(root) + 1:]: sum(v.values()) // 2 for k, v in counts.items()
                  if k.startswith(root + ".")}
    seen = set()
    for row in layers:  # a module called twice appears once, with all its MACs
        row["macs"] = per_module.get(row["module"], 0) if row["module"] not in seen else 0
        seen.add(row["module"])
    return Count(sum(by_op.values()), by_op, _attention_products(model, counts), layers)


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
    with FlopCounterMode(display=False,
                         custom_mapping={aten.convolution_backward: conv_backward_flop}) as counter:
        out = model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        out.sum().backward()
    return counter.get_total_flops() // 2
