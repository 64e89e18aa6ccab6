"""The survey's figures in the built site (home page bubble chart, /figures/), opened in headless
Chromium: labels that do not overlap, one mark per family, the full ranking as a table, and the
same labels in the SVG export (fixtures in conftest.py; helpers in browser.py)."""

import json
from itertools import combinations

import pandas as pd
from browser import assert_offline, open_page

from zoo.report import charts

# the model each drawn label stands for, from the view's scenegraph (mark name -> items)
LABELLED = """([chart, mark]) => window.zooCharts[chart].then(({view}) => {
    const out = [];
    (function walk(node) {
        if (node.marktype && node.name === mark) {
            node.items.forEach(i => out.push({model: i.datum.model, text: i.text}));
        }
        (node.items || []).forEach(walk);
    })(view.scenegraph().root);
    return out;
})"""

BOXES = """(selector) => [...document.querySelectorAll(selector)].map(t => {
    const r = t.getBoundingClientRect();
    return {text: t.textContent, x: r.x, y: r.y, w: r.width, h: r.height};
})"""


def overlapping(boxes, slack=0.5):
    """The pairs of boxes (dicts with x, y, w, h) whose interiors intersect."""
    return [(a["text"], b["text"]) for a, b in combinations(boxes, 2)
            if a["x"] + a["w"] - slack > b["x"] and b["x"] + b["w"] - slack > a["x"]
            and a["y"] + a["h"] - slack > b["y"] and b["y"] + b["h"] - slack > a["y"]]


def spec_of(page, chart):
    return json.loads(page.locator(f"#{chart}-spec").text_content())


def names(df):
    return set(df["arch"] + "." + df["weights"])


def test_bubble_labels_do_not_overlap_and_name_the_pareto_and_survey_models(browser, server,
                                                                            built):
    page, errors, requests = open_page(browser, server + "/", ["chart-bubble"])
    acc = built.dropna(subset=["top1", "gmacs"])
    expected = names(charts.pareto_frontier(acc)) | names(acc[charts.survey_rows(acc)])
    assert len(expected) >= 20
    boxes = page.evaluate(BOXES, "#chart-bubble g.bubble_labels_marks text")
    assert all(b["w"] > 0 and b["h"] > 0 for b in boxes)
    assert overlapping(boxes) == []
    drawn = page.evaluate(LABELLED, ["chart-bubble", "bubble_labels_marks"])
    assert len(drawn) == len(boxes) == len({d["model"] for d in drawn})
    dropped = spec_of(page, "chart-bubble")["usermeta"]["labels"]["dropped"]
    assert all(d["reason"] for d in dropped)
    assert {d["model"] for d in drawn} | {d["model"] for d in dropped} == expected
    assert not {d["model"] for d in drawn} & {d["model"] for d in dropped}
    assert len(dropped) <= len(expected) // 10  # dropping is the exception
    text = page.locator("article").inner_text()
    assert all(d["model"] in text for d in dropped)  # and the page says which
    # colour by kind: at most 7 colours for the points, each a kind
    kinds = page.evaluate("""() => [...new Set([...document.querySelectorAll(
        '#chart-bubble g.bubble_points_marks path')].map(p => p.getAttribute('fill')))]""")
    assert 1 < len(kinds) <= len(charts.KIND_COLOURS)
    assert set(kinds) <= {c.lower() for c in charts.KIND_COLOURS.values()} | set(
        charts.KIND_COLOURS.values())
    # the family menu picks out one family
    page.select_option("#chart-bubble select", "VGG")
    page.wait_for_timeout(300)
    faded = page.evaluate("""() => [...document.querySelectorAll(
        '#chart-bubble g.bubble_points_marks path')].filter(p => +p.getAttribute('opacity') > 0.5)
        .length""")
    assert faded == (acc["family"] == "VGG").sum() > 0
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_bubble_export_labels_do_not_overlap(browser, server, built):
    page = browser.new_page()
    page.goto(server + "/downloads/bubble.svg")
    boxes = page.evaluate(BOXES, "g.bubble_labels_marks text")
    page.close()
    assert len(boxes) >= 20
    assert overlapping(boxes) == []


def test_top1_by_family_draws_one_mark_per_family_with_readable_labels(browser, server, built):
    page, errors, requests = open_page(browser, server + "/figures/", ["chart-top1-by-family"])
    acc = built.dropna(subset=["top1"])
    families = acc["family"].nunique()
    assert page.locator("#chart-top1-by-family g.mark-symbol.role-mark path").count() == families
    labels = page.evaluate(BOXES, "#chart-top1-by-family g.family_best_labels_marks text")
    assert len(labels) == families
    best = acc.sort_values(["top1", "gmacs"], ascending=[False, True]).drop_duplicates("family")
    assert {b["text"] for b in labels} == {f"{r.arch}.{r.weights} ({r.top1:.2f}%)"
                                           for r in best.itertuples()}
    axis = page.evaluate(BOXES, "#chart-top1-by-family g.role-axis-label text")
    assert {b["text"] for b in axis} >= set(acc["family"])
    for boxes in (labels, axis):
        assert all(b["h"] >= 10 for b in boxes)  # readable: at least 10 px high
        assert overlapping(boxes) == []
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_figures_page_ranks_every_model_in_a_sortable_table(browser, server, built):
    page, errors, _ = open_page(browser, server + "/figures/", [])
    acc = built.dropna(subset=["top1"])
    rows = page.locator("table tbody tr")
    assert rows.count() == len(acc)
    first = rows.first.locator("td").nth(1).inner_text()
    assert first in names(acc[acc["top1"] == acc["top1"].max()])
    page.locator("table th", has_text="GMACs").first.click()
    cheapest = float(rows.first.locator("td").nth(7).inner_text())
    assert cheapest == float(f"{acc['gmacs'].min():.3f}")
    page.fill("input.zoo-filter", "vit_h_14")
    assert page.locator("table tbody tr:visible").count() == (acc["arch"] == "vit_h_14").sum()
    assert errors == []
    page.close()


def test_accuracy_density_draws_reference_curves_and_labels_its_frontier(browser, server, built):
    page, errors, requests = open_page(browser, server + "/figures/", ["chart-accuracy-density"])
    acc = built.dropna(subset=["top1"]).assign(params_m=lambda d: d["params"] / 1e6)
    assert page.locator("#chart-accuracy-density g.density_curves_marks path").count() >= 3
    tags = page.evaluate(BOXES, "#chart-accuracy-density g.density_curve_labels_marks text")
    assert tags and all(t["text"].endswith("%/M") for t in tags)
    labels = page.evaluate(BOXES, "#chart-accuracy-density g.density_labels_marks text")
    assert overlapping(labels + tags) == []
    drawn = page.evaluate(LABELLED, ["chart-accuracy-density", "density_labels_marks"])
    dropped = spec_of(page, "chart-accuracy-density")["usermeta"]["labels"]["dropped"]
    frontier = names(charts.pareto_frontier(acc, "params_m", "top1"))
    assert {d["model"] for d in drawn} | {d["model"] for d in dropped} == frontier
    assert len(dropped) <= len(frontier) // 10
    marks = page.locator("#chart-accuracy-density g.density_points_marks path").count()
    assert marks == len(acc)
    assert errors == []
    assert_offline(requests, server)
    page.close()


def test_params_vs_ops_is_coloured_by_kind(browser, server, built):
    page, errors, _ = open_page(browser, server + "/figures/", ["chart-params-vs-ops"])
    legend = page.evaluate(BOXES, "#chart-params-vs-ops g.role-legend-label text")
    kinds = set(pd.Series(built["family"]).map(charts.kind_of))
    assert {b["text"] for b in legend} == kinds
    assert errors == []
    page.close()
