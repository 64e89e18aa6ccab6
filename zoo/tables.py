"""One way to write the CSVs of ``data/``: full precision, sorted by key, all-or-nothing.

A file is written to a temporary name beside it and renamed into place, so an interrupted run never
leaves a half-written CSV. A run over part of the zoo replaces only the rows of the models it ran.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from zoo.catalogue import KEY

DATA = Path(__file__).resolve().parents[1] / "data"


def write_csv(df: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            df.to_csv(fh, index=False, lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_csv(path: Path, columns=None) -> pd.DataFrame:
    path = Path(path)
    if path.exists() and path.stat().st_size:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    return pd.DataFrame(columns=columns or KEY)


def merge(old: pd.DataFrame, new: pd.DataFrame, ran: set[tuple], sort=KEY) -> pd.DataFrame:
    """``old`` without the rows of the models in ``ran``, plus ``new``; sorted, columns of ``new``."""
    if not old.empty and set(KEY) <= set(old.columns):
        keep = [tuple(k) not in ran for k in old[KEY].itertuples(index=False, name=None)]
        old = old[keep]
    frames = [f for f in (old, new) if not f.empty]
    out = pd.concat(frames, ignore_index=True) if frames else new
    columns = list(new.columns) + [c for c in out.columns if c not in new.columns]
    return out[columns].sort_values(sort, kind="stable").reset_index(drop=True)
