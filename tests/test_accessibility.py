"""An automated accessibility audit of the built site: axe-core (vendored, tests/vendor/) run in
headless Chromium on the pages people land on. No serious or critical violation is allowed."""

import hashlib
from pathlib import Path

import pytest
from browser import open_page

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
MODEL = "models/torchvision-resnet50-IMAGENET1K_V2-224/"
# page -> (path, charts to wait for, an element the page's script fills, to wait for)
PAGES = {"home": ("", ["chart-bubble"], None), "model": (MODEL, ["chart-layers"], None),
         "compare": ("compare/?m=torchvision-resnet50-IMAGENET1K_V2-224,"
                     "torchvision-vit_b_16-IMAGENET1K_V1-224", ["chart-compare"],
                     "#compare-grid thead th[data-slug]"),
         "builder": ("builder/", [], "#zoo-builder[data-ready]"),
         "explorer": ("explorer/", ["chart-explorer"], None)}


def test_the_vendored_audit_is_the_published_file():
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == AXE_SHA256


def audit(page) -> list[dict]:
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
    }""")
    return result


@pytest.mark.parametrize("name", PAGES)
def test_no_serious_or_critical_accessibility_violation(browser, server, built, name):
    path, charts, filled = PAGES[name]
    page, errors, _ = open_page(browser, f"{server}/{path}", charts)
    if filled:  # audit what a visitor sees once the page's script has run
        page.wait_for_selector(filled, timeout=30_000)
    bad = [v for v in audit(page) if v["impact"] in ("serious", "critical")]
    assert bad == [], "\n".join(f"{v['impact']}: {v['id']}: {v['help']} at {v['nodes']}"
                                for v in bad)
    page.close()


def test_the_audit_finds_a_planted_violation(browser, server, built):
    """The audit can fail: an image without alternative text and a button without a name."""
    page, _, _ = open_page(browser, f"{server}/", ["chart-bubble"])
    page.evaluate("""() => {
        const img = document.createElement("img"); img.src = "data:image/gif;base64,R0lGODlhAQABAAAAACw=";
        const button = document.createElement("button");
        document.querySelector("article").append(img, button);
    }""")
    found = {v["id"] for v in audit(page) if v["impact"] in ("serious", "critical")}
    assert {"image-alt", "button-name"} <= found
    page.close()
