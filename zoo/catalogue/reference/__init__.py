"""Published tables the project reads, kept as unmodified copies with their provenance.

``provenance.toml`` names each file's upstream repository, commit, path, licence and SHA-256;
``tests/test_reference.py`` checks every file against it. ``path(name)`` is where a table lies,
installed or not.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

TIMM_RESULTS = "results-imagenet.csv"
TIMM_BENCH_5090 = "benchmark-infer-amp-nchw-pt291-cu130-5090.csv"
TIMM_BENCH_CPU = "benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv"


def path(name: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(name)))


def provenance() -> dict[str, dict]:
    """File name -> its provenance record."""
    return tomllib.loads(path("provenance.toml").read_text())["files"]
