"""The one table of models the site's scripts read (compare, the paper-table builder): every model
of ``counts.csv`` with its cost, accuracy, licence, paper, memory at a glance and CPU latency, as
``assets/data/models.json`` beside the pages. Pure functions of the data, and the writer.

The JSON is ``{"stamp", "columns", "labels", "rows"}``: ``rows`` are lists in ``columns`` order
(numbers as stored in data/, not rounded: the page rounds), ``labels`` a header for each column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from zoo.catalogue.entries import kind_of
from zoo.report.pages import model_slug
from zoo.store.schema import KEY

# (column, header) in the JSON's order
COLUMNS = [
    ("slug", "id"), ("model", "model"), ("library", "library"), ("arch", "architecture"),
    ("weights", "weights"), ("img_size", "image size (px)"), ("family", "family"),
    ("kind", "kind"), ("params_m", "params (M)"), ("gmacs", "GMACs"),
    ("gmacs_thop", "GMACs (thop)"), ("gmacs_fvcore", "GMACs (fvcore)"),
    ("gmacs_torch", "GMACs (torch, CPU)"), ("gflops_train", "training GFLOPs"),
    ("top1", "top-1 (%)"), ("top5", "top-5 (%)"), ("acc_source", "accuracy source"),
    ("license", "licence"), ("license_source", "licence source"), ("paper", "paper"),
    ("load", "load it"), ("page", "page"),
    ("train_amp_bf16_adamw_rtx_4090", "largest training batch, RTX 4090 (AMP bf16, AdamW)"),
    ("train_amp_bf16_adamw_h100", "largest training batch, H100 (AMP bf16, AdamW)"),
    ("infer_fp32_rtx_4090", "largest inference batch, RTX 4090 (fp32)"),
    ("infer_fp32_h100", "largest inference batch, H100 (fp32)"),
    ("cpu_ms_b1", "CPU latency, batch 1 (ms)"),
]
# memory-fit.csv's configurations behind the memory columns: (mode, precision, optimizer, card)
MEMORY = {"train_amp_bf16_adamw_rtx_4090": ("training", "amp-bf16", "adamw", "rtx_4090"),
          "train_amp_bf16_adamw_h100": ("training", "amp-bf16", "adamw", "h100"),
          "infer_fp32_rtx_4090": ("inference", "fp32", "", "rtx_4090"),
          "infer_fp32_h100": ("inference", "fp32", "", "h100")}


def load_snippet(row) -> str:
    """The Python that loads the model with its pretrained weights, as its library documents it."""
    if row["library"] == "timm":
        if not row["weights"] or row["weights"] == "untrained":
            return f'timm.create_model("{row["arch"]}")'
        return f'timm.create_model("{row["arch"]}.{row["weights"]}", pretrained=True)'
    if row["library"] == "torchvision":
        return f'torchvision.models.get_model("{row["arch"]}", weights="{row["weights"]}")'
    return ""


def models_table(counts: pd.DataFrame, fits: pd.DataFrame, latency: pd.DataFrame,
                 pages_of: set[tuple]) -> pd.DataFrame:
    """One row per model of ``counts``, columns as ``COLUMNS``. ``pages_of``: the keys of the
    models that have a page."""
    df = counts.copy()
    df["slug"] = [model_slug(r) for _, r in df.iterrows()]
    df["model"] = df["arch"] + "." + df["weights"].fillna("")
    df["kind"] = df["family"].map(kind_of)
    df["params_m"] = df["params"] / 1e6
    df["load"] = [load_snippet(r) for _, r in df.iterrows()]
    keys = list(df[KEY].itertuples(index=False, name=None))
    df["page"] = [f"models/{s}/" if k in pages_of else None for s, k in zip(df["slug"], keys)]
    for col in ("license", "license_source", "paper"):
        if col not in df.columns:
            df[col] = None
    for col, (mode, precision, optimizer, card) in MEMORY.items():
        if fits is None or fits.empty:
            df[col] = None
            continue
        pick = fits[(fits["mode"] == mode) & (fits["precision"] == precision)
                    & (fits["optimizer"].fillna("") == optimizer)]
        if f"max_batch_{card}" not in pick.columns:  # data of an older zoo
            df[col] = None
            continue
        batch = {tuple(k): v for k, v in zip(pick[KEY].itertuples(index=False, name=None),
                                             pick[f"max_batch_{card}"])}
        df[col] = pd.Series([_cell(batch.get(k)) for k in keys], index=df.index, dtype=object)
    if latency is not None and not latency.empty:
        b1 = latency[(latency["device"] == "cpu") & (latency["infer_batch_size"] == 1)
                     & latency["infer_step_time"].notna()]
        b1 = b1[b1["threads"] == b1["threads"].max()]
        ms = {tuple(k): v for k, v in zip(b1[KEY].itertuples(index=False, name=None),
                                          b1["infer_step_time"])}
        df["cpu_ms_b1"] = [ms.get(k) for k in keys]
    else:
        df["cpu_ms_b1"] = None
    return df[[c for c, _ in COLUMNS]].reset_index(drop=True)


def _cell(x):
    """A JSON value: numpy scalars as Python numbers, missing values (None, NaN, NA) as null."""
    if x is pd.NA:  # a nullable integer column's missing value
        return None
    if hasattr(x, "item"):
        x = x.item()
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def write_models_json(table: pd.DataFrame, path: Path, stamp: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"stamp": stamp, "columns": [c for c, _ in COLUMNS],
               "labels": dict(COLUMNS),
               "rows": [[_cell(x) for x in row] for row in table.itertuples(index=False)]}
    path.write_text(json.dumps(payload, separators=(",", ":"), ensure_ascii=False))
