"""Published ImageNet-1k accuracy, always with its source. Never guessed: empty where none is published.

- torchvision weights: ``weights.meta["_metrics"]["ImageNet-1K"]`` (ships inside torchvision).
- timm tags: timm's ``results-imagenet.csv`` (validation accuracy measured by timm), pinned to a
  commit. It is read from ``--timm-results`` (a path or URL); by default from the local reference
  copy when present, else from the pinned upstream URL.
"""

from __future__ import annotations

import io
import math
import os
import urllib.request
from pathlib import Path

import pandas as pd

from zoo.catalogue import Entry

TIMM_RESULTS_COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"
TIMM_RESULTS_URL = ("https://raw.githubusercontent.com/huggingface/pytorch-image-models/"
                    f"{TIMM_RESULTS_COMMIT}/results/results-imagenet.csv")
TIMM_SOURCE_LABEL = f"timm results-imagenet.csv @{TIMM_RESULTS_COMMIT[:8]}"
LOCAL_COPY = Path(__file__).resolve().parents[2] / "shared/reference/timm-results/results-imagenet.csv"


def default_timm_source() -> str:
    return os.environ.get("ZOO_TIMM_RESULTS") or (str(LOCAL_COPY) if LOCAL_COPY.exists()
                                                  else TIMM_RESULTS_URL)


def read_timm_results(source: str) -> pd.DataFrame:
    """timm's results table, keyed by (model=arch.tag, img_size). Raises OSError if unreachable."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=20) as response:
            text = response.read().decode()
        df = pd.read_csv(io.StringIO(text), thousands=",")
    else:
        df = pd.read_csv(source, thousands=",")
    missing = {"model", "img_size", "top1", "top5"} - set(df.columns)
    if missing:
        raise ValueError(f"{source}: not a timm results table (no column {', '.join(sorted(missing))})")
    return df


def torchvision_accuracy(entry: Entry) -> dict:
    import torchvision
    from torchvision.models import get_model_weights

    weights = get_model_weights(entry.arch)[entry.weights]
    metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K")
    if not metrics or math.isnan(metrics.get("acc@1", math.nan)):  # e.g. VGG16's feature weights
        return {"top1": None, "top5": None, "acc_source": ""}
    return {"top1": metrics["acc@1"], "top5": metrics["acc@5"],
            "acc_source": f"torchvision {torchvision.__version__} weights meta "
                          f"({type(weights).__name__}.{weights.name})"}


def timm_accuracy(entry: Entry, table: pd.DataFrame) -> dict:
    hit = table[(table["model"] == entry.name) & (table["img_size"] == entry.img_size)]
    if hit.empty:
        return {"top1": None, "top5": None, "acc_source": ""}
    row = hit.iloc[0]
    return {"top1": float(row["top1"]), "top5": float(row["top5"]),
            "acc_source": f"{TIMM_SOURCE_LABEL} ({entry.name} @ {entry.img_size}px)"}


class AccuracyBook:
    """Looks up accuracy for entries; if the timm table is unreachable, timm rows get ``None`` and
    the caller keeps what ``data/`` already holds."""

    def __init__(self, timm_source: str | None = None):
        self.source = timm_source or default_timm_source()
        self.error = ""
        try:
            self.timm = read_timm_results(self.source)
        except (OSError, ValueError) as exc:
            self.timm, self.error = None, f"timm results unreachable ({self.source}): {exc}"

    def lookup(self, entry: Entry) -> dict | None:
        if entry.library == "torchvision":
            return torchvision_accuracy(entry)
        if self.timm is None:
            return None
        return timm_accuracy(entry, self.timm)
