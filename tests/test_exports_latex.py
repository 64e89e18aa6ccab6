"""Every LaTeX export of the built site compiles in a minimal article, and fits its text width."""

from latex import compile_table
from browser import SITE


def test_every_latex_export_compiles_and_fits(built, tmp_path):
    downloads = SITE / "build" / "docs" / "downloads"
    exports = sorted(downloads.glob("*.tex"))
    assert len(exports) >= 3
    problems = []
    for tex in exports:
        problems += compile_table(tex.read_text(), tmp_path, tex.stem)
    assert problems == [], "\n".join(problems[:20])
