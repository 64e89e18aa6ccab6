"""The site stage: data/*.csv -> build/docs (Markdown, chart specs, exports) -> mkdocs -> public/.

Hand-written sources live in ``site/`` (few and short); everything else is generated here from
``data/``. Charts are Vega-Lite specs drawn in the browser by the vega-embed bundle that
vl-convert ships, written beside the pages, so the site needs no network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pandas as pd

import zoo
from zoo.catalogue import reference
from zoo.catalogue.entries import KEY
from zoo.errors import DataError, UsageError
from zoo.report import charts, formats, pages, site_data, timing
from zoo.store import tables
from zoo.store.schema import TABLES

SOURCES = Path(str(resources.files("zoo.site_sources")))  # site/, shipped as package data
TIMM_BENCH = reference.path(reference.TIMM_BENCH_5090)
DATA_TABLES = ["counts.csv", "ops.csv", "layers.csv", "counter-notes.csv", "failures.csv",
               "memory.csv", "memory-fit.csv", "memory-savings.csv", "memory-measured.csv",
               "memory-comparison.csv", "memory-failures.csv",
               "latency.csv", "latency-failures.csv", "latency-gpu.csv"]
TIMM_CPU_BENCH_NAME = reference.TIMM_BENCH_CPU
# the tables of the Memory and Latency pages, which show the default zoo's models
PAGE_TABLES = ["memory.csv", "memory-fit.csv", "memory-savings.csv", "latency.csv",
               "latency-gpu.csv"]


MARKER = ".zoo-site"  # in a folder zoo site made, so that it only ever replaces its own


def _claim(folder: Path) -> None:
    """``folder`` emptied for a new build, if zoo made it (or it is empty, or missing); a folder
    of something else is refused (UsageError) rather than deleted."""
    ours = [MARKER, "assets/js/vega-bundle.js"]  # the second: built before the marker existed
    if folder.exists() and any(folder.iterdir()) and not any((folder / f).exists() for f in ours):
        raise UsageError(f"{folder} exists and was not made by 'zoo site': move it, or run "
                         "'zoo site --out' with another folder")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by zoo site; replaced at each build\n")


def docs_dir(root: Path | None = None) -> Path:
    """Where the generated pages go: ``build/docs`` of ``root`` (the current folder)."""
    return Path(root or Path.cwd()) / "build" / "docs"


def public_dir(root: Path | None = None) -> Path:
    """Where the built site goes: ``public/`` of ``root`` (the current folder)."""
    return Path(root or Path.cwd()) / "public"

BIBTEX = f"""@misc{{zoo,
  title  = {{zoo: image-classification models compared by what they cost to run}},
  note   = {{Version {zoo.__version__}}},
  year   = {{2026}},
}}
"""


# ---- exports: one table, three formats holding the same numbers -------------------------------

def export_table(df: pd.DataFrame, name: str, out: Path, caption: str) -> list[str]:
    """Writes ``name``.csv/.md (every column) and .tex (the columns that fit a page of an article:
    ``formats.paper_view``) of the same display table, formatted by ``formats``; returns the file
    names."""
    out.mkdir(parents=True, exist_ok=True)
    df = df.astype(str).replace({"nan": "", "None": ""})
    headers, body = [str(c) for c in df.columns], df.values.tolist()
    (out / f"{name}.csv").write_text(formats.csv(headers, body))
    (out / f"{name}.md").write_text(formats.markdown(headers, body, caption))
    paper, paper_body, left_out = formats.paper_view(headers, body, name)
    note = (f" Not shown (see {name}.csv): {', '.join(left_out)}." if left_out else "")
    comment = (f"{name}.tex: {len(body)} rows; columns: {', '.join(paper)}"
               + (f"; {name}.csv has every column" if left_out else ""))
    (out / f"{name}.tex").write_text(formats.latex(paper, paper_body, caption.rstrip() + note,
                                                   f"tab:zoo-{name}", comment))
    return [f"{name}.csv", f"{name}.md", f"{name}.tex"]


def export_chart(spec: dict, name: str, out: Path) -> list[str]:
    import vl_convert as vlc

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.svg").write_text(vlc.vegalite_to_svg(spec))
    (out / f"{name}.pdf").write_bytes(vlc.vegalite_to_pdf(spec))
    return [f"{name}.svg", f"{name}.pdf"]


def write_bundle(out: Path) -> None:
    import vl_convert as vlc

    out.mkdir(parents=True, exist_ok=True)
    (out / "vega-bundle.js").write_text(vlc.javascript_bundle())


# ---- tables derived from data/ (pure) --------------------------------------------------------

def zoo_table(counts: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "library": counts["library"], "arch": counts["arch"], "weights": counts["weights"],
        "img_size": counts["img_size"], "family": counts["family"],
        "params_m": (counts["params"] / 1e6).map("{:.3f}".format),
        "gmacs": counts["gmacs"].map("{:.3f}".format),
        "gflops_train": counts["gflops_train"].map(lambda x: pages.fmt(x, 2)),
        "top1": counts["top1"].map(lambda x: pages.fmt(x, 3)),
        "top5": counts["top5"].map(lambda x: pages.fmt(x, 3)),
        "acc_source": counts["acc_source"].fillna(""),
        "license": pages.licence_column(counts),
    })


def timm_published_gmacs(counts: pd.DataFrame, path: Path = TIMM_BENCH) -> pd.Series:
    """timm's own GMACs (fvcore-based, its RTX 5090 AMP benchmark), joined on (arch, img_size)."""
    if not Path(path).exists():
        return pd.Series(float("nan"), index=counts.index)
    bench = pd.read_csv(path)[["model", "infer_img_size", "infer_gmacs"]]
    bench = bench.drop_duplicates(["model", "infer_img_size"]).set_index(["model", "infer_img_size"])
    return pd.Series([bench["infer_gmacs"].get((r.arch, r.img_size), float("nan"))
                      if r.library == "timm" else float("nan") for r in counts.itertuples()],
                     index=counts.index)


def counters_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Each counter's GMACs over the reference per model, largest disagreement first."""
    df = pd.DataFrame({"model": counts["arch"] + "." + counts["weights"], "family": counts["family"],
                       "reference": counts["gmacs"]})
    for name, column in [("thop", counts["gmacs_thop"]), ("fvcore", counts["gmacs_fvcore"]),
                         ("torch", counts["gmacs_torch"]), ("timm", timm_published_gmacs(counts))]:
        df[name] = column / counts["gmacs"]
    off = (df[["thop", "fvcore", "torch", "timm"]] - 1).abs()
    df["disagreement"] = off.max(axis=1)
    df["worst_counter"] = off.idxmax(axis=1)
    return df.sort_values("disagreement", ascending=False, kind="stable").reset_index(drop=True)


def category_table(ops: pd.DataFrame) -> pd.DataFrame:
    pivot = ops.pivot_table(index="category", columns="counter", values="gmacs", aggfunc="sum")
    pivot = pivot.reindex(columns=[c for c in ("reference", "thop", "fvcore", "torch")
                                   if c in pivot.columns]).fillna(0.0)
    return pivot.reset_index().map(lambda x: f"{x:.3f}" if isinstance(x, float) else x)


def methods_values(counts: pd.DataFrame, layers: pd.DataFrame, fits: pd.DataFrame) -> dict:
    """The Methods page's figures. Its worked example is torchvision's ResNet-50; where the data
    holds none, the hand-computed values stand alone and the counted ones say so."""
    from zoo.catalogue.accuracy import torchvision_published_gmacs

    tv = counts[counts.library == "torchvision"]
    matched = sum(abs(r.gmacs - torchvision_published_gmacs(r.arch, r.weights))
                  <= max(1e-3 * r.gmacs, 5e-4) for r in tv.itertuples())
    ratio = (counts["gflops_train"] / (2 * counts["gmacs"])).dropna()
    hand = {"conv1_params_hand": f"{3 * 64 * 7 * 7:,}", "fc_params_hand": f"{2048 * 1000 + 1000:,}",
            "conv1_out_hand": (224 + 2 * 3 - 7) // 2 + 1,
            "conv1_macs_hand": f"{64 * 112 * 112 * 3 * 7 * 7:,}"}
    values = {
        "tv_matched": matched, "tv_total": len(tv),
        "train_ratio_min": _num(ratio.min(), 2), "train_ratio_max": _num(ratio.max(), 2),
        "train_ratio_median": _num(ratio.median(), 2), **hand,
        "mnv2_gmacs": "(not in this data)", "r50_law": "run `zoo predict` to predict memory",
        **{k: "(not in this data)" for k in (
            "r50_weights", "r50_gmacs", "conv1_params", "fc_params", "conv1_shape", "conv1_macs",
            "r50_params", "r50_mib_fp32", "r50_mib_fp16", "r50_mib_2x", "r50_mib_3x",
            "r50_mib_4x")},
    }
    mnv2 = tv[tv.arch == "mobilenet_v2"]
    if not mnv2.empty:
        values["mnv2_gmacs"] = f"{mnv2.iloc[0].gmacs:.3f}"
    r50s = tv[tv.arch == "resnet50"]
    if r50s.empty:
        return values
    r50 = r50s.iloc[-1]
    lay = layers[(layers.library == "torchvision") & (layers.arch == "resnet50")
                 & (layers.weights == r50.weights)].set_index("module")
    mib = r50.params * 4 / 2**20
    values.update({
        "r50_weights": r50.weights, "r50_gmacs": f"{r50.gmacs:.3f}",
        "conv1_params": f"{int(lay.loc['conv1', 'params']):,}",
        "fc_params": f"{int(lay.loc['fc', 'params']):,}", "conv1_shape": lay.loc["conv1", "output_shape"],
        "conv1_macs": f"{round(lay.loc['conv1', 'gmacs'] * 1e9):,}",
        "r50_params": f"{int(r50.params):,}",
        "r50_mib_fp32": f"{mib:.1f}", "r50_mib_fp16": f"{mib / 2:.1f}",
        "r50_mib_2x": f"{2 * mib:.1f}", "r50_mib_3x": f"{3 * mib:.1f}", "r50_mib_4x": f"{4 * mib:.1f}",
    })
    f = fits[(fits.library == "torchvision") & (fits.arch == "resnet50") & (fits.weights == r50.weights)
             & (fits["mode"] == "training") & (fits.precision == "fp32") & (fits.optimizer == "adamw")]
    if not f.empty:
        f = f.iloc[0]
        values["r50_law"] = (
            f"{f.model_bytes / 2**20:.0f} MiB + batch x {f.per_sample_bytes / 2**20:.1f} MiB "
            f"(worst residual {100 * f.worst_residual:.1f}% over batch 1-256; at batch 32, "
            f"{(f.model_bytes + 32 * f.per_sample_bytes) / 2**30:.2f} GiB)")
    return values


def _num(x: float, digits: int) -> str:
    return "(none)" if pd.isna(x) else f"{x:.{digits}f}"


def fill(template: str, values: dict) -> str:
    def sub(m):
        if m.group(1) not in values:
            raise KeyError(f"site/methods.md: no value for placeholder {{{{ {m.group(1)} }}}}")
        return str(values[m.group(1)])
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", sub, template)


# ---- the stage (I/O) -------------------------------------------------------------------------

def default_zoo_rows(counts: pd.DataFrame) -> pd.DataFrame:
    """The rows of the default zoo, which the site's figures and model pages show (the explorer
    shows every row); all rows where the data holds none of it."""
    from zoo.catalogue.entries import default_zoo

    mine = _rows_of(counts, {e.key for e in default_zoo()})
    return mine if len(mine) else counts


def read_data(data_dir: Path) -> dict[str, pd.DataFrame]:
    """Every table of ``data_dir``, validated, read under its lock (a half-done commit is finished
    first); DataError if one is bad or they disagree with each other."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data {data_dir}: no such folder; run 'zoo count' first")
    with tables.locked(data_dir):
        data = {name: tables.read(data_dir, name) for name in DATA_TABLES}
    if data["counts.csv"].empty:
        raise UsageError(f"{data_dir / 'counts.csv'} is empty or missing: run 'zoo count' first")
    problems = tables.consistency(data)
    if problems:
        raise DataError(f"{data_dir}: the tables disagree: {problems[0]}; rerun 'zoo count' for "
                        "those models")
    return data


def generate(data_dir: Path | None = None, docs: Path | None = None, log=sys.stderr) -> dict:
    """Writes the whole docs tree from ``data_dir``. Returns counts of what it wrote."""
    data_dir = Path(data_dir or tables.default_data())
    docs = Path(docs or docs_dir())
    data = read_data(data_dir)
    everything = data["counts.csv"]
    counts = default_zoo_rows(everything)  # the pages below but the explorer: the default zoo
    ops, layers = data["ops.csv"], data["layers.csv"]
    notes = data["counter-notes.csv"]
    _claim(docs)
    shutil.copytree(SOURCES, docs, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        "methods.md", "mkdocs.yml", "__init__.py", "__pycache__"))
    downloads = docs / "downloads"
    write_bundle(docs / "assets" / "js")
    stamp = charts.stamp(counts)

    specs = {"bubble": charts.bubble(counts), "top1-by-family": charts.top1_by_family(counts),
             "accuracy-density": charts.accuracy_density(counts),
             "params-vs-ops": charts.params_vs_ops(counts)}
    ctable = counters_table(counts)
    specs["counter-ratios"] = charts.counter_ratios(ctable, counts)
    specs = {name: chart.to_dict() for name, chart in specs.items()}
    files = []
    for name, spec in specs.items():
        files += export_chart(spec, name, downloads)
    cats = category_table(ops)
    files += export_table(zoo_table(counts), "zoo", downloads, f"Models of the zoo. {stamp}")
    files += export_table(ctable.drop(columns=["family"]).map(pages._fmt4), "counters", downloads,
                          f"Counter / reference GMACs. {stamp}")
    files += export_table(cats, "counter-categories", downloads,
                          f"GMACs per op category and counter, whole zoo. {stamp}")
    for name in ("counts.csv", "ops.csv", "counter-notes.csv", "failures.csv"):
        if (data_dir / name).exists():
            shutil.copy(data_dir / name, downloads / name)
            files.append(name)

    explorer_spec = charts.explorer(everything).to_dict()
    failures = pd.concat([data[name] for name in ("failures.csv", "memory-failures.csv",
                                                  "latency-failures.csv")], ignore_index=True)
    (docs / "explorer.md").write_text(pages.explorer(
        everything, explorer_spec, tables.keys(counts), failures))
    (docs / "index.md").write_text(pages.home(counts, specs["bubble"]))
    (docs / "figures.md").write_text(pages.figures(counts, specs))
    (docs / "counters.md").write_text(pages.counters(ctable, cats, counts, specs["counter-ratios"]))
    (docs / "models.md").write_text(pages.model_index(counts))
    (docs / "compare.md").write_text(pages.compare_page(counts, charts.compare(counts).to_dict()))
    (docs / "methods.md").write_text(fill((SOURCES / "methods.md").read_text(), methods_values(
        counts, layers, data["memory-fit.csv"])))
    keys = tables.keys(counts)
    shown = {name: _rows_of(data[name], keys) for name in PAGE_TABLES}  # the pages' models
    for name in ("memory.csv", "memory-fit.csv"):
        shown[name]["optimizer"] = shown[name]["optimizer"].fillna("")
    files += _memory_pages(shown, data["memory-comparison.csv"], data_dir, docs, counts)
    files += _latency_pages(shown, data_dir, docs, counts, ops)
    (docs / "data.md").write_text(pages.data_page(counts, files, BIBTEX, downloads))
    (docs / "builder.md").write_text(pages.builder_page(everything, BIBTEX))
    site_data.write_models_json(
        site_data.models_table(everything, data["memory-fit.csv"], data["latency.csv"], keys),
        docs / "assets" / "data" / "models.json", stamp)
    model_dir = docs / "models"
    model_dir.mkdir()
    by_key = {k: g for k, g in layers.groupby(KEY, sort=False)}
    ops_by_key = {k: g for k, g in ops.groupby(KEY, sort=False)}
    notes_by_key = {k: g for k, g in notes.groupby(KEY, sort=False)} if not notes.empty else {}
    empty_layers = layers.iloc[:0]
    fits = shown["memory-fit.csv"]
    fits_by_key = {k: g for k, g in fits.groupby(KEY, sort=False)} if not fits.empty else {}
    lat = shown["latency.csv"]
    lat_by_key = {k: g for k, g in lat.groupby(KEY, sort=False)} if not lat.empty else {}
    for _, row in counts.iterrows():
        key = tuple(row[KEY])
        lay = by_key.get(key, empty_layers)
        text = pages.model_page(row, lay, ops_by_key.get(key, ops.iloc[:0]),
                                notes_by_key.get(key, notes.iloc[:0]), counts,
                                charts.layer_macs(lay, counts).to_dict(), fits_by_key.get(key),
                                lat_by_key.get(key))
        (model_dir / f"{pages.model_slug(row)}.md").write_text(text)
    summary = {"pages": 9 + len(counts), "downloads": len(files)}
    print(f"generated {summary['pages']} pages and {summary['downloads']} downloads in {docs}",
          file=log)
    return summary


def _rows_of(table: pd.DataFrame, keys: set[tuple]) -> pd.DataFrame:
    """The rows of ``table`` whose model key is in ``keys``, as a new frame."""
    mine = [k in keys for k in table[KEY].itertuples(index=False, name=None)]
    return table.loc[mine].reset_index(drop=True)


def _publish(docs: Path, data_dir: Path, counts: pd.DataFrame, specs: dict, exports: dict,
             data_tables: tuple[str, ...]) -> list[str]:
    """A page's downloads: its charts (SVG, PDF), its tables (CSV, Markdown, LaTeX) and the data
    files behind it, as they are; returns the file names."""
    downloads = docs / "downloads"
    files = []
    for name, spec in specs.items():
        files += export_chart(spec, name, downloads)
    stamp = charts.stamp(counts)
    for name, table in exports.items():
        files += export_table(table, name, downloads, f"{name}. {stamp}")
    for name in data_tables:
        file = TABLES[name].file
        if (data_dir / file).exists():
            shutil.copy(data_dir / file, downloads / file)
            files.append(file)
    return files


def _memory_pages(shown: dict, comparison: pd.DataFrame, data_dir: Path, docs: Path,
                  counts: pd.DataFrame) -> list[str]:
    """The Memory page, when the memory stage has run (``shown``: the page's models' rows)."""
    mem, fits, savings = shown["memory.csv"], shown["memory-fit.csv"], shown["memory-savings.csv"]
    if mem.empty or fits.empty:
        (docs / "memory.md").write_text("# Memory\n\n" + pages.GENERATED
                                        + "Run `make zoo` to predict memory.\n")
        return []
    comparison = comparison if not comparison.empty else None
    specs = {"memory-vs-batch": charts.memory_vs_batch(mem, fits, counts).to_dict(),
             "memory-vs-params": charts.memory_vs_params(fits, counts).to_dict(),
             "memory-breakdown": charts.memory_breakdown(mem, counts).to_dict()}
    exports: dict = {}
    text = pages.memory_page(counts, fits, savings, comparison, specs, exports)
    (docs / "memory.md").write_text(text)
    return _publish(docs, data_dir, counts, specs, exports, (
        "memory.csv", "memory-fit.csv", "memory-savings.csv", "memory-measured.csv",
        "memory-comparison.csv"))


def _latency_pages(shown: dict, data_dir: Path, docs: Path, counts: pd.DataFrame,
                   ops: pd.DataFrame) -> list[str]:
    """The Latency page, when the latency stage has run (``shown``: the page's models' rows)."""
    cpu, gpu = shown["latency.csv"], shown["latency-gpu.csv"]
    latency = pd.concat([cpu, gpu[cpu.columns]], ignore_index=True) if not gpu.empty else cpu
    rows = timing.per_image(latency, counts) if not latency.empty else None
    if rows is None or rows.empty:
        (docs / "latency.md").write_text("# Latency\n\n" + pages.GENERATED
                                         + "Run `zoo time` to time inference on this machine.\n")
        return []
    fits = []
    for _, group in rows.groupby(["device", "device_name", "threads", "precision"]):
        several = group["best_batch"].gt(1).any()  # else its best batch is its batch 1
        for y, what in [("ms_per_image_b1", "batch 1")] + (
                [("ms_per_image_best", "best batch")] if several else []):
            f = timing.fit(group, y)
            if f is not None:
                fits.append((f"{timing.setup_name(group.iloc[0])}, {what}", f))
    most = timing.main_setup(rows)
    main_fit = timing.fit(most)
    what = timing.setup_name(most.iloc[0])
    specs = {"latency-vs-batch": charts.latency_vs_batch(latency, counts).to_dict(),
             "accuracy-vs-throughput": charts.accuracy_vs_throughput(most, counts, what).to_dict()}
    if main_fit is not None:
        specs["time-vs-ops"] = charts.time_vs_ops(most, main_fit, counts, what).to_dict()
    if not gpu.empty and gpu["joules_per_image"].notna().any():
        specs["energy-vs-batch"] = charts.energy_vs_batch(gpu, counts).to_dict()
    published = pd.read_csv(reference.path(TIMM_CPU_BENCH_NAME))
    rank = timing.rank_correlation(most, published) if most["device"].iloc[0] == "cpu" else None
    exports: dict = {}
    text = pages.latency_page(counts, rows, fits,
                              timing.misses(main_fit, ops) if main_fit is not None else None,
                              rank, specs, latency, TIMM_CPU_BENCH_NAME, exports, gpu)
    (docs / "latency.md").write_text(text)
    return _publish(docs, data_dir, counts, specs, exports, ("latency.csv", "latency-gpu.csv"))


def build(data_dir: Path | None = None, root: Path | None = None, log=sys.stderr) -> dict:
    """Generate the docs into ``root``/build/docs and build the static site into ``root``/public
    (``root``: the current folder) with ``mkdocs build --strict``."""
    import yaml

    t0 = time.perf_counter()
    docs, public = docs_dir(root), public_dir(root)
    _claim(public)  # before any work: a folder that is not ours stops the build
    summary = generate(data_dir, docs, log=log)
    config = yaml.safe_load((SOURCES / "mkdocs.yml").read_text())
    config.update(docs_dir=str(docs), site_dir=str(public))
    config_file = docs.parent / "mkdocs.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                    "--config-file", str(config_file)], check=True, cwd=docs.parent,
                   env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    (public / MARKER).write_text("made by zoo site; replaced at each build\n")  # mkdocs emptied it
    summary["seconds"] = time.perf_counter() - t0
    print(f"built the site in {summary['seconds']:.0f}s -> {public}", file=log)
    return summary
