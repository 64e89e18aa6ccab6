"""The repository stands alone: its reference tables are kept with their provenance, no file
names a path outside it, and the version is written in one place."""

import hashlib
import re
import subprocess
import tomllib
from pathlib import Path

import zoo
from zoo.catalogue import reference

ROOT = Path(__file__).resolve().parents[1]


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / p for p in out.stdout.decode().split("\0") if p]


def test_every_reference_table_matches_its_provenance():
    folder = reference.path("provenance.toml").parent
    records = reference.provenance()
    kept = {p.name for p in folder.iterdir() if p.suffix == ".csv"}
    assert kept == set(records) and kept
    for name, rec in records.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == rec["sha256"], name
        assert re.fullmatch(r"[0-9a-f]{40}", rec["commit"]) and rec["licence"] == "Apache-2.0"
        assert rec["upstream"].startswith("https://github.com/") and rec["path"].endswith(name)


def test_no_file_names_a_path_outside_the_repository():
    # a sibling folder (dot-dot-slash, but not a page's relative link), the grandparent of a
    # file at the top of the package, a folder named shared beside it, or a home folder
    outside = re.compile(r"(?<!\]\()\.\./\w|parents\[[2-9]\]|[\"'/]shared/|/work/|/home/|~/")
    hits = []
    for path in tracked_files():
        if path.suffix not in {".py", ".md", ".toml", ".yml", ".cfg", ".cff", ".txt", ""} \
                and path.name not in {"Makefile", "run", "gpu-check"}:
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if outside.search(line) and path.name != "test_reference.py":
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert hits == []


def test_one_version_number():
    """``zoo.__version__`` is the version: pyproject.toml reads it from there, CITATION.cff names
    none, and no other file writes one out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "zoo.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", zoo.__version__)
    assert not re.search(r"^version:", (ROOT / "CITATION.cff").read_text(), re.M)
    literal = re.compile(rf"""["']{re.escape(zoo.__version__)}["']""")
    holders = [p.relative_to(ROOT) for p in tracked_files()
               if p.suffix in {".py", ".toml", ".cff", ".yml"} and literal.search(p.read_text())]
    assert holders == [Path("zoo/__init__.py")]
