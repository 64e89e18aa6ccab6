"""The committed data/ against the catalogue and the published references (no model is built)."""

import math
from pathlib import Path

import pandas as pd
import pytest
from torchvision.models import get_model_weights

from zoo.catalogue import reference
from zoo.catalogue.entries import KEY, default_zoo, whole_catalogue
from zoo.store import tables

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def counts():
    return tables.read(DATA, "counts.csv")  # an empty weights stays "" (no pretrained weights)


def keys(df):
    return set(df[KEY].itertuples(index=False, name=None))


def test_every_model_is_counted_or_recorded_as_failed(counts):
    """The whole catalogue, and the default zoo within it, every model counted or failed."""
    failed = tables.read(DATA, "failures.csv")
    assert keys(counts) | keys(failed) == {e.key for e in whole_catalogue()}
    assert {e.key for e in default_zoo()} <= keys(counts)
    assert not keys(counts) & keys(failed)


def test_torchvision_rows_match_published_meta(counts):
    tv = counts[counts.library == "torchvision"]
    for row in tv.itertuples():
        meta = get_model_weights(row.arch)[row.weights].meta
        assert abs(row.gmacs - meta["_ops"]) <= max(1e-3 * meta["_ops"], 5e-4), row.arch
        if row.arch != "inception_v3":  # deployed without its aux head, see test_torchvision_published
            assert row.params == meta["num_params"], row.arch
        acc = meta.get("_metrics", {}).get("ImageNet-1K")
        if acc and not math.isnan(acc["acc@1"]):
            assert (row.top1, row.top5) == (acc["acc@1"], acc["acc@5"])
        else:  # nothing published (VGG16's feature-extractor weights): nothing guessed
            assert math.isnan(row.top1) and math.isnan(row.top5)


def test_every_accuracy_has_its_source(counts):
    with_acc = counts.dropna(subset=["top1"])
    assert with_acc["acc_source"].fillna("").str.len().gt(0).all()
    assert counts[counts.top1.isna()]["acc_source"].fillna("").eq("").all()
    # every tag timm's results table lists has its accuracy, at the size it lists
    results = pd.read_csv(reference.path(reference.TIMM_RESULTS))
    timm = counts[counts.library == "timm"]
    ours = dict(zip(zip(timm.arch + "." + timm.weights, timm.img_size), timm.top1))
    listed = [(m, s, t) for m, s, t in zip(results.model, results.img_size, results.top1)
              if (m, s) in ours]
    assert listed and all(ours[(m, s)] == t for m, s, t in listed)


def test_training_flops_are_about_three_forwards(counts):
    ratio = counts["gflops_train"] / (2 * counts["gmacs"])
    assert ratio.between(2.0, 3.2).all(), counts.loc[~ratio.between(2.0, 3.2), "arch"].tolist()


def test_memory_covers_the_default_zoo(counts):
    fits = pd.read_csv(DATA / "memory-fit.csv")
    failed = pd.read_csv(DATA / "memory-failures.csv")
    assert keys(fits) | keys(failed) >= {e.key for e in default_zoo()}
    adamw = fits[(fits["mode"] == "training") & (fits.optimizer == "adamw")]
    sgd = fits[(fits["mode"] == "training") & (fits.optimizer == "sgd")]
    merged = adamw.merge(sgd, on=KEY + ["precision"], suffixes=("_adamw", "_sgd"))
    assert (merged.model_bytes_adamw > merged.model_bytes_sgd).all()
