"""The seed document's formulas, on small hand-built networks, against hand-computed values."""

import pytest
import thop
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from zoo.catalogue.build import build, example_input, param_count
from zoo.catalogue.entries import select
from zoo.measure.flops import conv_backward_flop, count_forward, count_training_flops


def test_parameter_formulas():
    assert param_count(nn.Linear(300, 40)) == 300 * 40 + 40
    assert param_count(nn.Linear(300, 40, bias=False)) == 12000
    assert param_count(nn.Conv2d(16, 32, 3, bias=False)) == 16 * 32 * 3 * 3
    assert param_count(nn.Conv2d(16, 32, 3)) == 4608 + 32
    assert param_count(nn.BatchNorm2d(64)) == 2 * 64
    assert param_count(nn.Embedding(1000, 64)) == 64000
    assert param_count(nn.Conv2d(32, 32, 3, groups=32, bias=False)) == 32 * 3 * 3


@pytest.mark.parametrize("name, module, shape", [
    # the seed's formula, by hand: out = (W + 2P - K) // S + 1
    ("resnet50.IMAGENET1K_V2", "conv1", "1x64x112x112"),  # (224 + 6 - 7) // 2 + 1 = 112
    ("resnet50.IMAGENET1K_V2", "maxpool", "1x64x56x56"),  # (112 + 2 - 3) // 2 + 1 = 56
    ("resnet50.IMAGENET1K_V2", "layer2.0.conv2", "1x128x28x28"),  # (56 + 2 - 3) // 2 + 1 = 28
    ("resnet50.IMAGENET1K_V2", "layer4.0.downsample.0", "1x2048x7x7"),  # (14 - 1) // 2 + 1 = 7
    ("inception_v3.IMAGENET1K_V1", "Conv2d_1a_3x3.conv", "1x32x149x149"),  # (299 - 3) // 2 + 1
    ("alexnet.IMAGENET1K_V1", "features.0", "1x64x55x55"),  # (224 + 4 - 11) // 4 + 1 = 55
])
def test_layer_table_output_sizes_follow_the_conv_formula(name, module, shape):
    entry = select([f"torchvision:{name}"])[0]
    layers = {layer["module"]: layer for layer in count_forward(build(entry), example_input(entry)).layers}
    assert layers[module]["output_shape"] == shape


def small_cnn():
    # 3x32x32 -> conv 3->8 k3 p1 -> BN -> ReLU -> maxpool 2 -> depthwise 8 k3 p1 -> conv 8->16 k1
    # -> global pool -> linear 16->10
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.Conv2d(8, 16, 1, bias=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


# by hand: MACs = output elements x (Cin/groups x K x K)
CONV1 = 8 * 32 * 32 * 3 * 3 * 3          # 221,184
DEPTHWISE = 8 * 16 * 16 * 1 * 3 * 3      # 18,432: one input channel per output channel
POINTWISE = 16 * 16 * 16 * 8             # 32,768
LINEAR = 16 * 10                         # 160
HAND_MACS = CONV1 + DEPTHWISE + POINTWISE + LINEAR


def test_reference_count_equals_hand_count():
    with torch.device("meta"):
        model = small_cnn().eval()
    count = count_forward(model, torch.empty(1, 3, 32, 32, device="meta"))
    assert count.macs == HAND_MACS
    assert count.by_category == {"conv": CONV1 + DEPTHWISE + POINTWISE, "linear": LINEAR}
    by_module = {row["module"]: row for row in count.layers}
    assert by_module["4"]["macs"] == DEPTHWISE
    assert by_module["4"]["output_shape"] == "1x8x16x16"
    assert by_module["1"]["params"] == 16  # BatchNorm(8) = 2N


def test_reference_count_at_batch_4_is_four_times():
    with torch.device("meta"):
        model = small_cnn().eval()
    assert count_forward(model, torch.empty(4, 3, 32, 32, device="meta")).macs == 4 * HAND_MACS


def test_thop_agrees_on_conv_and_linear():
    model = small_cnn().eval()
    macs, params = thop.profile(model, inputs=(torch.zeros(1, 3, 32, 32),), verbose=False)
    assert params == param_count(small_cnn())
    # thop's convention on top of ours, by hand: an affine BatchNorm costs 4 per element
    # (normalise 2 + scale-shift 2) over 8x32x32 elements; adaptive average pooling 256 adds + 1
    # divide per output for 16 outputs; ReLU and max pooling are free.
    assert macs == HAND_MACS + 4 * 8 * 32 * 32 + 16 * (16 * 16 + 1)


def test_training_flops_of_depthwise_conv_are_three_forwards():
    # torch's own formula gives about 34x forward for a depthwise layer; ours gives 3x
    # (forward + input gradient + weight gradient), because the input needs a gradient too.
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False))
    x = torch.empty(1, 32, 56, 56, device="meta", requires_grad=True)
    fwd_flops = 2 * 32 * 56 * 56 * 9
    assert count_training_flops(model, x) == 3 * fwd_flops


def test_training_flops_of_first_layer_skip_input_gradient():
    # The image needs no gradient: fwd + weight gradient only = 2 forwards, by hand.
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert count_training_flops(model, torch.empty(1, 3, 32, 32, device="meta")) == 2 * 2 * CONV1


def test_conv_backward_formula_grouped():
    # grad_out [1, 64, 28, 28], weight [64, 64/4, 3, 3]: one forward = 2 x 64x28x28 x 16x9 FLOPs
    one = 2 * 64 * 28 * 28 * 16 * 9
    assert conv_backward_flop([1, 64, 28, 28], [1, 64, 28, 28], [64, 16, 3, 3], None, [1, 1],
                              [1, 1], [1, 1], False, [0, 0], 4, [True, True, False]) == 2 * one
    assert conv_backward_flop([1, 64, 28, 28], [1, 64, 28, 28], [64, 16, 3, 3], None, [1, 1],
                              [1, 1], [1, 1], False, [0, 0], 4, [False, True, False]) == one


@pytest.mark.parametrize("name", [
    "torchvision:resnet50.IMAGENET1K_V2", "torchvision:vit_b_16.IMAGENET1K_V1",
    "torchvision:mobilenet_v3_large.IMAGENET1K_V2", "timm:swin_tiny_patch4_window7_224",
    "timm:efficientnet_b0", "timm:convnext_tiny.fb_in1k", "timm:levit_128",
])
def test_reference_counter_equals_flop_counter_mode(name):
    """The lean counter (no decomposition of product-free ops, meta kernels not re-run for shapes
    already seen) against torch's FlopCounterMode itself: the same FLOPs, op by op, forward and
    training step."""
    entry = select([name])[0]
    ours = count_forward(build(entry), example_input(entry))
    model = build(entry)
    for p in model.parameters():
        p.requires_grad_(False)
    with FlopCounterMode(display=False) as counter:
        model(example_input(entry))
    theirs = {str(op): f // 2 for op, f in counter.get_flop_counts()["Global"].items()}
    assert ours.by_op == theirs

    model = build(entry).train()
    with FlopCounterMode(display=False,
                         custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flop}
                         ) as counter:
        model(torch.cat([example_input(entry)] * 2)).sum().backward()
    assert count_training_flops(build(entry), example_input(entry)) == counter.get_total_flops() // 2


def _layouts(shape, dtype):
    """Meta tensors of ``shape`` in several layouts: contiguous, channels-last, a permuted view,
    a slice (not laid out as a new tensor)."""
    def m(*s):
        return torch.empty(*s, dtype=dtype, device="meta")

    out = [m(*shape)]
    if len(shape) == 4:
        out.append(m(*shape).to(memory_format=torch.channels_last))
        n, c, h, w = shape
        out.append(m(n, h, w, c).permute(0, 3, 1, 2))
        out.append(m(n, c + 1, h, w)[:, 1:])
    else:
        out.append(m(*reversed(shape)).permute(*reversed(range(len(shape)))))
    return out


def _cases():
    """(op, args, kwargs) over shapes with and without size-1 dimensions, layouts and dtypes."""
    aten = torch.ops.aten
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        def v(*s, d=dtype):
            return torch.empty(*s, dtype=d, device="meta")

        for shape in [(2, 8, 5, 6), (1, 8, 1, 1), (1, 1, 3, 3), (2, 8), (3, 5, 8)]:
            for x in _layouts(shape, dtype):
                c = x.shape[1]
                for op in (aten.gelu.default, aten.relu.default, aten.hardswish.default,
                           aten.hardsigmoid.default, aten.silu.default, aten.sigmoid.default,
                           aten.tanh.default, aten.mish.default, aten.elu.default,
                           aten.leaky_relu.default, aten.relu_.default, aten.hardtanh_.default,
                           aten.hardswish_.default, aten.hardsigmoid_.default, aten.silu_.default,
                           aten.sigmoid_.default, aten.tanh_.default, aten.elu_.default,
                           aten.leaky_relu_.default, aten.mish_.default):
                    yield op, (x,), {}
                for training in (True, False):
                    for d in (dtype, torch.float32):
                        stats = (v(c, d=d), v(c, d=d), v(c, d=d), v(c, d=d))
                        yield aten.native_batch_norm.default, (x, *stats, training, 0.1, 1e-5), {}
                    yield aten.native_batch_norm.default, (x, None, None, v(c), v(c), training,
                                                           0.1, 1e-5), {}
                for k in (1, 2):
                    norm = list(x.shape[-k:])
                    yield aten.native_layer_norm.default, (x, norm, v(*norm), v(*norm), 1e-6), {}
                    yield aten.native_layer_norm.default, (x, norm, None, None, 1e-6), {}
        for op in (aten.relu_.default, aten.hardtanh_.default, aten.gelu.default):
            yield op, (v(2, 3, d=torch.int64),), {}  # not on integers
        for m1 in _layouts((6, 8), dtype) + _layouts((1, 8), dtype):
            for m2 in _layouts((8, 10), dtype):
                for bias in (v(10), v(m1.shape[0], 10), v(1, 10), v(1)):
                    yield aten.addmm.default, (bias, m1, m2), {}
                    yield aten.addmm.default, (bias, m1, m2), {"beta": 0.5, "alpha": 2}


def test_shape_rules_give_what_the_meta_kernels_give():
    """The counter's shape rules (for ops whose meta kernels are slow Python) against the kernels
    themselves: the same shapes, strides and dtypes wherever a rule answers."""
    from zoo.measure.flops import SHAPE_RULES

    def described(out):
        outs = out if isinstance(out, tuple) else (out,)
        return [(tuple(t.shape), t.stride(), t.dtype) for t in outs]

    answered = 0
    for op, args, kwargs in _cases():
        got = SHAPE_RULES[op](*args, **kwargs)
        try:
            want = described(op(*args, **kwargs))
        except Exception:  # where the kernel refuses, the rule must not answer
            want = None
        if got is None:
            continue
        answered += 1
        assert described(got) == want, (op, args, kwargs)
    assert answered > 500


def test_reference_count_leaves_no_hook_behind():
    """The counter follows modules with global hooks; it removes them all, even though it enters
    itself again to decompose ops (a leak slowed every later count of the process)."""
    from torch.nn.modules import module

    before = (len(module._global_forward_pre_hooks), len(module._global_forward_hooks))
    entry = select(["torchvision:resnet18"])[0]
    for _ in range(2):
        count_forward(build(entry, "meta"), example_input(entry))
    assert (len(module._global_forward_pre_hooks), len(module._global_forward_hooks)) == before
