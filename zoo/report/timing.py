"""Time held against the operation count, as pure functions of the data.

- ``per_image``: each model's time per image at batch 1 (latency) and at its best batch
  (throughput), per device, precision and thread count;
- ``fit``: log10(time per image) = a + b log10(GMACs), least squares, with R² and the share of
  models the fit predicts within +-10% (the figure latency predictors such as nn-Meter report);
- ``misses``: the models the fit misses most, with what they spend their MACs on (op categories of
  the reference count);
- ``rank_correlation``: Spearman's rank correlation of this machine's batch-1 throughput with
  timm's published CPU benchmark over the models both hold (same architecture and image size).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zoo.store.schema import KEY

SETUP = ["device", "device_name", "precision", "threads"]
WITHIN = 0.10  # the fit's tolerance for the "predicted within" share


def setup_name(r) -> str:
    """Where a timing was made: the device's name, the CPU threads (on a CPU), the precision."""
    threads = f", {int(r['threads'])} thread{'s' if r['threads'] > 1 else ''}" \
        if r["device"] == "cpu" else ""
    return f"{r['device_name']}{threads}, {r['precision']}"


def per_image(latency: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """One row per model and set-up: ms per image at batch 1 and at the best batch, the best
    batch's images per second, with the model's GMACs, top-1 and family."""
    ok = latency.dropna(subset=["infer_step_time"]).copy()
    if ok.empty:
        return pd.DataFrame(columns=[*KEY, *SETUP, "ms_per_image_b1", "best_batch",
                                     "best_per_sec", "ms_per_image_best", "gmacs", "top1",
                                     "family", "params", "model"])
    ok["ms_per_image"] = ok["infer_step_time"] / ok["infer_batch_size"]
    group = ok.groupby(KEY + SETUP, sort=True)
    best = ok.loc[group["infer_samples_per_sec"].idxmax()].set_index(KEY + SETUP)
    b1 = ok[ok["infer_batch_size"] == 1].set_index(KEY + SETUP)["ms_per_image"]
    out = pd.DataFrame({"ms_per_image_b1": b1}).join(pd.DataFrame({
        "best_batch": best["infer_batch_size"], "best_per_sec": best["infer_samples_per_sec"],
        "ms_per_image_best": best["ms_per_image"]}), how="outer").reset_index()
    out = out.merge(counts[KEY + ["gmacs", "top1", "family", "params"]], on=KEY, how="inner")
    out["model"] = out["arch"] + "." + out["weights"]
    return out


def fit(rows: pd.DataFrame, y: str = "ms_per_image_b1") -> dict | None:
    """log10(y) = a + b log10(GMACs) over ``rows`` (one set-up), one point per architecture and
    image size; None with fewer than 3."""
    df = rows.dropna(subset=[y, "gmacs"])
    # one point per architecture and size: sibling weights share their timing
    df = df[(df[y] > 0) & (df["gmacs"] > 0)].drop_duplicates(["library", "arch", "img_size"])
    if len(df) < 3:
        return None
    x, t = np.log10(df["gmacs"].to_numpy()), np.log10(df[y].to_numpy())
    b, a = np.polyfit(x, t, 1)
    pred = a + b * x
    ss_res, ss_tot = float(((t - pred) ** 2).sum()), float(((t - t.mean()) ** 2).sum())
    ratio = 10 ** (t - pred)  # measured / predicted
    residuals = df.assign(predicted=10 ** pred, ratio=ratio)
    return {"a": float(a), "b": float(b), "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
            "within": float(np.mean(np.abs(ratio - 1) <= WITHIN)), "n": len(df), "y": y,
            "residuals": residuals}


def misses(result: dict, ops: pd.DataFrame, n: int = 8) -> pd.DataFrame:
    """The ``n`` models the fit misses most (by |log ratio|), with the share of their reference
    MACs per op category."""
    res = result["residuals"].copy()
    res["miss"] = np.abs(np.log10(res["ratio"]))
    worst = res.sort_values("miss", ascending=False).head(n)
    ref = ops[ops["counter"] == "reference"]
    shares = ref.pivot_table(index=KEY, columns="category", values="gmacs", aggfunc="sum")
    shares = shares.div(shares.sum(axis=1), axis=0).fillna(0.0)

    def spent(key) -> str:
        if key not in shares.index:
            return ""
        row = shares.loc[key].sort_values(ascending=False)
        return ", ".join(f"{c} {100 * v:.0f}%" for c, v in row.items() if v >= 0.005)

    return pd.DataFrame({
        "model": worst["model"].values,
        "GMACs": worst["gmacs"].map("{:.3g}".format).values,
        "measured ms/image": worst[result["y"]].map("{:.3g}".format).values,
        "fit ms/image": worst["predicted"].map("{:.3g}".format).values,
        "measured / fit": worst["ratio"].map("{:.2f}".format).values,
        "MACs spent on": [spent(tuple(k)) for k in worst[KEY].itertuples(index=False)],
    })


def main_setup(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the set-up the page's figures show: the CPU set-up with the most threads in
    fp32 (the machine's own sweep), else the set-up with the most models."""
    setups = rows.groupby(SETUP)["arch"].nunique().reset_index(name="models")
    cpu = setups[(setups["device"] == "cpu") & (setups["precision"] == "fp32")]
    pick = (cpu.sort_values(["threads", "models"]).iloc[-1] if not cpu.empty
            else setups.sort_values("models").iloc[-1])
    mine = (rows[SETUP] == pick[SETUP].values).all(axis=1)
    return rows[mine]


def rank_correlation(rows: pd.DataFrame, published: pd.DataFrame) -> dict | None:
    """Spearman's rank correlation (Pearson's on average ranks) of batch-1 images per second here
    and in ``published`` (timm's benchmark: model, infer_img_size, infer_samples_per_sec at batch
    1), over timm models of the same architecture and image size; None under 3 shared models."""
    here = rows[(rows["library"] == "timm")].dropna(subset=["ms_per_image_b1"])
    here = here.assign(per_sec=1e3 / here["ms_per_image_b1"]).groupby(
        ["arch", "img_size"], as_index=False)["per_sec"].median()
    pub = published[published["infer_batch_size"] == 1].rename(
        columns={"model": "arch", "infer_img_size": "img_size"})
    pub = pub.groupby(["arch", "img_size"], as_index=False)["infer_samples_per_sec"].median()
    both = here.merge(pub, on=["arch", "img_size"])
    if len(both) < 3:
        return None
    rho = both["per_sec"].rank().corr(both["infer_samples_per_sec"].rank())
    return {"rho": float(rho), "n": len(both), "pairs": both}
