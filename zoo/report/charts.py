"""Chart specs, as pure functions of the data: each takes DataFrames and returns an Altair chart.

Every chart carries a stamp (zoo and library versions) in its subtitle, so a figure cut out of the
site still says what produced it.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from zoo.report.timing import setup_name

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


def bubble(counts: pd.DataFrame) -> alt.Chart:
    """The survey's figure: top-1 vs forward GMACs (log), bubble area = parameters."""
    df = with_display_columns(counts.dropna(subset=["top1", "gmacs"]))
    families = _family_legend_selection()
    base = alt.Chart(df).encode(
        x=alt.X("gmacs:Q", scale=alt.Scale(type="log"), title="forward GMACs (batch 1, log)"),
        y=alt.Y("top1:Q", scale=alt.Scale(zero=False), title="ImageNet top-1 (%)"),
    )
    points = base.mark_circle(stroke="white", strokeWidth=0.5).encode(
        size=alt.Size("params_m:Q", title="params (M)", scale=alt.Scale(range=[15, 1500])),
        color=alt.Color("family:N", title="family", scale=alt.Scale(scheme="tableau20"),
                        legend=alt.Legend(symbolLimit=0)),
        opacity=alt.condition(families, alt.value(0.75), alt.value(0.08)),
        tooltip=TOOLTIP,
    ).add_params(families).interactive()
    frontier = alt.Chart(pareto_frontier(df)).mark_line(
        color="black", strokeDash=[4, 3], strokeWidth=1.2, interpolate="step-after"
    ).encode(x="gmacs:Q", y="top1:Q")
    return alt.layer(points, frontier).properties(
        width=WIDTH, height=HEIGHT,
        title=_title("Top-1 accuracy vs operations (bubble area = parameters; dashed: Pareto frontier)",
                     counts))


def ranked_top1(counts: pd.DataFrame) -> alt.Chart:
    df = with_display_columns(counts.dropna(subset=["top1"]))
    families = _family_legend_selection()
    return alt.Chart(df).mark_bar().encode(
        y=alt.Y("model:N", sort="-x", title=None, axis=alt.Axis(labelFontSize=8)),
        x=alt.X("top1:Q", scale=alt.Scale(zero=False, domain=[50, 90]), title="ImageNet top-1 (%)"),
        color=alt.Color("family:N", scale=alt.Scale(scheme="tableau20")),
        opacity=alt.condition(families, alt.value(1), alt.value(0.15)),
        tooltip=TOOLTIP,
    ).add_params(families).properties(
        width=WIDTH - 200, height=alt.Step(9), title=_title("Top-1 accuracy per network", counts))


def _family_scatter(df: pd.DataFrame, y: str, y_title: str, tooltip: list, title: str,
                    counts: pd.DataFrame) -> alt.Chart:
    """Models by parameters (x, log) and ``y`` (log), coloured by family, legend filtering."""
    families = _family_legend_selection()
    return alt.Chart(df).mark_circle(size=60).encode(
        x=alt.X("params_m:Q", scale=alt.Scale(type="log"), title="parameters (M, log)"),
        y=alt.Y(f"{y}:Q", scale=alt.Scale(type="log"), title=y_title),
        color=alt.Color("family:N", scale=alt.Scale(scheme="tableau20"),
                        legend=alt.Legend(symbolLimit=0)),
        opacity=alt.condition(families, alt.value(0.8), alt.value(0.08)),
        tooltip=tooltip,
    ).add_params(families).interactive().properties(
        width=WIDTH, height=HEIGHT, title=_title(title, counts))


def accuracy_density(counts: pd.DataFrame) -> alt.Chart:
    """The survey's "accuracy density": top-1 per million parameters, against parameters."""
    df = with_display_columns(counts.dropna(subset=["top1"]))
    df["density"] = df["top1"] / df["params_m"]
    return _family_scatter(
        df, "density", "top-1 % per million parameters (log)",
        TOOLTIP + [alt.Tooltip("density:Q", title="top-1 / M params", format=".2f")],
        "Accuracy density", counts)


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
    """Training memory at the peak, stacked by category, one bar per model."""
    df = memory[(memory["mode"] == "training") & (memory["precision"] == "fp32")
                & (memory["optimizer"] == "adamw") & (memory["batch"] == batch)].copy()
    df["model"] = df["arch"] + "." + df["weights"]
    cats = [c for c in df.columns if c.endswith("_bytes") and c != "peak_bytes"]
    long = df.melt(id_vars=["model", "peak_bytes"], value_vars=cats, var_name="category",
                   value_name="bytes")
    long["category"] = long["category"].str.removesuffix("_bytes")
    long["gib"] = long["bytes"] / 2**30
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("model:N", sort=alt.EncodingSortField("peak_bytes", order="descending"), title=None,
                axis=alt.Axis(labelFontSize=8)),
        x=alt.X("gib:Q", title=f"GiB at the peak (training, fp32, AdamW, batch {batch})"),
        color=alt.Color("category:N", title="category"),
        tooltip=["model:N", "category:N", alt.Tooltip("gib:Q", format=".3f")],
    ).properties(width=WIDTH - 200, height=alt.Step(9),
                 title=_title("Where training memory goes, at the peak", counts))


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
