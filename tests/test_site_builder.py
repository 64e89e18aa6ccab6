"""The paper-table builder (builder.md, site/assets/js/builder.js), driven by clicking in headless
Chromium: its LaTeX, Markdown and CSV are those of zoo/report/formats.py for the same rows,
columns and rounding; its LaTeX compiles; it copies, downloads and keeps its selection in the
address; offline, without console errors."""

import json

import pytest
from browser import SITE, assert_offline, open_page
from latex import compile_table

from zoo.report import build as site
from zoo.report import formats

MODELS = ["torchvision-resnet50-IMAGENET1K_V2-224", "timm-vit_base_patch16_224-augreg2_in21k_ft_in1k-224",
          "torchvision-vgg16-IMAGENET1K_V1-224"]
COLUMNS = ["model", "params_m", "gmacs", "top1", "img_size", "license"]


@pytest.fixture(scope="module")
def models():
    return json.loads((SITE / "public" / "assets" / "data" / "models.json").read_text())


def expected(models, slugs, columns, digits, fmt, caption):
    at = {c: i for i, c in enumerate(models["columns"])}
    by_slug = {r[at["slug"]]: r for r in models["rows"]}
    chosen = [c for c in models["columns"] if c in columns]
    each = [formats.column_digits([r[at[c]] for r in models["rows"]], digits) for c in chosen]
    rows = [[by_slug[s][at[c]] for c in chosen] for s in slugs]
    return formats.render(fmt, [models["labels"][c] for c in chosen], rows, each,
                          f"{caption} {models['stamp']}", "tab:zoo-models", models["stamp"])


def open_builder(browser, server, query=""):
    page, errors, requests = open_page(browser, server + "/builder/" + query, [])
    page.wait_for_selector("#zoo-builder[data-ready]", timeout=30_000)
    return page, errors, requests


def pick(page, slugs, columns, digits):
    page.click("#builder-clear")
    for slug in slugs:  # search, then tick: the table's rows in the order picked
        page.fill("#builder-search", slug.split("-")[1])
        page.locator(f'#builder-models input[value="{slug}"]').check()
    page.fill("#builder-search", "")
    for box in page.locator("#builder-columns input").all():
        want = box.get_attribute("value") in columns
        if box.is_checked() != want:
            box.click()
    page.select_option("#builder-digits", str(digits))


def test_builder_tables_equal_the_python_formatter(browser, server, models, tmp_path):
    page, errors, requests = open_builder(browser, server)
    assert page.locator("#builder-models input").count() == len(models["rows"])
    default = page.input_value("#builder-output")
    assert "\\toprule" in default and "alexnet" in default  # the survey's networks to start with
    slugs = [s for s in MODELS if s in {r[0] for r in models["rows"]}]
    assert len(slugs) >= 2
    pick(page, slugs, COLUMNS, 3)
    caption = page.input_value("#builder-caption")
    for fmt in ("latex", "markdown", "csv"):
        page.select_option("#builder-format", fmt)
        assert page.input_value("#builder-output") == expected(models, slugs, COLUMNS, 3, fmt,
                                                               caption), fmt
    # the paper's columns (the defaults) compile and fit the page
    page.select_option("#builder-format", "latex")
    pick(page, slugs, ["model", "params_m", "gmacs", "top1"], 2)
    tex = page.input_value("#builder-output")
    assert tex == expected(models, slugs, ["model", "params_m", "gmacs", "top1"], 2, "latex",
                           caption)
    assert compile_table(tex, tmp_path, "builder") == []
    bib = page.input_value("#builder-bib")
    at = models["columns"].index("paper")
    papers = [r[at] for s in slugs for r in models["rows"] if r[0] == s]
    assert bib == formats.bibtex(site.BIBTEX, papers)
    assert bib.startswith("@misc{zoo,")
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_builder_copies_downloads_and_keeps_its_selection_in_the_address(browser, server, models,
                                                                         tmp_path):
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server + "/builder/")
    page.wait_for_selector("#zoo-builder[data-ready]", timeout=30_000)
    slugs = MODELS[:2]
    pick(page, slugs, ["model", "gmacs", "top1"], 1)
    page.select_option("#builder-format", "markdown")
    table = page.input_value("#builder-output")
    assert table == expected(models, slugs, ["model", "gmacs", "top1"], 1, "markdown",
                             page.input_value("#builder-caption"))
    page.click("#builder-copy")
    page.wait_for_selector("#builder-status:has-text('copied')")
    assert page.evaluate("navigator.clipboard.readText()") == table
    with page.expect_download() as info:
        page.click("#builder-download")
    download = info.value
    assert download.suggested_filename == "zoo-table.md"
    assert open(download.path()).read() == table
    with page.expect_download() as info:
        page.click("#builder-download-bib")
    assert info.value.suggested_filename == "zoo.bib"
    assert open(info.value.path()).read() == page.input_value("#builder-bib")
    # the address holds the selection: opened again, the same table
    url = page.url
    assert "models=" in url and "digits=1" in url
    again = context.new_page()
    again.goto(url)
    again.wait_for_selector("#zoo-builder[data-ready]", timeout=30_000)
    assert again.input_value("#builder-output") == table
    assert again.input_value("#builder-format") == "markdown"
    assert errors == []
    assert_offline(requests, server)
    context.close()


def test_builder_script_does_nothing_elsewhere(browser, server):
    page, errors, _ = open_page(browser, server + "/models/", [])
    page.wait_for_timeout(500)
    assert errors == [] and page.locator("#builder-output").count() == 0
    page.close()
