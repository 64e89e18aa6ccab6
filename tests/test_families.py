"""The families table (``zoo/catalogue/families.csv``): the default zoo keeps its families, every
paper is one the libraries' own docstrings cite for the architectures its row matches, and almost
nothing of the whole catalogue is left in "other"."""

import inspect
import re
import sys
from functools import cache

import pytest

from zoo.catalogue.entries import KINDS, Entry, families, family_of, family_row, kind_of

# Each default-zoo architecture's family as the hard-coded list gave it before the table replaced
# it (family -> architectures): the charts and the committed data name these families.
DEFAULT_ZOO_FAMILIES = {
    "AlexNet": "alexnet",
    "ConvNeXt": (
        "convnext_atto convnext_base convnext_large convnext_nano convnext_small convnext_tiny "
        "convnextv2_base convnextv2_tiny"
    ),
    "DenseNet": "densenet121 densenet161 densenet169 densenet201",
    "EdgeNeXt": "edgenext_small",
    "EfficientNet": (
        "efficientnet_b0 efficientnet_b1 efficientnet_b2 efficientnet_b3 efficientnet_b4 "
        "efficientnet_b5 efficientnet_b6 efficientnet_b7 tf_efficientnet_b5 tf_efficientnet_b7"
    ),
    "EfficientNetV2": (
        "efficientnet_v2_l efficientnet_v2_m efficientnet_v2_s efficientnetv2_rw_s "
        "tf_efficientnetv2_l tf_efficientnetv2_m tf_efficientnetv2_s"
    ),
    "EfficientViT": (
        "efficientvit_b0 efficientvit_b1 efficientvit_b2 efficientvit_b3 efficientvit_l1 "
        "efficientvit_m0 efficientvit_m5"
    ),
    "FastViT": "fastvit_sa24 fastvit_t8",
    "GhostNet": "ghostnet_100 ghostnetv2_100",
    "GoogLeNet": "googlenet",
    "Inception": "inception_v3 inception_v4",
    "Inception-ResNet": "inception_resnet_v2",
    "LeViT": "levit_128 levit_128s levit_256 levit_384",
    "MLP-Mixer": "mixer_b16_224",
    "MaxViT/CoAtNet": (
        "coatnet_0_rw_224 maxvit_base_tf_224 maxvit_nano_rw_256 maxvit_small_tf_224 maxvit_t "
        "maxvit_tiny_tf_224"
    ),
    "MetaFormer": "caformer_s18 poolformer_s12",
    "MnasNet": "mnasnet0_5 mnasnet0_75 mnasnet1_0 mnasnet1_3 mnasnet_100",
    "MobileNetV1": "mobilenetv1_100",
    "MobileNetV2": "mobilenet_v2 mobilenetv2_100 mobilenetv2_140",
    "MobileNetV3": "mobilenet_v3_large mobilenet_v3_small mobilenetv3_large_100 mobilenetv3_small_100",
    "MobileNetV4": (
        "mobilenetv4_conv_large mobilenetv4_conv_medium mobilenetv4_conv_small "
        "mobilenetv4_hybrid_large mobilenetv4_hybrid_medium"
    ),
    "MobileViT": "mobilevit_s mobilevitv2_100",
    "RegNet": (
        "regnet_x_16gf regnet_x_1_6gf regnet_x_32gf regnet_x_3_2gf regnet_x_400mf regnet_x_800mf "
        "regnet_x_8gf regnet_y_128gf regnet_y_16gf regnet_y_1_6gf regnet_y_32gf regnet_y_3_2gf "
        "regnet_y_400mf regnet_y_800mf regnet_y_8gf regnetx_002 regnetx_016 regnety_004 "
        "regnety_016 regnety_032 regnety_040 regnety_080 regnety_160 regnetz_040"
    ),
    "RepVGG": "repvgg_a2 repvgg_b1",
    "ResNeXt": "resnext101_32x8d resnext101_64x4d resnext50_32x4d",
    "ResNet": "resnet101 resnet152 resnet18 resnet34 resnet50 resnet50d",
    "ShuffleNet": "shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 shufflenet_v2_x2_0",
    "SqueezeNet": "squeezenet1_0 squeezenet1_1",
    "Swin": (
        "swin_b swin_base_patch4_window7_224 swin_large_patch4_window7_224 swin_s "
        "swin_small_patch4_window7_224 swin_t swin_tiny_patch4_window7_224 swin_v2_b swin_v2_s "
        "swin_v2_t"
    ),
    "VGG": "vgg11 vgg11_bn vgg13 vgg13_bn vgg16 vgg16_bn vgg19 vgg19_bn",
    "ViT": (
        "beit_base_patch16_224 cait_s24_224 deit3_base_patch16_224 deit3_small_patch16_224 "
        "deit_base_patch16_224 deit_small_patch16_224 deit_tiny_patch16_224 vit_b_16 vit_b_32 "
        "vit_base_patch16_224 vit_base_patch16_384 vit_base_patch32_224 vit_h_14 vit_l_16 "
        "vit_l_32 vit_large_patch16_224 vit_small_patch16_224 vit_tiny_patch16_224"
    ),
    "Wide ResNet": "wide_resnet101_2 wide_resnet50_2",
}
OTHER_GOAL = 0.02  # at most this share of the catalogue's architectures in family "other"
ARXIV_LINK = r"arxiv\.org/(?:abs|pdf)/{}"


@cache
def libraries() -> dict[str, set[str]]:
    """library -> its architecture names (the whole catalogue's)."""
    import timm
    import torchvision

    return {"timm": set(timm.list_models()),
            "torchvision": set(torchvision.models.list_models(module=torchvision.models))}


def architectures() -> list[str]:
    return sorted(set().union(*libraries().values()))


def docstrings(arch: str) -> list[tuple[str, str]]:
    """(module, text) for each library that has ``arch``: timm's defining module's docstring with the
    entrypoint's; torchvision's builder's docstring."""
    out = []
    if arch in libraries()["timm"]:
        from timm.models import _registry

        fn = _registry._model_entrypoints[arch]
        out.append((fn.__module__,
                    (sys.modules[fn.__module__].__doc__ or "") + "\n" + (inspect.getdoc(fn) or "")))
    if arch in libraries()["torchvision"]:
        from torchvision.models import get_model_builder

        builder = get_model_builder(arch)
        out.append((builder.__module__, inspect.getdoc(builder) or ""))
    return out


@cache
def matched() -> dict[str, list[str]]:
    """pattern -> the catalogue's architectures whose first matching row it is."""
    out = {row.pattern: [] for row in families()}
    for arch in architectures():
        row = family_row(arch)
        if row is not None:
            out[row.pattern].append(arch)
    return out


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_default_zoo_keeps_its_families():
    expected = {arch: family for family, archs in DEFAULT_ZOO_FAMILIES.items()
                for arch in archs.split()}
    assert len(expected) == 158
    assert set(expected) <= set(architectures())  # still names the libraries have
    assert {arch: family_of(arch) for arch in expected} == expected


@pytest.mark.parametrize("row", families(), ids=lambda row: row.pattern)
def test_every_paper_is_cited_by_the_source_of_every_architecture_its_row_matches(row):
    archs = matched()[row.pattern]
    assert archs, f"{row.pattern} matches no architecture of the catalogue"
    if not row.paper:
        assert not row.title and not row.cited_in
        return
    pid = re.fullmatch(r"arXiv:(\d{4}\.\d{4,5})", row.paper).group(1)
    link = re.compile(ARXIV_LINK.format(re.escape(pid)), re.I)
    citing = {}
    for arch in archs:
        for module, text in docstrings(arch):
            assert link.search(text), f"{arch} ({module}) does not cite {row.paper}"
            citing[module] = text
    assert set(row.cited_in.split()) == set(citing)
    if row.title:
        assert any(_words(row.title) in _words(text) for text in citing.values()), row.title


def test_almost_no_architecture_is_left_in_other():
    archs = architectures()
    other = [arch for arch in archs if family_of(arch) == "other"]
    assert len(archs) > 1000
    assert len(other) / len(archs) < OTHER_GOAL, other


def test_every_kind_is_one_of_the_kinds_and_every_family_has_one():
    kinds = {}
    for row in families():
        assert row.kind in KINDS, row
        assert kinds.setdefault(row.family, row.kind) == row.kind, row
        assert row.family and row.family != "other", row
        re.compile(row.pattern)
    assert kind_of("ConvNeXt") == "ResNet-like" and kind_of("no such family") == "other"


def test_spot_values():
    assert family_of("deit_base_patch16_224") == "ViT"
    assert family_row("deit_base_patch16_224").paper == "arXiv:2012.12877"
    assert family_row("deit3_base_patch16_224").paper == "arXiv:2204.07118"
    assert family_row("resnext50_32x4d").paper == "arXiv:1611.05431"
    assert family_row("resnet50").paper == "arXiv:1512.03385"
    assert family_row("resnet50d").paper == "arXiv:1812.01187"
    assert family_row("resnet50_clip").paper == "arXiv:2103.00020"  # timm's byobnet, not resnet
    assert family_row("squeezenet1_1").paper == ""  # torchvision cites no paper for v1.1
    assert family_of("inception_next_tiny") == "InceptionNeXt"  # not Inception
    assert family_of("coat_lite_tiny") == "CoaT" and family_of("coatnet_0_224") == "MaxViT/CoAtNet"
    assert family_row("hieradet_small").paper == "arXiv:2408.00714"
    assert family_row("efficientvit_m0").paper == "arXiv:2305.07027"
    assert family_row("efficientvit_b0").paper == "arXiv:2205.14756"
    assert family_of("vit_base_r50_s16_224") == "Hybrid ViT" and kind_of("Hybrid ViT") == "hybrid"
    assert family_of("not_a_network") == "other" and family_row("not_a_network") is None
    assert family_row("mixer_b16_224").title == "MLP-Mixer: An all-MLP Architecture for Vision"


def test_a_timm_weight_without_a_paper_of_its_own_takes_its_rows():
    from zoo.catalogue.facts import facts

    got = facts(Entry("timm", "ecaresnet50t", "ra2_in1k", 288))
    assert got["paper"] == "arXiv:1910.03151"
    assert got["paper_source"] == ("zoo's families table (zoo/catalogue/families.csv; "
                                   "cited by timm.models.resnet)")
