"""The site, built from the committed data/ and opened in headless Chromium (the fixtures
``everything``, ``built``, ``server`` and ``browser`` are in conftest.py; helpers in browser.py)."""

import io
import re
from pathlib import Path

import pandas as pd
import pytest
from browser import SITE, assert_offline, open_page

from zoo.report import build as site
from zoo.report import formats

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = SITE / "public"


def test_home_bubble_chart_has_one_mark_per_model(browser, server, built):
    page, errors, requests = open_page(browser, server + "/", ["chart-bubble"])
    marks = page.locator("#chart-bubble g.mark-symbol.role-mark path").count()
    assert marks == len(built.dropna(subset=["top1", "gmacs"]))
    assert page.locator("#chart-bubble g.mark-line.role-mark path").count() == 1  # the frontier
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_explorer_draws_every_model_and_filters_within_a_second(browser, server, everything):
    page, errors, requests = open_page(browser, server + "/explorer/", ["chart-explorer"])
    marks = "#chart-explorer g.mark-symbol.role-mark path"
    drawn = everything.dropna(subset=["top1", "gmacs"])
    assert page.locator(marks).count() == len(drawn)
    took = page.evaluate("""async () => {
        const view = (await window.zooCharts["chart-explorer"]).view;
        const menu = [...document.querySelectorAll("#chart-explorer select")]
            .find(s => [...s.options].some(o => o.value === "ResNet"));
        const t0 = performance.now();
        menu.value = "ResNet";
        menu.dispatchEvent(new Event("change"));
        await view.runAsync();
        return performance.now() - t0;
    }""")
    assert page.locator(marks).count() == (drawn.family == "ResNet").sum() > 0
    assert took < 1000, f"{took:.0f} ms"
    page.fill("#chart-explorer input[type=search]", "resnet50")
    page.wait_for_timeout(300)
    assert page.locator(marks).count() == drawn.arch.str.contains("resnet50").where(
        drawn.family == "ResNet", False).sum()
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_counters_page_draws(browser, server, built):
    page, errors, requests = open_page(browser, server + "/counters/", ["chart-counter-ratios"])
    assert page.locator("#chart-counter-ratios g.role-mark path").count() >= 3 * len(built)
    assert "thop / ref" in page.content()
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_memory_page_draws(browser, server, built):
    charts = ["chart-memory-vs-batch", "chart-memory-vs-params", "chart-memory-breakdown"]
    page, errors, requests = open_page(browser, server + "/memory/", charts)
    # the chosen model's points: 9 batch sizes x (training, inference)
    assert page.locator("#chart-memory-vs-batch g.mark-symbol.role-mark path").count() == 18
    page.select_option("#chart-memory-vs-batch select", "vgg16.IMAGENET1K_V1")
    page.wait_for_timeout(300)
    assert page.locator("#chart-memory-vs-batch g.mark-symbol.role-mark path").count() == 18
    assert "Will it fit?" in page.content()
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_model_page_draws_its_layers(browser, server, built):
    url = server + "/models/torchvision-resnet50-IMAGENET1K_V2-224/"
    page, errors, requests = open_page(browser, url, ["chart-layers"])
    assert page.locator("#chart-layers g.role-mark path").count() == 54  # 53 convs + fc
    assert "ResNet50_Weights.IMAGENET1K_V2" in page.content()
    # the card's training recipe is torchvision's own link for this weight
    from torchvision.models import get_model_weights

    recipe = get_model_weights("resnet50")["IMAGENET1K_V2"].meta["recipe"]
    assert page.locator(f'a[href="{recipe}"]').count() == 1
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_models_table_sorts(browser, server, built):
    page, errors, _ = open_page(browser, server + "/models/", [])
    header = page.locator("table th", has_text="GMACs").first
    header.click()
    first = page.locator("table tbody tr").first.locator("td").nth(5).inner_text()
    assert float(first) == pytest.approx(built["gmacs"].min(), abs=5e-4)
    page.fill("input.zoo-filter", "vit_h_14")
    visible = page.locator("table tbody tr:visible").count()
    assert visible == (built["arch"] == "vit_h_14").sum()
    assert errors == []
    page.close()


def _unescape(cell):
    """The text of a LaTeX cell as zoo.report.formats escapes it."""
    cell = cell.replace("\\allowbreak{}", "").replace("\\textbackslash{}", "\\")
    cell = cell.replace("\\textasciitilde{}", "~").replace("\\textasciicircum{}", "^")
    return re.sub(r"\\([_%&#${}])", r"\1", cell)


def _latex_rows(text):
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.endswith("\\\\") and not line.startswith(("\\caption", "\\multicolumn")):
            cells = [c.strip() for c in line[:-2].split(" & ")]
            rows.append([_unescape(c) for c in cells])
    return rows


def _markdown_rows(text):
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|--")
            and not set(line) <= set("|-: ")]


@pytest.mark.parametrize("name", ["zoo", "counters", "counter-categories"])
def test_exports_round_trip(built, name):
    downloads = SITE / "build" / "docs" / "downloads"
    csv = pd.read_csv(downloads / f"{name}.csv", dtype=str, keep_default_na=False)
    expected = [list(csv.columns)] + csv.values.tolist()
    md = _markdown_rows((downloads / f"{name}.md").read_text())
    assert md == expected
    # the LaTeX is the paper version: the columns that fit a page, the same cells
    paper, paper_body, left_out = formats.paper_view(expected[0], expected[1:], name)
    tex = _latex_rows((downloads / f"{name}.tex").read_text())
    body = [r for r in tex if r != paper]
    assert len(tex) - len(body) >= 1  # the header row (twice in a longtable)
    assert body == paper_body
    caption = (downloads / f"{name}.tex").read_text()
    assert all(formats.escape_latex(c) in caption for c in left_out)  # named in the caption
    assert "\\toprule" in (downloads / f"{name}.tex").read_text()


def test_zoo_export_matches_data(built):
    table = pd.read_csv(SITE / "build" / "docs" / "downloads" / "zoo.csv")
    assert len(table) == len(built)
    assert (table["gmacs"] - built["gmacs"]).abs().max() <= 5e-4
    assert (table["params_m"] - built["params"] / 1e6).abs().max() <= 5e-4


def test_pages_say_they_are_generated_and_are_stamped(built):
    docs = SITE / "build" / "docs"
    for page in ["index.md", "figures.md", "counters.md", "models.md", "data.md",
                 "models/timm-vit_base_patch16_224-augreg2_in21k_ft_in1k-224.md"]:
        text = (docs / page).read_text()
        assert text.startswith("# ") and "Generated by `zoo site`" in text  # in the source
        assert f"torch {built['torch_version'][0]}" in text or page == "index.md"
        html = (PUBLIC / page.replace("index.md", "").replace(".md", "/") / "index.html"
                ).read_text() if page != "index.md" else (PUBLIC / "index.html").read_text()
        footer = html[html.index('<footer'):]
        article = html[html.index("<article"):html.index("</article>")]
        assert "Generated from data/ by zoo site" in footer  # the visitor reads it at the foot
        assert "Generated" not in re.sub(r"<!--.*?-->", "", article, flags=re.DOTALL)  # not atop
    assert "{{" not in (docs / "methods.md").read_text()
    assert (docs / "downloads" / "bubble.svg").read_text().lstrip().startswith("<svg")
    assert (docs / "downloads" / "bubble.pdf").read_bytes().startswith(b"%PDF")


def test_no_external_assets(built):
    for html in PUBLIC.rglob("*.html"):
        text = html.read_text()
        assert "fonts.googleapis" not in text and "cdn.jsdelivr" not in text, html


@pytest.mark.parametrize("models", [["timm:resnet18.a1_in1k"],  # one model, no ResNet-50
                                    ["torchvision:vgg16.IMAGENET1K_FEATURES"]])  # no accuracy
def test_site_builds_from_any_subset(tmp_path, models):
    from zoo.catalogue.entries import select
    from zoo.stages import counts
    from zoo.stages import memory as memory_stage
    from zoo.store import tables

    data = tmp_path / "data"
    entries = select(models)
    counts.run(entries, data, workers=1, log=io.StringIO())
    memory_stage.run(entries, data, workers=1, log=io.StringIO())
    site.build(data, tmp_path, log=io.StringIO())
    methods = (tmp_path / "build" / "docs" / "methods.md").read_text()
    assert "{{" not in methods and "(not in this data)" in methods
    assert "= **112**" in methods  # the hand-computed output size stands without ResNet-50
    index = (tmp_path / "build" / "docs" / "index.md").read_text()
    with_acc = tables.read(data, "counts.csv").top1.notna().sum()
    assert f"places {with_acc} models of" in index
    assert (tmp_path / "public" / "models" / "index.html").exists()
    memory = (tmp_path / "build" / "docs" / "memory.md").read_text()
    from zoo.catalogue import cards

    for card in cards.CARDS:  # the cards table: every card with its figures' sources
        assert re.search(rf"\| {re.escape(card.name)} +\| {card.memory_mib:,} +\|", memory)
    assert memory.count("[source](https://") >= len(cards.CARDS)
    savings = tables.read(data, "memory-savings.csv")
    assert savings["inplace_case"].iloc[0] in memory  # which case holds, said in words
    assert "No GPU has measured these predictions yet" in memory


def test_every_table_download_is_a_link_to_a_file(built):
    """The stamp under a table links its CSV, Markdown and LaTeX exports, and each link resolves
    to a file of the built site (the memory page's exports were once linked but never written,
    and the links shown as text)."""
    import re

    stamps = 0
    for page in PUBLIC.rglob("index.html"):
        html = page.read_text()
        for para in re.findall(r'<p class="zoo-stamp">(.*?)</p>', html, re.S):
            if "download:" not in para:
                continue
            stamps += 1
            hrefs = re.findall(r'<a href="([^"]+)"', para)
            assert len(hrefs) == 3, f"{page}: {para[:200]}"
            for href in hrefs:  # a Markdown export is also built as a page: its folder's index
                target = (page.parent / href).resolve()
                assert target.is_file() or (target / "index.html").is_file(), f"{page}: {href}"
    assert stamps >= 8  # counters (2), memory (5), latency (3), ...


def test_memory_breakdown_stacks_the_parts_of_the_peak_and_ticks_the_reserved():
    """The breakdown's bars sum to each model's peak (the allocator's figures are not parts of
    it: they are drawn as a tick), on the committed data."""
    from zoo.report import charts
    from zoo.store import tables
    from zoo.store.schema import MEMORY_PARTS

    memory = tables.read(Path("data"), "memory.csv")
    memory = memory[memory["arch"].isin(["resnet50", "vit_b_16", "efficientnet_b0"])
                    & (memory["library"] == "torchvision")]  # one image size each
    spec = charts.memory_breakdown(memory, tables.read(Path("data"), "counts.csv")).to_dict()
    data = spec["datasets"]
    bars, ticks = (pd.DataFrame(data[layer["data"]["name"]]) for layer in spec["layer"])
    assert set(bars["category"]) == set(MEMORY_PARTS)
    summed = bars.groupby("model")["bytes"].sum()
    assert (summed == bars.groupby("model")["peak_bytes"].first()).all() and len(summed) >= 3
    assert (ticks.set_index("model")["reserved_bytes"] >= summed.loc[ticks["model"]]).all()
