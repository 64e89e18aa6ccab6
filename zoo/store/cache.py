"""Results of (stage, architecture, settings), kept between runs so that a rerun measures only what
changed, and a run killed at any moment resumes where it stopped.

The key is a hash of the stage, the architecture's key (library, arch, image size), the stage's
settings, and the versions of everything that can change a result: the source of zoo's measuring
modules (``Stage.code`` and the model builder), torch, torchvision, timm, thop and fvcore. Change
any of them and exactly what depends on it is measured again.

One JSON file per result, written to a temporary name and renamed: a reader never sees half a
file. The folder (``$ZOO_CACHE``, else ``.zoo-cache`` of the current folder, beside ``data/``)
can be deleted at any time; ``ZOO_CACHE=off`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import util
from pathlib import Path

ALWAYS_IN_KEY = ("zoo.catalogue.build", "zoo.stages.base")  # every stage's results depend on how a model is built


class Cache:
    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder else None

    @classmethod
    def default(cls) -> "Cache":
        where = os.environ.get("ZOO_CACHE", "")
        if where.lower() in ("off", "0", "no", "false"):
            return cls(None)
        return cls(Path(where) if where else Path.cwd() / ".zoo-cache")

    def key(self, stage, entry, settings: dict) -> str:
        what = {"stage": stage.name, "model": [entry.library, entry.arch, entry.img_size,
                                                list(getattr(entry, "shape", ()) or ())],
                "settings": settings, "code": code_hash(tuple(stage.code) + ALWAYS_IN_KEY),
                "versions": library_versions()}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.folder is None:
            return None
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, ValueError):  # missing, or unreadable: measured again
            return None

    def put(self, key: str, value: dict) -> None:
        if self.folder is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w") as fh:
                json.dump(value, fh, default=_plain)
            os.replace(tmp, path)
        except OSError:  # a cache that cannot be written costs time, never a result
            pass


def _plain(x):
    """numpy scalars as Python numbers."""
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


@lru_cache(maxsize=None)
def code_hash(modules: tuple[str, ...]) -> str:
    """A hash of the source of ``modules``; ``package:file`` names a data file of a package
    (``zoo.catalogue:gpus.csv``)."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        package, _, data = name.partition(":")
        path = Path(util.find_spec(package).origin)
        h.update(name.encode() + b"\0" + (path.parent / data if data else path).read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on (read without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for column, dist in [("torch_version", "torch"), ("torchvision_version", "torchvision"),
                         ("timm_version", "timm"), ("thop_version", "ultralytics-thop"),
                         ("fvcore_version", "fvcore")]:
        try:
            out[column] = version(dist)
        except PackageNotFoundError:
            out[column] = ""
    return out


def remembered(name: str, make, depends_on: tuple[str, ...] = (), also: str = "") -> list:
    """``make()`` (a JSON-able list), kept in the default cache under the installed libraries'
    versions, the source of the modules in ``depends_on`` and ``also``: listing the catalogue imports
    torchvision and timm (seconds), which a warm rerun does not need to pay for."""
    cache = Cache.default()
    key = hashlib.sha256(json.dumps({"what": name, "versions": library_versions(),
                                     "code": code_hash(depends_on), "also": also},
                                    sort_keys=True).encode()).hexdigest()
    hit = cache.get(key)
    if hit is not None:
        return hit["value"]
    value = make()
    cache.put(key, {"value": value})
    return value
