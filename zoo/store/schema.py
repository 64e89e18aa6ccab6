"""Every table of ``data/``: its columns, their types, its key and its sort order, in one place.

A table is read back through its schema (``zoo.store.tables.read``) and written through it
(``zoo.store.tables.update``): a file that is truncated, garbled or breaks a type is refused with the
file and line named, before anything is written.

Figures are stored at what they mean, so that a re-run on another machine writes the same bytes:
bytes and counts as integers; multiply-accumulates as computed (exact integers over 1e9); a
least-squares ratio (``worst_residual``) to ``RATIO_DIGITS`` significant digits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

KEY = ["library", "arch", "weights", "img_size"]
RATIO_DIGITS = 4  # significant digits of ratios that come out of a least-squares fit
MAX_BATCH = 1 << 16  # the search for the largest batch that fits stops here (max_batch_*gb)


def largest_batch_text(batch) -> str:
    """A largest batch as a reader should take it: the search's upper bound is a lower bound;
    '' where none was searched for (a missing value: None, NaN or NA)."""
    import pandas as pd

    if batch is None or pd.isna(batch):
        return ""
    batch = int(batch)
    return f">={batch}" if batch >= MAX_BATCH else str(batch)


@dataclass(frozen=True)
class Col:
    kind: str  # "str", "int" (bytes, counts), "float"
    nullable: bool = False
    digits: int | None = None  # significant digits a float is stored to (None: as computed)
    min: float | None = None
    max: float | None = None


S, I, F = Col("str"), Col("int"), Col("float")
S0, I0, F0 = Col("str", True), Col("int", True), Col("float", True)
BYTES, BYTES0 = Col("int", min=0), Col("int", True)
_KEY_COLS = {"library": S, "arch": S, "weights": S0, "img_size": Col("int", min=1)}
VERSIONS = {c: S0 for c in ("zoo_version", "torch_version", "torchvision_version", "timm_version",
                             "thop_version", "fvcore_version")}
MEMORY_CONFIG = {"mode": S, "precision": S, "optimizer": S0}
# memory.csv's breakdown of the peak: its ``<part>_bytes`` columns sum to ``peak_bytes``
MEMORY_PARTS = ("parameters", "buffers", "gradients", "optimizer", "activations", "temporaries",
                "workspace")
MS0 = Col("float", True, digits=4, min=0)  # a time (ms) or rate, as a timer can tell it


LATENCY = {"device": S, "device_name": S, "threads": Col("int", min=1), "precision": S,
           "channels_last": Col("int", min=0, max=1), "infer_batch_size": Col("int", min=1),
           "infer_img_size": Col("int", min=1),
           **{c: MS0 for c in ("infer_step_time", "infer_step_time_p90", "infer_step_time_iqr",
                               "infer_samples_per_sec")},
           "infer_runs": Col("int", True, min=1), "status": S,
           **{c: S0 for c in ("zoo_version", "torch_version", "torchvision_version",
                              "timm_version")}}


@dataclass(frozen=True)
class Table:
    name: str  # file name in data/
    columns: dict[str, Col]
    key: list[str]  # the sort order; unique per row where ``unique``
    patterns: dict[str, Col] = field(default_factory=dict)  # regex column names -> type
    unique: bool = True
    strict: bool = True  # no columns but these (a table of our own); else extra columns are text
    compressed: bool = False  # stored gzipped (``file``): the large per-layer and per-batch tables
    # nullable columns added after files were written without them: such a file reads them as
    # empty, and its next write adds them
    added: tuple[str, ...] = ()
    # how a file written by an older zoo is read: a function of its text cells (see _amp_labels)
    legacy: object = None

    @property
    def file(self) -> str:
        """The file's name in the data folder."""
        return self.name + (".gz" if self.compressed else "")

    def col(self, name: str) -> Col | None:
        if name in self.columns:
            return self.columns[name]
        hit = next((c for p, c in self.patterns.items() if re.fullmatch(p, name)), None)
        return hit if hit or self.strict else S0


def _t(name, columns, extra_key=(), patterns=None, unique=True, compressed=False, added=(),
       legacy=None):
    return Table(name, {**_KEY_COLS, **columns}, KEY + list(extra_key), patterns or {}, unique,
                 compressed=compressed, added=tuple(added), legacy=legacy)


def _amp_labels(marker: str):
    """Memory tables written before the caching allocator's replay (a file without ``marker``):
    their precisions ``fp16`` and ``bf16`` were AMP (fp32 weights under autocast), now
    ``amp-fp16`` and ``amp-bf16``; their ``max_batch_<N>gb`` columns (a fixed 5% headroom on N
    GiB, not the replay on a real card) are left out. Their other figures stand as that zoo
    computed them until the stage is run again."""
    def upgrade(df):
        if marker in df.columns or "precision" not in df.columns:
            return df
        df = df.drop(columns=[c for c in df.columns if re.fullmatch(r"max_batch_\d+gb", c)])
        df["precision"] = df["precision"].replace({"fp16": "amp-fp16", "bf16": "amp-bf16"})
        return df
    return upgrade


TABLES = {t.name: t for t in [
    _t("counts.csv", {
        "family": S, "params": Col("int", min=0), "gmacs": Col("float", min=0),
        "gmacs_thop": F0, "gmacs_fvcore": F0, "gmacs_torch": F0, "gflops_train": F0,
        "top1": Col("float", True, min=0, max=100), "top5": Col("float", True, min=0, max=100),
        "acc_source": S0, "license": S0, "license_source": S0, "paper": S0, "paper_source": S0,
        "recipe": S0, **VERSIONS},
       added=("license", "license_source", "paper", "paper_source", "recipe")),
    _t("ops.csv", {"counter": S, "op": S, "category": S, "gmacs": F}, ["counter", "op", "category"]),
    # one row per call of a leaf module, in call order (a module called twice has two rows)
    _t("layers.csv", {"module": S, "type": S, "output_shape": S0, "params": Col("int", min=0),
                      "gmacs": Col("float", min=0)}, unique=False, compressed=True),
    _t("counter-notes.csv", {"counter": S, "status": S, "note": S0}, ["counter"]),
    _t("failures.csv", {"stage": S, "error": S, "traceback": S0}, ["stage"]),
    # peak_bytes: the tensors' blocks at the peak, by category (MEMORY_PARTS' columns sum to it);
    # allocated_bytes, reserved_bytes: torch.cuda.max_memory_allocated and max_memory_reserved
    # by the caching allocator's replay (empty where no trace could be interpolated)
    _t("memory.csv", {**MEMORY_CONFIG, "batch": Col("int", min=1), "peak_bytes": BYTES,
                      "allocated_bytes": BYTES0, "reserved_bytes": BYTES0,
                      **{f"{c}_bytes": BYTES for c in MEMORY_PARTS}},
       ["mode", "precision", "optimizer", "batch"], compressed=True,
       added=("allocated_bytes", "reserved_bytes"), legacy=_amp_labels("allocated_bytes")),
    _t("memory-fit.csv", {**MEMORY_CONFIG, "model_bytes": Col("int"), "per_sample_bytes": BYTES,
                          "worst_residual": Col("float", digits=RATIO_DIGITS, min=0),
                          "parameter_bytes": BYTES, "buffer_bytes": BYTES,
                          "gradient_bytes": BYTES, "optimizer_bytes": BYTES,
                          "activation_bytes_per_sample": BYTES},
       ["mode", "precision", "optimizer"],
       {r"temporaries_max_bytes_b\d+": BYTES, r"max_batch_[a-z0-9_]+": Col("int", True, min=0)},
       legacy=_amp_labels("max_batch_h100")),
    _t("memory-savings.csv", {"batch": Col("int", min=1), "peak_fp32_adamw_bytes": BYTES,
                              **{f"saved_by_{c}_bytes": BYTES0 for c in (
                                  "amp_bf16", "sgd", "accumulation_4x", "inplace",
                                  "checkpointing")},
                              "inplace_case": S0, "inplace_vs_out_of_place_bytes": BYTES0},
       added=("inplace_case", "inplace_vs_out_of_place_bytes")),
    _t("memory-failures.csv", {"stage": S, "error": S, "traceback": S0}, ["stage"]),
    # one row per model, threads and batch size; times in ms to 4 significant digits. A batch size
    # left out by the model's time budget is a row with status "skipped: ..." and no figures.
    _t("latency.csv", LATENCY,
       ["device", "precision", "threads", "infer_batch_size"]),
    _t("latency-failures.csv", {"stage": S, "error": S, "traceback": S0}, ["stage"]),
    # written on a CUDA machine by scripts/gpu-latency: latency.csv's columns, with power
    _t("latency-gpu.csv", {**LATENCY, "power_w": MS0, "joules_per_image": MS0},
       ["device", "precision", "threads", "infer_batch_size"]),
    # written on a CUDA machine by scripts/gpu-check (torch, torchvision, timm and numpy only):
    # "peak" rows at one batch size, "largest batch" rows with the batch that ran; the card, its
    # memory and CUDA context with every row
    _t("memory-measured.csv", {**MEMORY_CONFIG, "what": S, "batch": Col("int", min=0),
                               "max_allocated_bytes": BYTES0, "max_reserved_bytes": BYTES0,
                               "status": S, "device": S, "capability": S,
                               "cuda_total_bytes": BYTES, "driver": S0,
                               "nvidia_smi_total_mib": BYTES0, "context_start_bytes": I,
                               "context_end_bytes": I, "torch_version": S0,
                               "torchvision_version": S0, "timm_version": S0, "cuda_version": S0},
       ["device", "mode", "precision", "optimizer", "what"]),
    # written on CPU by scripts/gpu-compare: each measured row beside zoo's prediction for it
    _t("memory-comparison.csv", {**MEMORY_CONFIG, "what": S, "device": S,
                                 "batch": Col("int", min=0),
                                 "measured_allocated_bytes": BYTES0,
                                 "predicted_allocated_bytes": BYTES0, "allocated_error": F0,
                                 "measured_reserved_bytes": BYTES0,
                                 "predicted_reserved_bytes": BYTES0, "reserved_error": F0,
                                 "predicted_batch": BYTES0, "batch_error": F0,
                                 "capacity_bytes": BYTES0, "predicted_with": S,
                                 "batch_measured_as": S0, "batch_failed": BYTES0,
                                 "measured_with": S0},
       ["device", "mode", "precision", "optimizer", "what"]),
]}


# timm's published results table, as read from the kept copy or a user's --timm-results
TIMM_RESULTS = Table("results-imagenet.csv", {
    "model": S, "img_size": Col("int", min=1), "top1": Col("float", min=0, max=100),
    "top5": Col("float", min=0, max=100)}, ["model", "img_size"], strict=False)


def round_sig(x: float, digits: int) -> float:
    """``x`` to ``digits`` significant digits."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))
