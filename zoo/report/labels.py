"""Text labels placed next to chart points without overlapping each other, in pixel space.

A chart with a fixed width and height and fixed scale domains maps each datum to the same pixel
in the browser (vega-embed) and in the SVG/PDF exports (vl-convert), so labels can be placed
here, in Python, once: each label tries positions around its point, nearest first, and takes the
best one that stays inside the plot, overlaps no label placed before it, no labelled point and no
leader line; a label with no such position is dropped (and reported). Text widths are estimated
generously (DejaVu Sans, the widest of the usual sans-serif fonts), so a label drawn in a
narrower font only leaves more room.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FONT_SIZE = 10
LINE_HEIGHT = 1.25  # of the font size: the text's box height, descenders included

# advance widths in em, rounded up from DejaVu Sans
_NARROW = set("ijl.,:;|!'` ")
_SEMI = set("frtI()[]{}-/\\\"")
_WIDE = set("mwMW@%#&")


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """The width of ``text`` in pixels at ``size`` px, estimated on the generous side."""
    em = 0.0
    for ch in text:
        if ch in _NARROW:
            em += 0.32
        elif ch in _SEMI:
            em += 0.45
        elif ch in _WIDE:
            em += 1.0
        elif ch.isupper():
            em += 0.78
        elif ch == "_":
            em += 0.55
        else:
            em += 0.65
    return em * size + 2


@dataclass(frozen=True)
class Scale:
    """A continuous position scale: data value -> pixel, and back (no nice, no zero, no padding,
    as the chart declares it)."""

    domain: tuple[float, float]
    length: float
    log: bool = False
    flip: bool = False  # y: the domain's low end at the bottom

    def _t(self, v):
        return np.log10(v) if self.log else np.asarray(v, dtype=float)

    def __call__(self, v):
        lo, hi = self._t(self.domain[0]), self._t(self.domain[1])
        frac = (self._t(v) - lo) / (hi - lo)
        return self.length * ((1 - frac) if self.flip else frac)

    def invert(self, px):
        lo, hi = self._t(self.domain[0]), self._t(self.domain[1])
        frac = np.asarray(px, dtype=float) / self.length
        if self.flip:
            frac = 1 - frac
        t = lo + frac * (hi - lo)
        return 10 ** t if self.log else t


def log_domain(values, length: float, pad_px: float = 26, min_decades: float = 0.5) -> tuple:
    """A log scale's domain holding ``values`` with about ``pad_px`` pixels to spare each side."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return (0.01, 1000.0)
    lo, hi = math.log10(v.min()), math.log10(v.max())
    if hi - lo < min_decades:
        mid = (lo + hi) / 2
        lo, hi = mid - min_decades / 2, mid + min_decades / 2
    pad = (hi - lo) * pad_px / max(length - 2 * pad_px, 1)
    return (10 ** (lo - pad), 10 ** (hi + pad))


def linear_domain(values, length: float, pad_px: float = 26, min_span: float = 4.0) -> tuple:
    """A linear scale's domain holding ``values`` with about ``pad_px`` pixels to spare each side."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (50.0, 90.0)
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    pad = (hi - lo) * pad_px / max(length - 2 * pad_px, 1)
    return (lo - pad, hi + pad)


@dataclass
class Placed:
    key: object  # what the label names (the caller's row index)
    text: str
    cx: float  # the box's centre, pixels
    cy: float
    w: float
    h: float
    leader: tuple | None = None  # (x1, y1, x2, y2) pixels: from the point's edge to the box

    def box(self) -> tuple:
        return (self.cx - self.w / 2, self.cy - self.h / 2, self.cx + self.w / 2,
                self.cy + self.h / 2)


@dataclass
class Layout:
    placed: list[Placed] = field(default_factory=list)
    dropped: list[tuple] = field(default_factory=list)  # (key, text, reason)


def _boxes_overlap(a, b, margin=1.0) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _segment_hits_box(seg, box) -> bool:
    """Liang-Barsky: does the segment (x1, y1, x2, y2) enter the box (x0, y0, x1, y1)?"""
    x1, y1, x2, y2 = seg
    dx, dy = x2 - x1, y2 - y1
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x1 - box[0]), (dx, box[2] - x1), (-dy, y1 - box[1]), (dy, box[3] - y1)):
        if p == 0:
            if q < 0:
                return False
        else:
            t = q / p
            if p < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
            if t0 > t1:
                return False
    return True


def _segments_cross(a, b) -> bool:
    """Do the segments a and b (x1, y1, x2, y2) cross?"""
    def side(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    p1, p2, q1, q2 = a[:2], a[2:], b[:2], b[2:]
    return (side(p1, p2, q1) * side(p1, p2, q2) < 0) and (side(q1, q2, p1) * side(q1, q2, p2) < 0)


def _circles_in_box(box, px, py, r) -> np.ndarray:
    """Which circles (centres px, py; radii r) the box touches."""
    nx = np.clip(px, box[0], box[2])
    ny = np.clip(py, box[1], box[3])
    return (nx - px) ** 2 + (ny - py) ** 2 < r ** 2


GAPS = (2, 6, 12, 20, 32, 48, 70, 100)  # pixels between a point's edge and its label, nearest first
ANGLES = 24
HARD_RADIUS = 7
LINE_COST = 8  # per line a label crosses
OVERLAP_COST = 5  # per point a label covers, against 6 per ring farther out


def place(px, py, r, wanted: list[tuple], width: float, height: float,
          font_size: float = FONT_SIZE, obstacles: list[tuple] = (), avoid=None,
          lines: list[tuple] = ()) -> Layout:
    """Labels for the points ``wanted`` ((key, index into px/py/r, text), in order of priority).

    ``px``, ``py``, ``r``: every point drawn (pixels; r its radius), so that labels prefer empty
    space; ``obstacles``: boxes (x0, y0, x1, y1) no label may cover; ``avoid``: a boolean mask
    of points no label may cover (default: the labelled ones); ``lines``: segments (x1, y1, x2,
    y2) a label had better not cross (a frontier)."""
    px, py, r = (np.asarray(a, dtype=float) for a in (px, py, r))
    hard = np.zeros(len(px), bool) if avoid is None else np.asarray(avoid, bool).copy()
    if avoid is None:
        for _, i, _ in wanted:
            hard[i] = True
    layout = Layout()
    boxes = [tuple(o) for o in obstacles]
    leaders: list[tuple] = []
    core = np.minimum(r, HARD_RADIUS) + 1  # a label may cover a big bubble's rim, not its centre
    h = font_size * LINE_HEIGHT
    for key, i, text in wanted:
        w = text_width(text, font_size)
        best, best_score = None, math.inf
        for gi, gap in enumerate(GAPS):
            if best is not None and best_score < gi * 6:  # no farther ring can beat it
                break
            for ai in range(ANGLES):
                # right first, then up-right, up, ... around
                theta = -2 * math.pi * ai / ANGLES
                ux, uy = math.cos(theta), math.sin(theta)
                ax, ay = px[i] + (r[i] + gap) * ux, py[i] + (r[i] + gap) * uy
                x0 = ax if ux > 0.38 else (ax - w if ux < -0.38 else ax - w / 2)
                y0 = ay if uy > 0.38 else (ay - h if uy < -0.38 else ay - h / 2)
                box = (x0, y0, x0 + w, y0 + h)
                if box[0] < 1 or box[1] < 1 or box[2] > width - 1 or box[3] > height - 1:
                    continue
                if any(_boxes_overlap(box, b) for b in boxes):
                    continue
                hits = _circles_in_box(box, px, py, r + 1)
                if (_circles_in_box(box, px, py, core) & hard).any():
                    continue
                if any(_segment_hits_box(s, box) for s in leaders):
                    continue
                leader = None
                if gap > 7:
                    nx = min(max(px[i], box[0]), box[2])
                    ny = min(max(py[i], box[1]), box[3])
                    d = math.hypot(nx - px[i], ny - py[i]) or 1.0
                    leader = (px[i] + (nx - px[i]) * r[i] / d, py[i] + (ny - py[i]) * r[i] / d,
                              nx, ny)
                    if any(_segment_hits_box(leader, b) for b in boxes) or any(
                            _segments_cross(leader, s) for s in leaders):
                        continue
                score = (gi * 6 + ai * 0.05 + OVERLAP_COST * int(hits.sum())
                         + LINE_COST * sum(_segment_hits_box(s, box) for s in lines))
                if score < best_score:
                    best, best_score = (box, leader), score
        if best is None:
            layout.dropped.append((key, text, "no room without overlapping another label"))
            continue
        box, leader = best
        boxes.append(box)
        if leader is not None:
            leaders.append(leader)
        layout.placed.append(Placed(key, text, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                                    w, h, leader))
    return layout


def short_names(rows) -> list[str]:
    """Labels for models: the architecture, with the weights (less a leading ``IMAGENET1K_``)
    where two labelled models share it, and the image size where that is not enough either."""
    rows = list(rows)
    names = [r["arch"] for r in rows]
    for step in (lambda r: f"{r['arch']}.{str(r['weights']).removeprefix('IMAGENET1K_')}",
                 lambda r: f"{r['arch']}.{str(r['weights']).removeprefix('IMAGENET1K_')} "
                           f"@{r['img_size']}"):
        seen: dict[str, int] = {}
        for n in names:
            seen[n] = seen.get(n, 0) + 1
        names = [step(r) if seen[n] > 1 else n for r, n in zip(rows, names)]
    return names
