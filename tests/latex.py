"""Compiling a LaTeX table as a paper would: in a minimal article with the packages the table
names on its ``% requires:`` line (helpers for test_exports_latex.py and test_site_builder.py)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

OVERFULL = re.compile(r"Overfull \\hbox \(([\d.]+)pt too wide\)")


def pdflatex_path() -> str:
    found = shutil.which("pdflatex")
    if not found:
        pytest.fail("no pdflatex on this machine: 'make test' installs it (make latex: apt-get "
                    "install texlive-latex-recommended)", pytrace=False)
    return found


def compile_table(tex: str, folder: Path, name: str = "table") -> list[str]:
    """Compiles ``tex`` in ``folder``; returns the problems: errors, and overfull boxes wider than
    1pt (a table wider than the text)."""
    m = re.search(r"^% requires: (\\usepackage\{[^}]*\})$", tex, re.M)
    assert m, f"{name}: no '% requires: \\usepackage{{...}}' line"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.tex").write_text(tex)
    doc = folder / f"doc-{name}.tex"
    doc.write_text("\\documentclass{article}\n" + m.group(1) + "\n\\begin{document}\n"
                   f"\\input{{{name}.tex}}\n\\end{{document}}\n")
    run = subprocess.run([pdflatex_path(), "-interaction=nonstopmode", "-halt-on-error", doc.name],
                         cwd=folder, capture_output=True, text=True, errors="replace",
                         timeout=300)
    log = (folder / f"doc-{name}.log").read_text(errors="replace")
    problems = []
    if run.returncode != 0:
        errors = [line for line in log.splitlines() if line.startswith("!")]
        problems.append(f"{name}: pdflatex failed: {errors[:3] or run.stdout[-500:]}")
    problems += [f"{name}: Overfull \\hbox ({w}pt too wide)" for w in OVERFULL.findall(log)
                 if float(w) > 1.0]
    return problems
