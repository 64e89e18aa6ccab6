"""Chart specs, as pure functions of the data: each takes DataFrames and returns an Altair chart.

Every chart carries a stamp (zoo and library versions) in its subtitle, so a figure cut out of the
site still says what produced it.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from zoo.catalogue.entries import KINDS, SETS, kind_of
from zoo.report.labels import (
    FONT_SIZE,
    Scale,
    linear_domain,
    log_domain,
    place,
    short_names,
    text_width,
)
from zoo.report.timing import setup_name
from zoo.store.schema import MEMORY_PARTS

TOOLTIP = [
    alt.Tooltip("model:N", title="model"), alt.Tooltip("library:N"),
    alt.Tooltip("weights:N"), alt.Tooltip("img_size:Q", title="image size"),
    alt.Tooltip("params_m:Q", title="params (M)", format=".2f"),
    alt.Tooltip("gmacs:Q", title="GMACs", format=".3f"),
    alt.Tooltip("top1:Q", title="top-1 (%)", format=".2f"),
    alt.Tooltip("acc_source:N", title="accuracy source"),
]
WIDTH, HEIGHT = 720, 460


def stamp(counts: pd.DataFrame) -> str:
    row = counts.iloc[0]
    return (f"zoo {row['zoo_version']} · torch {row['torch_version']} · torchvision "
            f"{row['torchvision_version']} · timm {row['timm_version']}")


def with_display_columns(counts: pd.DataFrame) -> pd.DataFrame:
    df = counts.copy()
    df["model"] = df["arch"] + "." + df["weights"]
    df["params_m"] = df["params"] / 1e6
    return df


def pareto_frontier(df: pd.DataFrame, x: str = "gmacs", y: str = "top1") -> pd.DataFrame:
    """Rows no other row beats: nothing cheaper (or as cheap) is at least as accurate."""
    best, keep = float("-inf"), []
    for idx, row in df.sort_values([x, y], ascending=[True, False]).iterrows():
        if row[y] > best:
            keep.append(idx)
            best = row[y]
    return df.loc[keep]


def _title(text: str, counts: pd.DataFrame) -> alt.TitleParams:
    return alt.TitleParams(text, subtitle=stamp(counts), anchor="start")


def _model_menu(models: pd.Series):
    """A menu of ``models`` (the chart shows the one picked; ResNet-50 V2 first where present)."""
    options = sorted(models.unique())
    default = "resnet50.IMAGENET1K_V2" if "resnet50.IMAGENET1K_V2" in options else options[0]
    return alt.selection_point(fields=["model"], value=default, bind=alt.binding_select(
        options=options, name="model "))


def _family_legend_selection():
    return alt.selection_point(fields=["family"], bind="legend")


# ---- the survey's figures: colour by kind, labels placed without overlap ----------------------

# Okabe and Ito's colour-blind-safe palette, one colour per kind; grey for "other"
KIND_COLOURS = {"classic CNN": "#E69F00", "ResNet-like": "#0072B2", "mobile/efficient": "#009E73",
                "vision transformer": "#D55E00", "hybrid": "#CC79A7", "MLP": "#56B4E9",
                "other": "#999999"}
KEEP = ["model", "library", "arch", "weights", "img_size", "family", "kind", "params_m", "gmacs",
        "top1", "top5", "acc_source"]


def with_kinds(df: pd.DataFrame, extra: tuple = ()) -> pd.DataFrame:
    """``df`` with the kind of each row's family, cut to the columns a chart shows (``KEEP`` and
    ``extra``): no text column left holding NaN, which a spec cannot carry."""
    df = df.copy()
    df["kind"] = df["family"].map(kind_of)
    df = df[[c for c in dict.fromkeys([*KEEP, *extra]) if c in df.columns]]
    text = [c for c in df.columns if df[c].dtype == object]
    df[text] = df[text].fillna("")
    return df


def _kind_color(df: pd.DataFrame, legend: bool = True) -> alt.Color:
    """Colour by kind, Okabe-Ito, the same colour for a kind on every chart."""
    kinds = [k for k in KINDS if k in set(df["kind"])] + sorted(set(df["kind"]) - set(KINDS))
    return alt.Color("kind:N", title="kind", scale=alt.Scale(
        domain=kinds, range=[KIND_COLOURS.get(k, "#999999") for k in kinds]),
        legend=alt.Legend(orient="right") if legend else None)


def _kind_and_family(df: pd.DataFrame):
    """A kind picked in the legend and a family picked in a menu (or by clicking a point)."""
    families = sorted(df["family"].unique())
    kind = alt.selection_point(fields=["kind"], bind="legend")
    family = alt.selection_point(fields=["family"], bind=alt.binding_select(
        options=[None, *families], labels=["all", *families], name="family "))
    return kind, family


def survey_rows(df: pd.DataFrame) -> pd.Series:
    """Which rows are the 2016 survey's networks (``SETS["survey"]``)."""
    hit = pd.Series(False, index=df.index)
    for spec in SETS["survey"]:
        library, name = spec.split(":", 1)
        arch, _, weights = name.partition(".")
        match = (df["library"] == library) & (df["arch"] == arch)
        if weights:
            match &= df["weights"] == weights
        hit |= match
    return hit


def _label_layers(layout, x: Scale, y: Scale, df: pd.DataFrame, xf: alt.X, yf: alt.Y, name: str,
                  dim) -> list:
    """The placed labels as layers: leader lines, a white halo, the text (mark ``name``)."""
    rows = []
    for p in layout.placed:
        row = df.loc[p.key]
        lead = p.leader or (np.nan,) * 4
        rows.append({"model": row["model"], "family": row["family"], "kind": row["kind"],
                     "label": p.text, "why": row["why"],
                     "lx": float(x.invert(p.cx)), "ly": float(y.invert(p.cy)),
                     "x1": float(x.invert(lead[0])) if p.leader else None,
                     "y1": float(y.invert(lead[1])) if p.leader else None,
                     "x2": float(x.invert(lead[2])) if p.leader else None,
                     "y2": float(y.invert(lead[3])) if p.leader else None})
    labels = pd.DataFrame(rows, columns=["model", "family", "kind", "label", "why", "lx", "ly",
                                         "x1", "y1", "x2", "y2"])
    lx = alt.X("lx:Q", scale=xf["scale"], title=xf["title"])
    ly = alt.Y("ly:Q", scale=yf["scale"], title=yf["title"])
    fade = alt.condition(dim, alt.value(1), alt.value(0.15)) if dim is not None else alt.value(1)
    leaders = alt.Chart(labels.dropna(subset=["x1"])).mark_rule(
        color="#555555", strokeWidth=0.7).encode(
        x=alt.X("x1:Q", scale=xf["scale"], title=xf["title"]), y=alt.Y("y1:Q", scale=yf["scale"],
                                                                 title=yf["title"]),
        x2="x2:Q", y2="y2:Q", opacity=fade).properties(name=f"{name}_leaders")
    text = {"align": "center", "baseline": "middle", "fontSize": FONT_SIZE}
    halo = alt.Chart(labels).mark_text(stroke="white", strokeWidth=3, strokeOpacity=0.85,
                                       **text).encode(
        x=lx, y=ly, text="label:N", opacity=fade).properties(name=f"{name}_halo")
    fg = alt.Chart(labels).mark_text(color="#111111", **text).encode(
        x=lx, y=ly, text="label:N", opacity=fade,
        tooltip=["model:N", "family:N", alt.Tooltip("why:N", title="labelled as")],
    ).properties(name=name)
    return [leaders, halo, fg]


def _labelled(df: pd.DataFrame, front: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``why`` (Pareto, survey, both or '') for each row; Pareto rows first."""
    df = df.copy()
    pareto = df.index.isin(front.index)
    survey = survey_rows(df).to_numpy()
    df["why"] = np.select([pareto & survey, pareto, survey],
                          ["Pareto-optimal; 2016 survey", "Pareto-optimal", "2016 survey"], "")
    return df


def _steps(front: pd.DataFrame, x: Scale, y: Scale, xcol: str, ycol: str) -> list[tuple]:
    """The frontier's step-after line as pixel segments."""
    px, py = x(front[xcol].to_numpy()), y(front[ycol].to_numpy())
    segs = []
    for i in range(len(px) - 1):
        segs += [(px[i], py[i], px[i + 1], py[i]), (px[i + 1], py[i], px[i + 1], py[i + 1])]
    return segs


def _layout(df: pd.DataFrame, x: Scale, y: Scale, xcol: str, ycol: str, r, obstacles=(),
            lines=()):
    """Labels for the rows of ``df`` with a ``why``: Pareto models (cheapest first), then the
    survey's networks."""
    want = df[df["why"] != ""]
    want = pd.concat([want[want["why"].str.startswith("Pareto")].sort_values(xcol),
                      want[~want["why"].str.startswith("Pareto")].sort_values(xcol)])
    names = short_names(want.to_dict("records"))
    pos = {k: i for i, k in enumerate(df.index)}
    return place(x(df[xcol].to_numpy()), y(df[ycol].to_numpy()), r,
                 [(k, pos[k], n) for k, n in zip(want.index, names)], x.length, y.length,
                 obstacles=obstacles, lines=lines)


def _labels_meta(df: pd.DataFrame, layout) -> dict:
    """What the chart labels and drops, for the page's text and the tests (``usermeta``)."""
    return {"labelled": [df.loc[p.key, "model"] for p in layout.placed],
            "dropped": [{"model": df.loc[k, "model"], "label": t, "reason": why}
                        for k, t, why in layout.dropped]}


BUBBLE_HEIGHT = 560  # taller than the rest: room for its labels


def bubble(counts: pd.DataFrame) -> alt.LayerChart:
    """The survey's figure: top-1 vs forward GMACs (log), bubble area = parameters, coloured by
    kind; the Pareto-optimal models and the survey's networks labelled, without overlap."""
    df = with_kinds(with_display_columns(counts.dropna(subset=["top1", "gmacs"]))).reset_index(
        drop=True)
    height = BUBBLE_HEIGHT
    x = Scale(log_domain(df["gmacs"], WIDTH, 30), WIDTH, log=True)
    y = Scale(linear_domain(df["top1"], height, 30), height, flip=True)
    pmax = float(df["params_m"].max()) if len(df) else 1.0
    area = (15, 1500)
    r = np.sqrt((area[0] + (area[1] - area[0]) * df["params_m"].to_numpy() / pmax) / np.pi)
    front = pareto_frontier(df)
    df = _labelled(df, front)
    layout = _layout(df, x, y, "gmacs", "top1", r + 0.5,
                     lines=_steps(front, x, y, "gmacs", "top1"))
    xf = alt.X("gmacs:Q", scale=alt.Scale(type="log", domain=list(x.domain), nice=False),
               title="forward GMACs (batch 1, log)")
    yf = alt.Y("top1:Q", scale=alt.Scale(domain=list(y.domain), nice=False, zero=False),
               title="ImageNet top-1 (%)")
    kind, family = _kind_and_family(df)
    dim = kind & family
    sizes = [v for v in (1, 10, 50, 100, 300, 600, 1000) if v <= pmax][-4:]
    points = alt.Chart(df.drop(columns=["why"])).mark_circle(stroke="white", strokeWidth=0.5).encode(
        x=xf, y=yf,
        size=alt.Size("params_m:Q", title="params (M)", scale=alt.Scale(domain=[0, pmax],
                                                                         range=list(area)),
                      legend=alt.Legend(values=sizes)),
        color=_kind_color(df),
        opacity=alt.condition(dim, alt.value(0.75), alt.value(0.08)),
        tooltip=TOOLTIP + [alt.Tooltip("family:N"), alt.Tooltip("kind:N")],
    ).add_params(kind, family).interactive().properties(name="bubble_points")
    frontier = alt.Chart(front[["gmacs", "top1"]]).mark_line(
        color="black", strokeDash=[4, 3], strokeWidth=1.2, interpolate="step-after"
    ).encode(x=xf, y=yf)
    return alt.layer(points, frontier, *_label_layers(layout, x, y, df, xf, yf, "bubble_labels",
                                                      dim)).properties(
        width=WIDTH, height=height, usermeta={"labels": _labels_meta(df, layout)},
        title=_title("Top-1 accuracy vs operations (bubble area = parameters; dashed: Pareto "
                     "frontier)", counts))


def best_per_family(counts: pd.DataFrame) -> pd.DataFrame:
    """Each family's most accurate model (the cheaper one on a tie), with the family's range of
    top-1 and its number of models; best family first."""
    df = with_kinds(with_display_columns(counts.dropna(subset=["top1"])))
    if df.empty:
        return df.assign(worst=[], models=[], label=[])
    best = df.sort_values(["top1", "gmacs"], ascending=[False, True], kind="stable"
                          ).drop_duplicates("family")
    span = df.groupby("family")["top1"].agg(worst="min", models="size")
    best = best.join(span, on="family").reset_index(drop=True)
    best["label"] = [f"{m} ({t:.2f}%)" for m, t in zip(best["model"], best["top1"])]
    return best


def top1_by_family(counts: pd.DataFrame) -> alt.HConcatChart:
    """Top-1 per family, one row each (legible at any number of models): a dot for the family's
    best model, named beside it, and a line over the range of its models, each a tick."""
    df = with_kinds(with_display_columns(counts.dropna(subset=["top1"])))
    best = best_per_family(counts)
    order = list(best["family"])
    step = 18
    x = alt.X("top1:Q", title="ImageNet top-1 (%)", axis=alt.Axis(labelFontSize=11),
              scale=alt.Scale(domain=list(linear_domain(df["top1"], 320, 10)), nice=False,
                              zero=False))
    y = alt.Y("family:N", sort=order, title=None, axis=alt.Axis(labelFontSize=11, labelLimit=0))
    span = alt.Chart(best).mark_rule(color="#9e9e9e", strokeWidth=1.5).encode(
        x=x, x2="worst:Q", y=y)
    models = alt.Chart(df).mark_tick(color="#757575", thickness=1, size=10, opacity=0.6).encode(
        x=x, y=y, tooltip=TOOLTIP + [alt.Tooltip("family:N")]).properties(name="family_models")
    dots = alt.Chart(best).mark_circle(size=90, stroke="white", strokeWidth=0.8, opacity=1).encode(
        x=x, y=y, color=alt.Color("kind:N", title="kind", scale=_kind_color(best)["scale"],
                                  legend=alt.Legend(orient="bottom", columns=4)),
        tooltip=TOOLTIP + [alt.Tooltip("family:N"), alt.Tooltip("kind:N"),
                           alt.Tooltip("models:Q", title="models in the family")],
    ).properties(name="family_best")
    width = int(max([text_width(t, 11) for t in best["label"]] + [120])) + 8
    names = alt.Chart(best).mark_text(align="left", baseline="middle", fontSize=11,
                                      color="#111111").encode(
        x=alt.value(0), y=alt.Y("family:N", sort=order, axis=None), text="label:N",
        tooltip=TOOLTIP + [alt.Tooltip("family:N")],
    ).properties(name="family_best_labels", width=width, height=alt.Step(step))
    chart = alt.layer(span, models, dots).properties(width=320, height=alt.Step(step))
    return alt.hconcat(chart, names, spacing=12).properties(title=alt.TitleParams(
        f"Top-1 accuracy by family ({len(order)} families, {len(df)} models)", subtitle=[
            ("dot: the family's best model, named on the right; line: the range of its models "
             "(one tick each)"), stamp(counts)], anchor="start")).configure_view(stroke=None)


def _family_scatter(df: pd.DataFrame, y: str, y_title: str, tooltip: list, title: str,
                    counts: pd.DataFrame) -> alt.Chart:
    """Models by parameters (x, log) and ``y`` (log), coloured by kind (Okabe-Ito); a kind picked
    in the legend, a family in the menu; axes fitted to the data."""
    df = with_kinds(df, extra=(y, "peak_gib", "density")).reset_index(drop=True)
    kind, family = _kind_and_family(df)
    x_dom = log_domain(df["params_m"], WIDTH, 12)
    y_dom = log_domain(df[y], HEIGHT, 12)
    return alt.Chart(df).mark_circle(size=60).encode(
        x=alt.X("params_m:Q", scale=alt.Scale(type="log", domain=list(x_dom), nice=False),
                title="parameters (M, log)"),
        y=alt.Y(f"{y}:Q", scale=alt.Scale(type="log", domain=list(y_dom), nice=False),
                title=y_title),
        color=_kind_color(df),
        opacity=alt.condition(kind & family, alt.value(0.8), alt.value(0.08)),
        tooltip=tooltip + [alt.Tooltip("family:N"), alt.Tooltip("kind:N")],
    ).add_params(kind, family).interactive().properties(
        width=WIDTH, height=HEIGHT, title=_title(title, counts))


DENSITIES = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)  # top-1 % per million parameters


def accuracy_density(counts: pd.DataFrame) -> alt.LayerChart:
    """The survey's accuracy density, as it can be read: top-1 against parameters (log), with
    curves of equal density (top-1 % per million parameters) and the Pareto frontier (the most
    accurate model for its size), whose models are labelled."""
    df = with_kinds(with_display_columns(counts.dropna(subset=["top1"]))).reset_index(drop=True)
    df["density"] = df["top1"] / df["params_m"]
    x = Scale(log_domain(df["params_m"], WIDTH, 20), WIDTH, log=True)
    y = Scale(linear_domain(df["top1"], HEIGHT, 30), HEIGHT, flip=True)
    xf = alt.X("params_m:Q", scale=alt.Scale(type="log", domain=list(x.domain), nice=False),
               title="parameters (M, log)")
    yf = alt.Y("top1:Q", scale=alt.Scale(domain=list(y.domain), nice=False, zero=False),
               title="ImageNet top-1 (%)")
    # curves of equal density: top1 = d x params, where they cross the plot
    curves, tags, obstacles = [], [], []
    for d in DENSITIES:
        lo, hi = max(x.domain[0], y.domain[0] / d), min(x.domain[1], y.domain[1] / d)
        if lo >= hi:
            continue
        for p in np.geomspace(lo, hi, 30):
            curves.append({"density": d, "params_m": p, "top1": d * p})
        # its name where it leaves the plot: at the top, or at the right edge
        tx, ty = (y.domain[1] / d, y.domain[1]) if y.domain[1] / d <= x.domain[1] else \
            (x.domain[1], d * x.domain[1])
        text = f"{d:g} %/M"
        w = text_width(text, 9)
        cx, cy = min(float(x(tx)), WIDTH - w / 2 - 2), float(y(ty)) + 8
        tags.append({"label": text, "params_m": float(x.invert(cx)), "top1": float(y.invert(cy))})
        obstacles.append((cx - w / 2, cy - 6, cx + w / 2, cy + 6))
    front = pareto_frontier(df, "params_m", "top1")
    df = _labelled(df, front)
    df["why"] = df["why"].where(df["why"].str.startswith("Pareto"), "")
    df["why"] = df["why"].str.replace("; 2016 survey", "", regex=False)
    layout = _layout(df, x, y, "params_m", "top1", np.full(len(df), 4.0), obstacles,
                     _steps(front, x, y, "params_m", "top1"))
    kind, family = _kind_and_family(df)
    dim = kind & family
    iso = alt.Chart(pd.DataFrame(curves, columns=["density", "params_m", "top1"])).mark_line(
        color="#b0b0b0", strokeWidth=0.9).encode(
        x=xf, y=yf, detail="density:N",
        tooltip=[alt.Tooltip("density:Q", title="top-1 % per M params")],
    ).properties(name="density_curves")
    iso_tags = alt.Chart(pd.DataFrame(tags, columns=["label", "params_m", "top1"])).mark_text(
        fontSize=9, color="#808080", align="center", baseline="middle").encode(
        x=xf, y=yf, text="label:N").properties(name="density_curve_labels")
    points = alt.Chart(df.drop(columns=["why"])).mark_circle(
        size=45, stroke="white", strokeWidth=0.4).encode(
        x=xf, y=yf, color=_kind_color(df),
        opacity=alt.condition(dim, alt.value(0.8), alt.value(0.08)),
        tooltip=TOOLTIP + [alt.Tooltip("family:N"), alt.Tooltip("kind:N"),
                           alt.Tooltip("density:Q", title="top-1 % per M params", format=".2f")],
    ).add_params(kind, family).interactive().properties(name="density_points")
    frontier = alt.Chart(front[["params_m", "top1"]]).mark_line(
        color="black", strokeDash=[4, 3], strokeWidth=1.2, interpolate="step-after").encode(
        x=xf, y=yf)
    return alt.layer(iso, iso_tags, points, frontier,
                     *_label_layers(layout, x, y, df, xf, yf, "density_labels", dim)).properties(
        width=WIDTH, height=HEIGHT, usermeta={"labels": _labels_meta(df, layout)},
        title=_title("Top-1 accuracy vs parameters (dashed: the most accurate model for its size; "
                     "grey: equal top-1 % per million parameters)", counts))


def params_vs_ops(counts: pd.DataFrame) -> alt.Chart:
    df = with_display_columns(counts.dropna(subset=["gmacs"]))
    return _family_scatter(df, "gmacs", "forward GMACs (log)", TOOLTIP,
                           "Parameters vs operations", counts)


def counter_ratios(table: pd.DataFrame, counts: pd.DataFrame) -> alt.Chart:
    """Each counter's count over the reference, per model: where and by how much they disagree."""
    long = table.melt(id_vars=["model", "family"], value_vars=["thop", "fvcore", "torch", "timm"],
                      var_name="counter", value_name="ratio").dropna(subset=["ratio"])
    return alt.Chart(long).mark_tick(thickness=2, size=14).encode(
        x=alt.X("ratio:Q", title="counter / reference", scale=alt.Scale(zero=False)),
        y=alt.Y("counter:N", title=None),
        color=alt.Color("counter:N", legend=None),
        tooltip=["model:N", "family:N", "counter:N", alt.Tooltip("ratio:Q", format=".4f")],
    ).interactive(bind_y=False).properties(
        width=WIDTH, height=200, title=_title("Counter / reference, one tick per model", counts))


def layer_macs(layers: pd.DataFrame, counts: pd.DataFrame) -> alt.Chart:
    """One model's MACs per leaf layer, in call order."""
    df = layers.reset_index(drop=True).copy()
    df["order"] = df.index
    df["mmacs"] = df["gmacs"] * 1e3
    return alt.Chart(df[df["mmacs"] > 0]).mark_bar().encode(
        x=alt.X("order:Q", title="layer (call order)"),
        y=alt.Y("mmacs:Q", title="MMACs"),
        color=alt.Color("type:N", title="layer type"),
        tooltip=["module:N", "type:N", "output_shape:N", "params:Q",
                 alt.Tooltip("mmacs:Q", format=".3f", title="MMACs")],
    ).interactive(bind_y=False).properties(
        width=WIDTH, height=220, title=_title("MACs per layer", counts))


def memory_vs_batch(memory: pd.DataFrame, fits: pd.DataFrame, counts: pd.DataFrame) -> alt.Chart:
    """The survey's memory-vs-batch figure for every model (pick one in the menu): predicted peak
    of a training step (fp32, AdamW) and of inference (fp32), with the fitted law as a line."""
    keep = ((memory["mode"] == "training") & (memory["precision"] == "fp32")
            & (memory["optimizer"] == "adamw")) | ((memory["mode"] == "inference")
                                                   & (memory["precision"] == "fp32"))
    df = memory[keep].copy()
    df["model"] = df["arch"] + "." + df["weights"]
    df["what"] = df["mode"].map({"training": "training step (AdamW)", "inference": "inference"})
    df["peak_gib"] = df["peak_bytes"] / 2**30
    law = fits[((fits["mode"] == "training") & (fits["precision"] == "fp32")
                & (fits["optimizer"] == "adamw")) | ((fits["mode"] == "inference")
                                                     & (fits["precision"] == "fp32"))].copy()
    law["model"] = law["arch"] + "." + law["weights"]
    law["what"] = law["mode"].map({"training": "training step (AdamW)", "inference": "inference"})
    batches = pd.DataFrame({"batch": sorted(df["batch"].unique())})
    law = law.merge(batches, how="cross")
    law["law_gib"] = (law["model_bytes"] + law["batch"] * law["per_sample_bytes"]) / 2**30
    pick = _model_menu(df["model"])
    points = alt.Chart(df).mark_point(filled=True, size=50).encode(
        x=alt.X("batch:Q", scale=alt.Scale(type="log", base=2), title="batch size (log2)"),
        y=alt.Y("peak_gib:Q", title="predicted peak memory (GiB)"),
        color=alt.Color("what:N", title=None),
        tooltip=["model:N", "what:N", "batch:Q", alt.Tooltip("peak_gib:Q", format=".3f",
                                                           title="peak (GiB)")],
    ).add_params(pick).transform_filter(pick)
    lines = alt.Chart(law).mark_line(strokeDash=[4, 3]).encode(
        x="batch:Q", y="law_gib:Q", color="what:N").transform_filter(pick)
    return alt.layer(points, lines).properties(
        width=WIDTH, height=360,
        title=_title("Memory vs batch size (points: simulated; dashed: model part + batch x "
                     "per-sample part)", counts))


def memory_vs_params(fits: pd.DataFrame, counts: pd.DataFrame, batch: int = 32) -> alt.Chart:
    df = fits[(fits["mode"] == "training") & (fits["precision"] == "fp32")
              & (fits["optimizer"] == "adamw")].merge(
        counts[["library", "arch", "weights", "img_size", "params", "family"]])
    df["model"] = df["arch"] + "." + df["weights"]
    df["params_m"] = df["params"] / 1e6
    df["peak_gib"] = (df["model_bytes"] + batch * df["per_sample_bytes"]) / 2**30
    return _family_scatter(
        df, "peak_gib", f"training memory at batch {batch} (GiB, log)",
        ["model:N", alt.Tooltip("params_m:Q", format=".2f"), alt.Tooltip("peak_gib:Q", format=".3f")],
        f"Memory vs parameters (training, fp32, AdamW, batch {batch})", counts)


def memory_breakdown(memory: pd.DataFrame, counts: pd.DataFrame, batch: int = 32) -> alt.Chart:
    """Training memory at the peak, stacked by category, one bar per model, with a tick at what
    the caching allocator reserves (``max_memory_reserved``, where replayed)."""
    df = memory[(memory["mode"] == "training") & (memory["precision"] == "fp32")
                & (memory["optimizer"] == "adamw") & (memory["batch"] == batch)].copy()
    df["model"] = df["arch"] + "." + df["weights"]
    long = df.melt(id_vars=["model", "peak_bytes"], value_vars=[f"{p}_bytes" for p in MEMORY_PARTS],
                   var_name="category", value_name="bytes")
    long["category"] = long["category"].str.removesuffix("_bytes")
    long["gib"] = long["bytes"] / 2**30
    order = df.sort_values("peak_bytes", ascending=False)["model"].drop_duplicates().tolist()
    y = alt.Y("model:N", sort=order, title=None, axis=alt.Axis(labelFontSize=8))
    bars = alt.Chart(long).mark_bar().encode(
        y=y, x=alt.X("gib:Q", title=f"GiB at the peak (training, fp32, AdamW, batch {batch})"),
        color=alt.Color("category:N", title="category", sort=list(MEMORY_PARTS)),
        tooltip=["model:N", "category:N", alt.Tooltip("gib:Q", format=".3f")])
    reserved = df[["model", "reserved_bytes"]].dropna()
    reserved = reserved.assign(reserved_gib=reserved["reserved_bytes"] / 2**30)
    ticks = alt.Chart(reserved).mark_tick(color="black", thickness=2, size=8).encode(
        y=y, x="reserved_gib:Q",
        tooltip=["model:N", alt.Tooltip("reserved_gib:Q", format=".3f",
                                        title="reserved by the allocator (GiB)")])
    return alt.layer(bars, ticks).properties(
        width=WIDTH - 200, height=alt.Step(9),
        title=_title("Where training memory goes, at the peak (tick: reserved by the caching "
                     "allocator)", counts))


def explorer(counts: pd.DataFrame) -> alt.Chart:
    """Every model with a published accuracy: top-1 vs forward GMACs (log), bubble area =
    parameters, coloured by library; a search box and library, family and licence menus filter
    it."""
    df = with_display_columns(counts.dropna(subset=["top1", "gmacs"]))
    # the licence as the library states it; '' where it states none (or the data predates it)
    df["license"] = (df["license"].fillna("").astype(str).str.strip()
                     if "license" in df.columns else "")
    df = df[["model", "library", "family", "weights", "img_size", "params_m", "gmacs", "top1",
             "acc_source", "license"]]
    search = alt.param(name="search", value="", bind=alt.binding(
        input="search", placeholder="part of a name", name="model "))
    library = alt.param(name="library", value="all", bind=alt.binding_select(
        options=["all", *sorted(df["library"].unique())], name="library "))
    family = alt.param(name="family", value="all", bind=alt.binding_select(
        options=["all", *sorted(df["family"].unique())], name="family "))
    licences = sorted(df["license"].unique())
    licence = alt.param(name="licence", value="all", bind=alt.binding_select(
        options=["all", *licences], labels=["all", *(x or "not stated" for x in licences)],
        name="licence "))
    return alt.Chart(df).mark_circle(stroke="white", strokeWidth=0.3, opacity=0.6).encode(
        x=alt.X("gmacs:Q", scale=alt.Scale(type="log"), title="forward GMACs (batch 1, log)"),
        y=alt.Y("top1:Q", scale=alt.Scale(zero=False), title="ImageNet top-1 (%)"),
        size=alt.Size("params_m:Q", title="params (M)", scale=alt.Scale(range=[8, 800])),
        color=alt.Color("library:N", title="library"),
        tooltip=TOOLTIP + [alt.Tooltip("family:N"), alt.Tooltip("license:N", title="licence")],
    ).add_params(search, library, family, licence).transform_filter(
        "(library == 'all' || datum.library == library)"
        " && (family == 'all' || datum.family == family)"
        " && (licence == 'all' || datum.license == licence)"
        " && (search == '' || indexof(lower(datum.model), lower(search)) >= 0)"
    ).interactive().properties(
        width=WIDTH, height=HEIGHT,
        title=_title(f"Every model with a published accuracy ({len(df)})", counts))


# ---- time ---------------------------------------------------------------------------------------

def latency_vs_batch(latency: pd.DataFrame, counts: pd.DataFrame) -> alt.Chart:
    """Time per image against batch size for every model (pick one in the menu), per set-up
    (device and threads): the survey's inference-time figure."""
    df = latency.dropna(subset=["infer_step_time"]).copy()
    df["model"] = df["arch"] + "." + df["weights"]
    df["ms_per_image"] = df["infer_step_time"] / df["infer_batch_size"]
    df["setup"] = [setup_name(r) for _, r in df.iterrows()]
    pick = _model_menu(df["model"])
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("infer_batch_size:Q", scale=alt.Scale(type="log", base=2),
                title="batch size (log2)"),
        y=alt.Y("ms_per_image:Q", scale=alt.Scale(type="log"), title="ms per image (log)"),
        color=alt.Color("setup:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["model:N", "setup:N", alt.Tooltip("infer_batch_size:Q", title="batch"),
                 alt.Tooltip("infer_step_time:Q", title="median step (ms)", format=".2f"),
                 alt.Tooltip("infer_step_time_p90:Q", title="p90 step (ms)", format=".2f"),
                 alt.Tooltip("infer_samples_per_sec:Q", title="images/s", format=".1f"),
                 "status:N"],
    ).add_params(pick).transform_filter(pick).properties(
        width=WIDTH, height=360, title=_title("Time per image vs batch size", counts))


def time_vs_ops(rows: pd.DataFrame, result: dict, counts: pd.DataFrame, what: str) -> alt.Chart:
    """The survey's operations-vs-time figure: ms per image at batch 1 against GMACs (log-log),
    with the least-squares line."""
    df = rows.dropna(subset=["ms_per_image_b1"]).copy()
    families = _family_legend_selection()
    points = alt.Chart(df).mark_circle(size=55).encode(
        x=alt.X("gmacs:Q", scale=alt.Scale(type="log"), title="forward GMACs (log)"),
        y=alt.Y("ms_per_image_b1:Q", scale=alt.Scale(type="log"),
                title="ms per image at batch 1 (log)"),
        color=alt.Color("family:N", scale=alt.Scale(scheme="tableau20"),
                        legend=alt.Legend(symbolLimit=0)),
        opacity=alt.condition(families, alt.value(0.8), alt.value(0.08)),
        tooltip=["model:N", alt.Tooltip("gmacs:Q", format=".3f"),
                 alt.Tooltip("ms_per_image_b1:Q", title="ms/image", format=".2f"), "family:N"],
    ).add_params(families).interactive()
    xs = np.geomspace(df["gmacs"].min(), df["gmacs"].max(), 50)
    line = alt.Chart(pd.DataFrame({"gmacs": xs, "fit": 10 ** (result["a"] + result["b"]
                                                                * np.log10(xs))})).mark_line(
        color="black", strokeDash=[4, 3]).encode(x="gmacs:Q", y="fit:Q")
    return alt.layer(points, line).properties(
        width=WIDTH, height=HEIGHT, title=_title(
            f"Time vs operations, {what} (dashed: fit, R² = {result['r2']:.2f})", counts))


def accuracy_vs_throughput(rows: pd.DataFrame, counts: pd.DataFrame, what: str) -> alt.Chart:
    """Top-1 against images per second at each model's best batch, with the Pareto frontier
    (nothing faster is at least as accurate)."""
    df = rows.dropna(subset=["top1", "best_per_sec"]).copy()
    families = _family_legend_selection()
    points = alt.Chart(df).mark_circle(size=55).encode(
        x=alt.X("best_per_sec:Q", scale=alt.Scale(type="log"),
                title="images per second at the best batch (log)"),
        y=alt.Y("top1:Q", scale=alt.Scale(zero=False), title="ImageNet top-1 (%)"),
        color=alt.Color("family:N", scale=alt.Scale(scheme="tableau20"),
                        legend=alt.Legend(symbolLimit=0)),
        opacity=alt.condition(families, alt.value(0.8), alt.value(0.08)),
        tooltip=["model:N", alt.Tooltip("best_per_sec:Q", title="images/s", format=".1f"),
                 alt.Tooltip("best_batch:Q", title="at batch"),
                 alt.Tooltip("top1:Q", format=".2f"), "family:N"],
    ).add_params(families).interactive()
    df["neg_rate"] = -df["best_per_sec"]
    frontier = pareto_frontier(df, "neg_rate", "top1")
    line = alt.Chart(frontier).mark_line(color="black", strokeDash=[4, 3], interpolate="step-before"
                                         ).encode(x="best_per_sec:Q", y="top1:Q")
    return alt.layer(points, line).properties(
        width=WIDTH, height=HEIGHT, title=_title(
            f"Top-1 accuracy vs throughput, {what} (dashed: Pareto frontier)", counts))


def energy_vs_batch(gpu: pd.DataFrame, counts: pd.DataFrame) -> alt.Chart:
    """The survey's power figure on a GPU: energy per image (J) against batch size, per precision,
    for every model measured (pick one in the menu)."""
    df = gpu.dropna(subset=["joules_per_image"]).copy()
    df["model"] = df["arch"] + "." + df["weights"]
    pick = _model_menu(df["model"])
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("infer_batch_size:Q", scale=alt.Scale(type="log", base=2),
                title="batch size (log2)"),
        y=alt.Y("joules_per_image:Q", scale=alt.Scale(type="log"), title="joules per image (log)"),
        color=alt.Color("precision:N"),
        tooltip=["model:N", "precision:N", alt.Tooltip("infer_batch_size:Q", title="batch"),
                 alt.Tooltip("power_w:Q", title="mean power (W)", format=".0f"),
                 alt.Tooltip("joules_per_image:Q", title="J/image", format=".4f")],
    ).add_params(pick).transform_filter(pick).properties(
        width=WIDTH, height=360, title=_title(
            f"Energy per image vs batch size, {df['device_name'].iloc[0]}", counts))


# ---- compare ------------------------------------------------------------------------------------

def compare(counts: pd.DataFrame) -> alt.Chart:
    """The Compare page's chart: the default zoo by top-1 vs forward GMACs (log), bubble area =
    parameters, in grey with its Pareto frontier; the models a visitor picks are drawn on top,
    labelled, from the named data set ``picked`` (empty here: the page's script fills it with
    rows of models.json)."""
    df = with_display_columns(counts.dropna(subset=["top1", "gmacs"]))[
        ["model", "library", "weights", "img_size", "params_m", "gmacs", "top1", "acc_source"]]
    x = alt.X("gmacs:Q", scale=alt.Scale(type="log"), title="forward GMACs (batch 1, log)")
    y = alt.Y("top1:Q", scale=alt.Scale(zero=False), title="ImageNet top-1 (%)")
    size = alt.Size("params_m:Q", title="params (M)", scale=alt.Scale(range=[15, 1500]))
    zoo = alt.Chart(df).mark_circle(color="#9e9e9e", opacity=0.35).encode(
        x=x, y=y, size=size, tooltip=TOOLTIP)
    frontier = alt.Chart(pareto_frontier(df)).mark_line(
        color="#616161", strokeDash=[4, 3], strokeWidth=1, interpolate="step-after"
    ).encode(x="gmacs:Q", y="top1:Q")
    picked = alt.Data(name="picked")
    points = alt.Chart(picked).mark_circle(opacity=0.9, stroke="black", strokeWidth=1.2).encode(
        x=x, y=y, size=alt.Size("params_m:Q", legend=None, scale=alt.Scale(range=[15, 1500])),
        color=alt.Color("model:N", title="picked", scale=alt.Scale(scheme="category10")),
        tooltip=TOOLTIP).properties(name="picked")
    labels = alt.Chart(picked).mark_text(align="left", dx=9, dy=-9, fontSize=11,
                                         fontWeight="bold").encode(
        x=x, y=y, text="model:N", color=alt.Color("model:N", legend=None)
    ).properties(name="picked_labels")
    return alt.layer(zoo, frontier, points, labels).resolve_scale(size="shared").properties(
        width=WIDTH, height=HEIGHT,
        title=_title("The picked models against the zoo: top-1 vs operations (grey: the zoo; "
                     "dashed: its Pareto frontier)", counts))
