"""``pip install .`` (not editable): the package carries its site sources and reference tables,
and works on the current folder's data/, wherever it is installed."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    wheel_dir, target = base / "wheel", base / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheel_dir), str(ROOT)], check=True, capture_output=True)
    wheel = next(wheel_dir.glob("zoo-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    return target


def run(installed, cwd, *args):
    env = {"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_installed_package_counts_into_the_current_folder_and_builds_the_site(installed, tmp_path):
    probe = run(installed, tmp_path, "list", "bench")
    assert probe.returncode == 0, probe.stderr
    where = subprocess.run([sys.executable, "-c", "import zoo; print(zoo.__file__)"],
                           env={"PYTHONPATH": str(installed)}, capture_output=True, text=True,
                           cwd=tmp_path)
    assert where.stdout.startswith(str(installed))  # the installed copy, not this checkout
    proc = run(installed, tmp_path, "count", "timm:resnet18.a1_in1k")
    assert proc.returncode == 0, proc.stderr
    counts = (tmp_path / "data" / "counts.csv").read_text()
    assert "resnet18,a1_in1k,224" in counts and "aa4b5850" in counts  # timm accuracy, kept copy
    proc = run(installed, tmp_path, "site")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "public" / "index.html").exists()
    assert (tmp_path / "public" / "methods" / "index.html").exists()
