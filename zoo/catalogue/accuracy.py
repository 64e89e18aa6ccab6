"""Published ImageNet-1k accuracy, always with its source. Never guessed: empty where none is published.

- torchvision weights: ``weights.meta["_metrics"]["ImageNet-1K"]`` (ships inside torchvision).
- timm tags: timm's ``results-imagenet.csv`` (validation accuracy measured by timm), pinned to a
  commit and kept in ``zoo/catalogue/reference/`` with its provenance. ``--timm-results PATH_OR_URL``
  reads another copy instead; a source the user names must be a valid table, or the run stops before
  measuring anything.
"""

from __future__ import annotations

import math
import urllib.request

import pandas as pd

from zoo.catalogue import reference
from zoo.catalogue.entries import Entry
from zoo.errors import UsageError

TIMM_RESULTS_COMMIT = reference.provenance()[reference.TIMM_RESULTS]["commit"]
TIMM_SOURCE_LABEL = f"timm results-imagenet.csv @{TIMM_RESULTS_COMMIT[:8]}"


def read_timm_results(source: str | None = None) -> pd.DataFrame:
    """timm's results table, keyed by (model=arch.tag, img_size): the kept copy, or ``source``
    (a path or URL). Raises UsageError, in one line, for a source that is missing, unreachable or
    not a valid table (columns, types, accuracy in 0-100, unique keys)."""
    from zoo.store.schema import TIMM_RESULTS
    from zoo.store.tables import parse

    where = source or str(reference.path(reference.TIMM_RESULTS))
    try:
        if where.startswith(("http://", "https://")):
            with urllib.request.urlopen(where, timeout=20) as response:
                raw = response.read()
        else:
            with open(where, "rb") as fh:
                raw = fh.read()
    except (OSError, ValueError) as exc:
        raise UsageError(f"--timm-results {where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    return parse(raw, TIMM_RESULTS, where)

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


def torchvision_published_gmacs(arch: str, weights: str) -> float:
    """The GMACs torchvision publishes for a weight (``meta["_ops"]``), which its own counter gave."""
    from torchvision.models import get_model_weights

    return get_model_weights(arch)[weights].meta["_ops"]


def timm_accuracy(entry: Entry, rows: dict) -> dict:
    """``rows``: (arch.tag, img_size) -> (top1, top5) of timm's results table."""
    hit = rows.get((entry.name, entry.img_size))
    if hit is None:
        return {"top1": None, "top5": None, "acc_source": ""}
    return {"top1": float(hit[0]), "top5": float(hit[1]),
            "acc_source": f"{TIMM_SOURCE_LABEL} ({entry.name} @ {entry.img_size}px)"}


class AccuracyBook:
    """Looks up accuracy for entries; the timm table is read (and checked) once, when made."""

    def __init__(self, timm_source: str | None = None):
        table = read_timm_results(timm_source)
        self.timm = {(m, int(s)): (t1, t5) for m, s, t1, t5 in zip(
            table["model"], table["img_size"], table["top1"], table["top5"])}

    def lookup(self, entry: Entry) -> dict:
        if entry.library == "torchvision":
            return torchvision_accuracy(entry)
        if entry.library == "timm":
            return timm_accuracy(entry, self.timm)
        return {"top1": None, "top5": None, "acc_source": ""}
