"""Which models the zoo holds.

A row of the zoo is keyed by (library, arch, weights, img_size):
- library: "torchvision" or "timm";
- arch: the builder name (``resnet50``, ``vit_base_patch16_224``);
- weights: the torchvision weight name (``IMAGENET1K_V2``) or the timm pretrained tag (``a1_in1k``);
- img_size: the square input side the published weights were evaluated at (their crop size).

The default zoo is every torchvision classification weight plus the curated timm tags below.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import io
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from zoo.errors import UsageError
from zoo.store.schema import KEY  # noqa: F401  (the row key, named here for the catalogue's users)


@dataclass(frozen=True, order=True)
class Entry:
    library: str
    arch: str
    weights: str
    img_size: int

    @property
    def family(self) -> str:
        return family_of(self.arch)

    @property
    def name(self) -> str:
        """``arch.weights``: one string that names the row (timm's own spelling for its tags)."""
        return f"{self.arch}.{self.weights}"

    @property
    def key(self) -> tuple:
        return (self.library, self.arch, self.weights, self.img_size)


# The survey's networks first (AlexNet, GoogLeNet come from torchvision), then the families people
# compare today; the best-known tags of each, at the tag's own image size.
TIMM_TAGS = [
    # survey networks
    "vgg16.tv_in1k", "vgg19.tv_in1k", "vgg16_bn.tv_in1k", "vgg19_bn.tv_in1k",
    "inception_v3.tv_in1k", "inception_v3.tf_in1k", "inception_v4.tf_in1k",
    "inception_resnet_v2.tf_in1k",
    "resnet18.a1_in1k", "resnet34.a1_in1k", "resnet50.a1_in1k", "resnet50.tv_in1k",
    "resnet101.a1h_in1k", "resnet152.a1h_in1k", "resnet50d.ra2_in1k",
    # MobileNet v1-v4 and relatives
    "mobilenetv1_100.ra4_e3600_r224_in1k", "mobilenetv2_100.ra_in1k", "mobilenetv2_140.ra_in1k",
    "mobilenetv3_small_100.lamb_in1k", "mobilenetv3_large_100.ra_in1k",
    "mobilenetv4_conv_small.e2400_r224_in1k", "mobilenetv4_conv_medium.e500_r256_in1k",
    "mobilenetv4_conv_large.e600_r384_in1k", "mobilenetv4_hybrid_medium.ix_e550_r256_in1k",
    "mobilenetv4_hybrid_large.e600_r384_in1k", "mnasnet_100.rmsp_in1k",
    "ghostnet_100.in1k", "ghostnetv2_100.in1k",
    # EfficientNet and EfficientNetV2
    "efficientnet_b0.ra_in1k", "efficientnet_b1.ft_in1k", "efficientnet_b2.ra_in1k",
    "efficientnet_b3.ra2_in1k", "efficientnet_b4.ra2_in1k", "tf_efficientnet_b5.ra_in1k",
    "tf_efficientnet_b7.ra_in1k", "efficientnetv2_rw_s.ra2_in1k", "tf_efficientnetv2_s.in1k",
    "tf_efficientnetv2_m.in1k", "tf_efficientnetv2_l.in1k",
    # RegNet
    "regnetx_002.pycls_in1k", "regnetx_016.tv2_in1k", "regnety_004.tv2_in1k",
    "regnety_016.tv2_in1k", "regnety_032.ra_in1k", "regnety_040.ra3_in1k", "regnety_080.ra3_in1k",
    "regnety_160.deit_in1k", "regnetz_040.ra3_in1k",
    # ResNeXt, DenseNet, RepVGG
    "resnext50_32x4d.a1h_in1k", "resnext101_32x8d.fb_wsl_ig1b_ft_in1k", "resnext101_64x4d.c1_in1k",
    "densenet121.ra_in1k", "densenet161.tv_in1k", "densenet169.tv_in1k", "densenet201.tv_in1k",
    "repvgg_a2.rvgg_in1k", "repvgg_b1.rvgg_in1k",
    # ConvNeXt
    "convnext_atto.d2_in1k", "convnext_nano.d1h_in1k", "convnext_tiny.fb_in1k",
    "convnext_small.fb_in1k", "convnext_base.fb_in1k", "convnext_large.fb_in1k",
    "convnextv2_tiny.fcmae_ft_in1k", "convnextv2_base.fcmae_ft_in1k",
    # ViT, DeiT, CaiT, BEiT, MLP-Mixer
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k",
    "vit_base_patch16_224.augreg2_in21k_ft_in1k", "vit_base_patch16_384.augreg_in21k_ft_in1k",
    "vit_base_patch32_224.augreg_in21k_ft_in1k", "vit_large_patch16_224.augreg_in21k_ft_in1k",
    "deit_tiny_patch16_224.fb_in1k", "deit_small_patch16_224.fb_in1k", "deit_base_patch16_224.fb_in1k",
    "deit3_small_patch16_224.fb_in1k", "deit3_base_patch16_224.fb_in1k",
    "cait_s24_224.fb_dist_in1k", "beit_base_patch16_224.in22k_ft_in22k_in1k",
    "mixer_b16_224.goog_in21k_ft_in1k",
    # Swin, MaxViT, CoAtNet
    "swin_tiny_patch4_window7_224.ms_in1k", "swin_small_patch4_window7_224.ms_in1k",
    "swin_base_patch4_window7_224.ms_in1k", "swin_large_patch4_window7_224.ms_in22k_ft_in1k",
    "maxvit_nano_rw_256.sw_in1k", "maxvit_tiny_tf_224.in1k", "maxvit_small_tf_224.in1k",
    "maxvit_base_tf_224.in1k", "coatnet_0_rw_224.sw_in1k",
    # efficient hybrids: EfficientViT, LeViT, MobileViT, FastViT, EdgeNeXt, PoolFormer family
    "efficientvit_b0.r224_in1k", "efficientvit_b1.r224_in1k", "efficientvit_b2.r224_in1k",
    "efficientvit_b3.r224_in1k", "efficientvit_m0.r224_in1k", "efficientvit_m5.r224_in1k",
    "efficientvit_l1.r224_in1k",
    "levit_128s.fb_dist_in1k", "levit_128.fb_dist_in1k", "levit_256.fb_dist_in1k",
    "levit_384.fb_dist_in1k",
    "mobilevit_s.cvnets_in1k", "mobilevitv2_100.cvnets_in1k", "fastvit_t8.apple_in1k",
    "fastvit_sa24.apple_in1k", "edgenext_small.usi_in1k", "caformer_s18.sail_in1k",
    "poolformer_s12.sail_in1k",
]

# Named sets for the command line. "survey" is the 2016 survey's networks; "bench" the fixed set the
# speed benchmark counts.
SETS = {
    "survey": [
        "torchvision:alexnet", "torchvision:vgg16", "torchvision:vgg19", "torchvision:googlenet",
        "torchvision:inception_v3", "timm:inception_v4", "torchvision:resnet18",
        "torchvision:resnet34", "torchvision:resnet50", "torchvision:resnet101",
        "torchvision:resnet152", "torchvision:vgg16_bn", "torchvision:vgg19_bn",
        "torchvision:densenet121",
    ],
    "bench": [
        "torchvision:vgg16.IMAGENET1K_V1", "torchvision:resnet50.IMAGENET1K_V1",
        "torchvision:mobilenet_v2.IMAGENET1K_V1", "torchvision:vit_b_16.IMAGENET1K_V1",
        "torchvision:convnext_tiny.IMAGENET1K_V1",
    ],
}

# The handful of kinds families are grouped into for colour on the site's charts (the family is
# shown on hover and can be picked): what a reader tells apart at a glance.
KINDS = ["classic CNN", "ResNet-like", "mobile/efficient", "vision transformer", "hybrid", "MLP",
         "other"]

FAMILIES_TABLE = "families.csv"


@dataclass(frozen=True)
class Family:
    """One row of ``families.csv``: the architectures whose name ``pattern`` matches (``re.match``;
    rows are tried in file order, the first match wins), their family, its kind (one of ``KINDS``),
    and the paper that introduced them (``arXiv:NNNN.NNNNN``, empty where the libraries cite none)
    with its title and the modules whose docstrings cite it."""

    pattern: str
    family: str
    kind: str
    paper: str
    title: str
    cited_in: str


@lru_cache(maxsize=1)
def families() -> tuple[Family, ...]:
    """The rows of the families table (package data beside this module), in file order."""
    text = resources.files(__package__).joinpath(FAMILIES_TABLE).read_text(encoding="utf-8")
    return tuple(Family(**row) for row in csv.DictReader(io.StringIO(text)))


@lru_cache(maxsize=1)
def _compiled() -> tuple[tuple[re.Pattern, Family], ...]:
    return tuple((re.compile(row.pattern), row) for row in families())


@lru_cache(maxsize=None)
def family_row(arch: str) -> Family | None:
    """The first row of the families table whose pattern matches ``arch``; None if none does."""
    return next((row for pattern, row in _compiled() if pattern.match(arch)), None)


def family_of(arch: str) -> str:
    """The family of an architecture (timm or torchvision builder name); "other" if none."""
    row = family_row(arch)
    return row.family if row else "other"


@lru_cache(maxsize=1)
def _family_kinds() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for row in families():
        kinds.setdefault(row.family, row.kind)
    return kinds


def kind_of(family: str) -> str:
    """The kind (one of ``KINDS``) a family is drawn in."""
    return _family_kinds().get(family, "other")


def torchvision_entries() -> list[Entry]:
    """Every torchvision classification weight, at the weight's own crop size."""
    import torchvision
    from torchvision.models import get_model_weights, list_models

    out = []
    for arch in list_models(module=torchvision.models):
        for w in get_model_weights(arch):
            out.append(Entry("torchvision", arch, w.name, int(w.transforms().crop_size[0])))
    return out


def timm_entries(tags=TIMM_TAGS) -> list[Entry]:
    """The curated timm tags, each at its pretrained config's input size."""
    import timm

    out = []
    for name in tags:
        arch, tag = name.split(".", 1)
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            raise KeyError(f"timm has no pretrained tag {name!r}")
        out.append(Entry("timm", arch, tag, int(cfg.input_size[-1])))
    return out


@lru_cache(maxsize=1)
def default_zoo() -> tuple[Entry, ...]:
    return _remembered("default zoo", lambda: torchvision_entries() + timm_entries())


def _remembered(name: str, make) -> tuple[Entry, ...]:
    """``make()``'s entries, kept in the result cache under the libraries' versions and this
    module's source (see ``zoo.store.cache.remembered``)."""
    from zoo.catalogue import reference
    from zoo.store.cache import remembered

    table = reference.provenance()[reference.TIMM_RESULTS]["sha256"]  # the tags it lists
    rows = remembered(name, lambda: [list(e.key) for e in make()], ("zoo.catalogue.entries",), table)
    return tuple(Entry(*row) for row in rows)


@lru_cache(maxsize=1)
def whole_catalogue() -> tuple[Entry, ...]:
    return _remembered("whole catalogue", _whole_catalogue)


def _whole_catalogue() -> tuple[Entry, ...]:
    """Everything people choose from: every torchvision weight; every timm architecture at its
    default configuration (its default tag); every tag timm's results table lists, at the image
    size it was evaluated at there (and with that accuracy)."""
    import timm

    from zoo.catalogue.accuracy import read_timm_results

    out = {e.key: e for e in torchvision_entries()}
    for arch in timm.list_models():
        cfg = timm.models.get_pretrained_cfg(arch)
        e = Entry("timm", arch, cfg.tag or "", int(cfg.input_size[-1]))
        out.setdefault(e.key, e)
    for name, size in read_timm_results()[["model", "img_size"]].itertuples(index=False):
        arch, _, tag = name.partition(".")
        e = Entry("timm", arch, tag, int(size))
        out.setdefault(e.key, e)
    return tuple(sorted(out.values()))


class UnknownModel(UsageError, LookupError):
    """A selector matched nothing; the message suggests close names."""


@dataclass(frozen=True, order=True)
class UserModel(Entry):
    """A model of the user's own: ``package.module:function`` returning an ``nn.Module``, with
    the input shape (without the batch) it takes. Its row key is ("user", target, "", side)."""

    shape: tuple = ()


def is_user_model(name: str) -> bool:
    """``package.module:function`` (not a ``library:name`` selector)."""
    return ":" in name and name.partition(":")[0] not in ("timm", "torchvision")


def user_model(target: str, input_arg: str | None) -> UserModel:
    module, _, function = target.partition(":")
    if not (re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module)
            and re.fullmatch(r"[A-Za-z_]\w*", function)):
        raise UsageError(f"{target!r}: expected package.module:function, e.g. mypkg.models:build")
    if input_arg is None:
        raise UsageError(f"{target}: your own model needs --input, e.g. --input 3x224x224")
    shape = parse_shape(input_arg)
    return UserModel("user", target, "", shape[-1], shape)


def parse_shape(text: str) -> tuple[int, ...]:
    """``3x224x224`` -> (3, 224, 224): an input shape without the batch."""
    parts = re.split(r"[x,]", text.strip().lower())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--input {text!r}: expected a shape such as 3x224x224") from None
    if any(d <= 0 for d in shape):
        raise UsageError(f"--input {text!r}: every dimension must be positive")
    if not 1 <= len(shape) <= 4 or math.prod(shape) > 2**31:
        raise UsageError(f"--input {text!r}: expected 1 to 4 dimensions of at most 2^31 "
                         "elements in all")
    return shape


def default_weights(entries: list[Entry]) -> Entry:
    """Of the weights of one architecture, the library's default: torchvision's ``DEFAULT``,
    timm's default tag; torchvision first when both libraries have the name."""
    for e in entries:
        if e.library == "torchvision":
            from torchvision.models import get_model_weights

            default = get_model_weights(e.arch).DEFAULT.name
            return next((x for x in entries if x.library == "torchvision"
                         and x.weights == default), e)
    for e in entries:
        if e.library == "timm":
            import timm

            tag = timm.models.get_pretrained_cfg(e.arch).tag
            return next((x for x in entries if x.library == "timm" and x.weights == tag), e)
    return entries[0]


def _matches(entry: Entry, pattern: str) -> bool:
    library, _, pat = pattern.rpartition(":")
    if library and library != entry.library:
        return False
    names = (entry.arch, entry.name, f"{entry.name}@{entry.img_size}")
    return any(fnmatch.fnmatchcase(n, pat) for n in names)


def select(selectors, zoo=None) -> list[Entry]:
    """Entries matching any selector: a named set, an arch, ``arch.weights``, a glob, ``library:...``.

    Names are looked for in the default zoo, and in the whole catalogue where the default zoo has
    none; ``all`` is the whole catalogue. Raises UnknownModel for a selector that matches nothing.
    """
    zoo = list(default_zoo() if zoo is None else zoo)
    chosen: dict[tuple, Entry] = {}
    for sel in selectors:
        if sel == "all":
            hits = list(whole_catalogue())
        elif sel == "default":
            hits = zoo
        elif sel in ("torchvision", "timm"):
            hits = [e for e in zoo if e.library == sel]
        elif sel in SETS:
            hits = [e for e in zoo if any(_matches(e, p) for p in SETS[sel])]
        else:
            hits = ([e for e in zoo if _matches(e, sel)]
                    or [e for e in whole_catalogue() if _matches(e, sel)])
        if not hits:
            names = sorted({e.arch for e in whole_catalogue()} | set(SETS)
                           | {"default", "all", "torchvision", "timm"})
            close = difflib.get_close_matches(sel.rpartition(":")[2], names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see 'zoo list'"
            raise UnknownModel(f"unknown model or set {sel!r}{hint}")
        for e in hits:
            chosen.setdefault(e.key, e)
    return sorted(chosen.values())
