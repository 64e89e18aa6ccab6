"""Model cards, licences and the Compare page: in the built site (headless Chromium; fixtures in
conftest.py) and, for the licence and paper data a refresh fills in, on made-up rows."""

from pathlib import Path

import pandas as pd
import pytest
from browser import assert_offline, open_page

from zoo.report import charts, pages
from zoo.report.site_data import load_snippet

ROOT = Path(__file__).resolve().parents[1]
R50 = "torchvision-resnet50-IMAGENET1K_V2-224"


def _slug(row) -> str:
    return pages.model_slug(row)


def _row(frame, slug):
    rows = [r for _, r in frame.iterrows() if _slug(r) == slug]
    assert rows, slug
    return rows[0]


def _text(x) -> str:
    return "" if pd.isna(x) else str(x)


def _picks(built, everything):
    """Three models with a published accuracy: two of the default zoo (they have pages) and one
    outside it (none), all of different GMACs."""
    zoo = built.dropna(subset=["top1", "gmacs"]).sort_values("gmacs", kind="stable")
    inside = {_slug(r) for _, r in built.iterrows()}
    outside = everything.dropna(subset=["top1", "gmacs"])
    outside = outside[[_slug(r) not in inside for _, r in outside.iterrows()]]
    chosen = [zoo.iloc[len(zoo) // 4], zoo.iloc[3 * len(zoo) // 4], outside.iloc[len(outside) // 2]]
    return [_slug(r) for r in chosen], chosen


def _shown(page, slugs):
    page.wait_for_function("s => document.getElementById('zoo-compare').dataset.shown === s",
                           arg=",".join(slugs), timeout=30_000)


def _check_table(page, server, rows, slugs, inside):
    heads = page.locator("#compare-grid thead th[data-slug]")
    assert heads.count() == len(slugs)
    assert [heads.nth(i).get_attribute("data-slug") for i in range(len(slugs))] == slugs

    def cells(column):
        return page.locator(f'#compare-grid tr[data-column="{column}"] td').all_inner_texts()

    assert cells("gmacs") == [f"{r.gmacs:.3f}" for r in rows]
    assert cells("top1") == [f"{r.top1:.2f}" for r in rows]
    assert cells("params_m") == [f"{r.params / 1e6:.2f}" for r in rows]
    assert cells("library") == [r.library for r in rows]
    assert cells("load") == [load_snippet(r) for r in rows]
    for i, slug in enumerate(slugs):
        link = heads.nth(i).locator("a")
        if slug in inside:
            assert link.get_attribute("href") == f"{server}/models/{slug}/"
        else:
            assert link.count() == 0
    marks = page.locator("#chart-compare g.picked_marks path")
    assert marks.count() == len(slugs)
    labels = page.locator("#chart-compare g.picked_labels_marks text").all_text_contents()
    assert sorted(labels) == sorted(f"{r.arch}.{r.weights}" for r in rows)


def test_compare_page_by_clicking(browser, server, built, everything):
    slugs, rows = _picks(built, everything)
    inside = {_slug(r) for _, r in built.iterrows()}
    page, errors, requests = open_page(browser, server + "/compare/", ["chart-compare"])
    _shown(page, [])
    assert page.locator("#chart-compare g.picked_marks path").count() == 0
    for i, (slug, row) in enumerate(zip(slugs, rows)):
        page.fill("#compare-search", f"{row.arch}.{row.weights}")
        page.click(f'#compare-results button[data-slug="{slug}"]')
        _shown(page, slugs[:i + 1])
    _check_table(page, server, rows, slugs, inside)
    assert page.url == f"{server}/compare/?m={','.join(slugs)}"

    # the link, opened afresh, shows the same comparison
    again, errors2, requests2 = open_page(browser, page.url, ["chart-compare"])
    _shown(again, slugs)
    _check_table(again, server, rows, slugs, inside)

    # removing one updates the address, the table and the chart
    page.click(f'#compare-grid th[data-slug="{slugs[1]}"] button')
    left = [slugs[0], slugs[2]]
    _shown(page, left)
    _check_table(page, server, [rows[0], rows[2]], left, inside)
    assert page.url == f"{server}/compare/?m={','.join(left)}"
    assert errors == [] and errors2 == []
    assert_offline(requests + requests2, server)
    page.close()
    again.close()


def test_compare_takes_at_most_six_and_skips_unknown_slugs(browser, server, built):
    slugs = [_slug(r) for _, r in built.head(7).iterrows()]
    page, errors, requests = open_page(
        browser, f"{server}/compare/?m=no-such-model,{','.join(slugs)}", ["chart-compare"])
    _shown(page, slugs[:6])
    assert page.locator("#compare-grid thead th[data-slug]").count() == 6
    assert "no-such-model" in page.locator("#compare-status").inner_text()
    assert page.url == f"{server}/compare/?m={','.join(slugs[:6])}"
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_explorer_filters_by_licence(browser, server, everything):
    page, errors, requests = open_page(browser, server + "/explorer/", ["chart-explorer"])
    marks = "#chart-explorer g.mark-symbol.role-mark path"
    drawn = everything.dropna(subset=["top1", "gmacs"])
    licences = (drawn["license"] if "license" in drawn.columns
                else pd.Series("", index=drawn.index)).map(_text).str.strip()
    menu = page.locator("#chart-explorer .vega-bind", has_text="licence").locator("select")
    options = menu.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["all", *sorted(licences.unique())]
    for value in licences.value_counts().index[:3]:
        page.evaluate("""async (value) => {
            const view = (await window.zooCharts["chart-explorer"]).view;
            const menu = [...document.querySelectorAll("#chart-explorer .vega-bind")]
                .find(b => b.textContent.includes("licence")).querySelector("select");
            menu.value = value;
            menu.dispatchEvent(new Event("change"));
            await view.runAsync();
        }""", value)
        assert page.locator(marks).count() == (licences == value).sum() > 0, value
    # the explorer's table and the Models table carry the licence too
    assert page.locator("table th", has_text="licence").count() == 1
    models, errors2, _ = open_page(browser, server + "/models/", [])
    assert models.locator("table th", has_text="licence").count() == 1
    assert errors == [] and errors2 == []
    assert_offline(requests, server)
    page.close()
    models.close()


def test_model_page_card(browser, server, built):
    row = _row(built, R50)
    page, errors, requests = open_page(browser, f"{server}/models/{R50}/", ["chart-layers"])
    assert page.locator(".zoo-load code").inner_text().strip() == load_snippet(row)
    # the models of the zoo with fewer MACs and a higher top-1, and only those
    better = built[(built.gmacs < row.gmacs) & (built.top1 > row.top1)]
    assert len(better) > 0
    hrefs = page.locator("#zoo-pareto a.zoo-pareto-model").evaluate_all(
        "as => as.map(a => a.href)")
    assert sorted(hrefs) == sorted(f"{server}/models/{_slug(r)}/" for _, r in better.iterrows())
    text = page.locator("article").inner_text()
    licence = _text(row.get("license")).strip()
    assert (licence or "not stated by the library") in text
    paper = _text(row.get("paper")).strip()
    if paper:
        assert page.locator(f'a[href="https://arxiv.org/abs/{paper.split(":")[1]}"]').count() >= 1
    # memory at a glance: memory-fit.csv's largest batches
    fits = pd.read_csv(ROOT / "data" / "memory-fit.csv")
    fit = fits[(fits.library == row.library) & (fits.arch == row.arch)
               & (fits.weights == row.weights) & (fits.img_size == row.img_size)
               & (fits["mode"] == "training") & (fits.precision == "amp-bf16")
               & (fits.optimizer == "adamw")]
    if len(fit):
        cells = page.locator("#zoo-memory-glance tbody tr").first.locator("td").all_inner_texts()
        assert cells[1] == str(int(fit.iloc[0].max_batch_rtx_4090))  # RTX 3060, RTX 4090, H100
    assert errors == []
    assert_offline(requests, server)
    # "compare with...": the Compare page with this model picked
    page.click("a.zoo-compare-link")
    page.wait_for_selector("#chart-compare[data-ready]", timeout=30_000)
    _shown(page, [R50])
    assert page.url == f"{server}/compare/?m={R50}"
    assert errors == []
    page.close()


def test_a_model_on_the_frontier_says_so(browser, server, built):
    acc = built.dropna(subset=["top1", "gmacs"])
    top = acc.loc[acc.top1.idxmax()]  # nothing is more accurate
    page, errors, _ = open_page(browser, f"{server}/models/{_slug(top)}/", [])
    assert "On the Pareto frontier" in page.locator("#zoo-pareto").inner_text()
    assert page.locator("#zoo-pareto a.zoo-pareto-model").count() == 0
    assert errors == []
    page.close()


# ---- licence and paper once the data holds them (today's committed data has none) -------------

def _filled(built):
    df = built.head(6).copy()
    df["license"] = ["apache-2.0", "apache-2.0", "bsd-3-clause", "", None, "cc-by-nc-4.0"]
    df["license_source"] = "timm 1.0 pretrained config"
    df["paper"] = ["arXiv:2110.00476", "", None, "arXiv:1512.03385", "", ""]
    df["paper_source"] = "timm 1.0 model docstring"
    return df


def test_card_shows_licence_and_paper_when_the_data_has_them(built):
    df = _filled(built)
    card = pages.model_card(df.iloc[0], built)
    assert "[arXiv:2110.00476](https://arxiv.org/abs/2110.00476)" in card
    assert "`apache-2.0` (from timm 1.0 pretrained config)" in card
    assert load_snippet(df.iloc[0]) in card
    empty = pages.model_card(df.iloc[4], built)
    assert "**Licence:** not stated by the library" in empty
    assert "**Paper:** not stated by the library" in empty
    assert list(pages.licence_column(df)) == ["apache-2.0", "apache-2.0", "bsd-3-clause", "", "",
                                              "cc-by-nc-4.0"]
    index = pages.model_index(df)
    header = next(line for line in index.splitlines() if line.startswith("| model"))
    assert header.rstrip(" |").endswith("licence")
    assert "cc-by-nc-4.0" in index


def test_explorer_menu_lists_each_licence(built):
    df = _filled(built)
    spec = charts.explorer(df).to_dict()
    menu = next(p for p in spec["params"] if p["name"] == "licence")["bind"]
    drawn = df.dropna(subset=["top1", "gmacs"])["license"].fillna("")
    assert menu["options"] == ["all", *sorted(drawn.unique())]
    assert menu["labels"] == ["all", *(x or "not stated" for x in menu["options"][1:])]


@pytest.mark.parametrize("column", ["license", "paper"])
def test_card_handles_data_without_the_new_columns(built, column):
    row = built.iloc[0].drop(labels=[column], errors="ignore")
    assert "not stated by the library" in pages.model_card(row, built)
