"""Build a zoo model from its architecture alone: no weights are ever downloaded.

Models are built in their deployed configuration (what the published weights and their published
counts describe):
- torchvision ``googlenet`` and ``inception_v3`` without auxiliary classifiers (``aux_logits=False``);
  note that torchvision's ``num_params`` for inception_v3 includes its aux head, googlenet's does not;
- torchvision ViT at the weight's own crop size (``image_size``), as its builder does with weights;
- timm models from the full ``arch.tag`` name with ``pretrained=False``, so the tag's config (image
  size, classes) applies.

``build(entry, "meta")`` allocates nothing; a few builders compute with tensors while building
(torchvision RegNet) and are built on CPU instead, which ``build`` does by itself.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from zoo.catalogue.entries import Entry
from zoo.errors import UsageError, error_line
from zoo.torch_private import DeviceContext

TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}


def _builder(entry: Entry):
    if entry.library == "torchvision":
        from torchvision.models import get_model_builder

        fn = get_model_builder(entry.arch)
        kwargs = dict(TORCHVISION_KWARGS.get(entry.arch, {}))
        if entry.arch.startswith("vit_"):  # its builder sets this from the weights' meta
            kwargs["image_size"] = entry.img_size
        return lambda: fn(weights=None, **kwargs)
    if entry.library == "timm":
        return lambda: _timm_model(entry)
    if entry.library == "user":
        return user_builder(entry.arch)
    raise ValueError(f"unknown library {entry.library!r}")


def _timm_model(entry: Entry) -> nn.Module:
    """A timm model from ``arch.tag`` (the tag's config applies), at ``entry.img_size`` where the
    tag was evaluated at another size than it was trained at and the model takes the size as an
    argument (vision transformers; a convolutional network takes any size as it is)."""
    import timm

    name = entry.name if entry.weights else entry.arch
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and int(cfg.input_size[-1]) != entry.img_size:
        try:
            return timm.create_model(name, pretrained=False, img_size=entry.img_size)
        except TypeError:  # takes no img_size: any input size works
            pass
    return timm.create_model(name, pretrained=False)


def user_builder(target: str):
    """A function making the user's model ``package.module:function`` (importable from the
    current folder too). Whatever is wrong with it (no such module or function, a builder that
    raises or returns something else than an ``nn.Module``) is one line of UsageError. The model
    gets a forward hook that hands on its first tensor output, or its ``logits`` where it returns
    a dict, so that every stage sees one tensor."""
    module_name, _, func_name = target.partition(":")
    if os.getcwd() not in sys.path:  # as ``python -m zoo`` does; the ``zoo`` script does not
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"{target}: cannot import {module_name!r} ({error_line(exc)})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UsageError(f"{target}: {module_name} has no function {func_name!r}")

    def make() -> nn.Module:
        try:
            model = func()
        except Exception as exc:
            raise UsageError(f"{target}: the builder raised {error_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise UsageError(f"{target}: the builder returned "
                             f"{'None' if model is None else type(model).__name__}, not a "
                             "torch.nn.Module")
        model.register_forward_hook(lambda _m, _i, out: model_output(out, target))
        return model
    return make


def model_output(out, name: str = "the model") -> torch.Tensor:
    """The tensor a classifier's output stands for: itself, the first item of a tuple or list,
    or a dict's ``logits`` (or its only tensor). Anything else is ambiguous: UsageError."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, Mapping):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        tensors = [v for v in out.values() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise UsageError(f"{name}: the model returns a dict of {len(tensors)} tensors "
                         f"({', '.join(map(str, out))}) and none is 'logits'")
    raise UsageError(f"{name}: the model returns {type(out).__name__}, expected a tensor, a "
                     "tuple starting with one, or a dict with 'logits'")


# In-place fills and initialisers: on a meta tensor they change nothing, yet each runs Python
# decompositions (about half of building a ViT on meta). They are skipped there.
_FILLS = {getattr(torch.Tensor, name) for name in (
    "normal_", "uniform_", "zero_", "fill_", "copy_", "mul_", "add_", "sub_", "div_", "clamp_",
    "clamp_min_", "clamp_max_", "erfinv_", "exponential_", "bernoulli_", "random_", "log_normal_",
    "cauchy_", "geometric_")}


class _MetaBuild(DeviceContext):
    """``torch.device("meta")`` that skips what would fill meta tensors with values."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if args and isinstance(args[0], torch.Tensor) and args[0].is_meta and (
                func in _FILLS or (getattr(func, "__module__", None) == "torch.nn.init"
                                   and func.__name__.endswith("_"))):
            return args[0]
        return super().__torch_function__(func, types, args, kwargs)


def build(entry: Entry, device: str = "meta") -> nn.Module:
    """The model in eval mode, on ``device``; a meta build falls back to CPU where it must."""
    make = _builder(entry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if device == "meta":
            try:
                with _MetaBuild("meta"):
                    return make().eval()
            except Exception:  # builders that compute while building; see module docstring
                pass
            return make().eval().to("meta")
        with torch.device(device):
            return make().eval()


def build_cpu_fast(entry: Entry) -> nn.Module:
    """A CPU model whose tensors are zero-filled instead of initialised (shapes are all a counter needs).

    Skipping initialisation makes a 600M-parameter model appear in a fraction of a second; zeros
    keep index buffers (e.g. relative-position tables) in range and avoid denormal slow paths.
    """
    model = build(entry, "meta")
    if any(t.is_meta for t in _tensors(model)):
        model = model.to_empty(device="cpu")
        with torch.no_grad():
            for t in _tensors(model):
                t.zero_()
    return model


def _tensors(model: nn.Module):
    yield from model.parameters()
    yield from model.buffers()


def param_count(model: nn.Module) -> int:
    """Exact number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def input_shape(entry: Entry) -> tuple[int, ...]:
    """The input of one sample: a user model's own shape, else 3 x img_size x img_size."""
    return getattr(entry, "shape", None) or (3, entry.img_size, entry.img_size)


def example_input(entry: Entry, device: str = "meta", batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, *input_shape(entry), device=device)
