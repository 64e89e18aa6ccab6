"""One table, three formats: the rules that turn rows into LaTeX (booktabs), Markdown and CSV.

The site's exports (``build.export_table``) and the paper-table builder (``site/assets/js/
builder.js``, which implements these same rules in JavaScript) both write their tables here, so
that a table built in the page is the table the build writes for the same rows. Change a rule in
both places; ``tests/test_site_builder.py`` compares the two outputs.

The rules:

- a cell: empty for a missing value; a number rounded half away from zero (as JavaScript's
  ``toFixed``) to the column's digits, a number of a column of whole numbers without decimals,
  a rounded zero without a sign; text as it is;
- a column is numeric (right-aligned: ``r``, Markdown ``---:``) when every non-empty cell is a
  number, else text (``l``);
- LaTeX: specials escaped (``\\ & % $ # _ { } ~ ^``); booktabs rules; a caption and a label;
  ``longtable`` above ``LONG`` rows; a table wider than the page (``TEXTWIDTH``, estimated from
  ``CHAR_PT``) wraps its text columns (``p`` columns that may break after ``_ . /``);
- Markdown: a pipe table padded to its columns' widths, ``|`` escaped, the caption below;
- CSV: RFC 4180 (quotes where a cell holds a comma, a quote or a line break), ``\\n`` line ends.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Context, Decimal

LONG = 40  # rows above which a LaTeX table is a longtable (it breaks across pages)
TEXTWIDTH = 345.0  # pt: the text width of \documentclass{article} at 10pt
COLSEP = 12.0  # pt: 2 \tabcolsep
MIN_TEXT = 100.0  # pt: the narrowest a wrapped text column gets
NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?$")
LATEX_SPECIALS = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#",
                  "_": "\\_", "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}",
                  "^": "\\textasciicircum{}"}
BREAK_AFTER = "_./"  # where a wrapped LaTeX text cell may break


def char_pt(ch: str) -> float:
    """An estimate of a character's width in pt (Computer Modern, 10pt), a little generous."""
    if "0" <= ch <= "9":
        return 5.0
    if "a" <= ch <= "z":
        return 5.3
    if "A" <= ch <= "Z":
        return 7.5
    if ch in ".,:;!'|":
        return 2.8
    if ch == " ":
        return 3.4
    return 5.5


def text_pt(text: str) -> float:
    width = 0.0
    for ch in text:
        width += char_pt(ch)
    return width


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def column_digits(values, digits: int) -> int:
    """The digits of a column of ``values``: 0 when every number in it is whole, else ``digits``."""
    numbers = [v for v in values if is_number(v) and not is_missing(v)]
    if numbers and all(float(v).is_integer() for v in numbers):
        return 0
    return digits


def cell(value, digits: int | None = None) -> str:
    """A value as the text of a cell (see the module's rules)."""
    if is_missing(value):
        return ""
    if not is_number(value):
        return str(value)
    if digits is None:
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    exact = Decimal(float(value))  # the double's exact value, as toFixed rounds it
    step = Decimal(1).scaleb(-digits)
    text = format(exact.quantize(step, rounding=ROUND_HALF_UP, context=Context(prec=80)), "f")
    if text.startswith("-") and not text.strip("-0."):
        text = text[1:]
    return text


def cells(rows, digits=None) -> list[list[str]]:
    """``rows`` (lists of values) as text; ``digits`` one for every column, a list, or None."""
    out = []
    for row in rows:
        each = digits if isinstance(digits, list) else [digits] * len(row)
        out.append([cell(v, d) for v, d in zip(row, each)])
    return out


def numeric(texts: list[str]) -> bool:
    filled = [t for t in texts if t != ""]
    return len(filled) > 0 and all(NUMBER.match(t) for t in filled)


def alignments(headers: list[str], body: list[list[str]]) -> list[str]:
    return ["r" if numeric([r[i] for r in body]) else "l" for i in range(len(headers))]


def escape_latex(text: str, wrap: bool = False) -> str:
    out = ""
    for ch in text:
        out += LATEX_SPECIALS.get(ch, ch)
        if wrap and ch in BREAK_AFTER:
            out += "\\allowbreak{}"
    return out


def layout(headers: list[str], body: list[list[str]]) -> tuple[list[str], list[bool]]:
    """Each column's LaTeX spec, and whether it wraps: a table that fits stays ``l``/``r``; one
    wider than ``TEXTWIDTH`` shares what the numbers leave among its text columns."""
    aligns = alignments(headers, body)
    natural = []
    for i, h in enumerate(headers):
        widest = text_pt(h)
        for r in body:
            widest = max(widest, text_pt(r[i]))
        natural.append(widest)
    total = 0.0
    for w in natural:
        total += w + COLSEP
    texts = [i for i, a in enumerate(aligns) if a == "l"]
    if total <= TEXTWIDTH or not texts:
        return aligns, [False] * len(headers)
    room = TEXTWIDTH
    text_natural = 0.0
    for i, w in enumerate(natural):
        room -= COLSEP
        if aligns[i] == "r":
            room -= w
        else:
            text_natural += w
    # a text column narrower than its share keeps its width; one whose share is under MIN_TEXT
    # gets MIN_TEXT; the others share what is left, in proportion to their widths
    specs, wraps = list(aligns), [False] * len(headers)
    pool = list(texts)
    settled = True
    while settled:
        settled = False
        pool_natural = 0.0
        for i in pool:
            pool_natural += natural[i]
        for i in pool:
            share = room * natural[i] / pool_natural
            if natural[i] <= share or share < MIN_TEXT:
                width = natural[i] if natural[i] <= share else min(MIN_TEXT, natural[i])
                room -= width
                if width < natural[i]:
                    specs[i] = f">{{\\raggedright\\arraybackslash}}p{{{int(width)}pt}}"
                    wraps[i] = True
                pool.remove(i)
                settled = True
                break
    pool_natural = 0.0
    for i in pool:
        pool_natural += natural[i]
    for i in pool:
        width = math.floor(room * natural[i] / pool_natural)
        specs[i] = f">{{\\raggedright\\arraybackslash}}p{{{int(width)}pt}}"
        wraps[i] = True
    return specs, wraps


def latex(headers: list[str], body: list[list[str]], caption: str = "", label: str = "",
          comment: str = "") -> str:
    """A booktabs table (a longtable above ``LONG`` rows) of cells already as text."""
    specs, wraps = layout(headers, body)
    packages = ["booktabs"] + (["array"] if any(wraps) else []) + (["longtable"] if len(body) > LONG
                                                                   else [])

    def line(row):
        return " & ".join(escape_latex(t, w) for t, w in zip(row, wraps)) + " \\\\"

    head = ["\\toprule", line(headers), "\\midrule"]
    out = [f"% {c}" for c in comment.splitlines() if c.strip()]
    out.append(f"% requires: \\usepackage{{{','.join(packages)}}}")
    cap = escape_latex(caption)
    if len(body) > LONG:
        out += [f"\\begin{{longtable}}{{{''.join(specs)}}}",
                (f"\\caption{{{cap}}}" if caption else "")
                + (f"\\label{{{label}}}" if label else "") + "\\\\"]
        out += head + ["\\endfirsthead"] + head + ["\\endhead", "\\bottomrule", "\\endlastfoot"]
        out += [line(r) for r in body] + ["\\end{longtable}"]
    else:
        out += ["\\begin{table}[htbp]", "\\centering"]
        out += [f"\\caption{{{cap}}}"] if caption else []
        out += [f"\\label{{{label}}}"] if label else []
        out += [f"\\begin{{tabular}}{{{''.join(specs)}}}"] + head
        out += [line(r) for r in body] + ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(out) + "\n"


def markdown(headers: list[str], body: list[list[str]], caption: str = "") -> str:
    """A pipe table padded to its columns' widths; the caption below it."""
    aligns = alignments(headers, body)

    def esc(t):
        return t.replace("|", "\\|")

    head = [esc(h) for h in headers]
    rows = [[esc(t) for t in r] for r in body]
    widths = []
    for i, h in enumerate(head):
        widths.append(max([3, len(h)] + [len(r[i]) for r in rows]))

    def pad(t, i):
        fill = " " * (widths[i] - len(t))
        return fill + t if aligns[i] == "r" else t + fill

    def line(row):
        return "| " + " | ".join(pad(t, i) for i, t in enumerate(row)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
                          for w, a in zip(widths, aligns)) + "|"
    out = [line(head), rule] + [line(r) for r in rows]
    return "\n".join(out) + "\n" + (f"\n{caption}\n" if caption else "")


def csv(headers: list[str], body: list[list[str]]) -> str:
    def quote(t):
        return '"' + t.replace('"', '""') + '"' if re.search(r'[",\r\n]', t) else t

    return "".join(",".join(quote(t) for t in row) + "\n" for row in [headers] + body)


def render(fmt: str, headers: list[str], rows, digits=None, caption: str = "", label: str = "",
           comment: str = "") -> str:
    """``rows`` (values) as ``fmt`` ("latex", "markdown" or "csv"), numbers to ``digits``."""
    body = cells(rows, digits)
    if fmt == "latex":
        return latex(headers, body, caption, label, comment)
    if fmt == "markdown":
        return markdown(headers, body, caption)
    if fmt == "csv":
        return csv(headers, body)
    raise ValueError(f"no format {fmt!r}: latex, markdown or csv")


# ---- the paper version of a table: the columns a page of an article holds ------------------------

# short headers for the data's column names
PAPER_HEADERS = {"params_m": "params (M)", "gmacs": "GMACs", "top1": "top-1 (%)",
                 "top5": "top-5 (%)", "img_size": "image (px)", "gflops_train": "train GFLOPs"}
# the columns of a named export's paper version, where the rule below would choose worse
PAPER_COLUMNS = {"zoo": ["model", "params_m", "gmacs", "top1"],
                 "fit-.*": ["model", "RTX 3060 12GB", "T4", "RTX 4090", "A100 40GB", "H100", "H200"],
                 "latency-table": ["model", "set-up", "GMACs", "ms/image, batch 1", "top-1"]}
LONG_TEXT = 40  # characters: a text column with a longer cell (a source) stays in the CSV


def paper_view(headers: list[str], body: list[list[str]], name: str = ""):
    """The columns of a table that fit an article's page: ``arch`` and ``weights`` joined as
    ``model``; the export's ``PAPER_COLUMNS`` if named, else every column but long text (sources),
    then columns dropped from the right until it fits. Returns (headers, body, the names of the
    columns left out)."""
    cols = {h: [r[i] for r in body] for i, h in enumerate(headers)}
    order = list(headers)
    if "arch" in cols and "weights" in cols and "model" not in cols:
        cols["model"] = [a + ("." + w if w else "") for a, w in zip(cols["arch"], cols["weights"])]
        at = order.index("arch")
        order = order[:at] + ["model"] + [h for h in order[at:] if h not in ("arch", "weights")]
    chosen = next((v for k, v in PAPER_COLUMNS.items() if re.fullmatch(k, name)), None)
    if chosen:
        keep = [h for h in chosen if h in cols]
    else:
        keep = [h for h in order if numeric(cols[h]) or h == order[0]
                or max([len(t) for t in cols[h]] + [0]) <= LONG_TEXT]

    def width_needed(names):
        need = 0.0
        for h in names:
            values = [PAPER_HEADERS.get(h, h)] + cols[h]
            w = max(text_pt(t) for t in values)
            need += COLSEP + (w if numeric(cols[h]) else min(w, MIN_TEXT))
        return need

    while len(keep) > 1 and width_needed(keep) > TEXTWIDTH:
        keep.pop()
    left_out = [h for h in order if h not in keep]
    out_body = [[cols[h][i] for h in keep] for i in range(len(body))]
    return [PAPER_HEADERS.get(h, h) for h in keep], out_body, left_out


# ---- BibTeX ---------------------------------------------------------------------------------------

ARXIV = re.compile(r"^(?:arxiv:\s*)?(\d{4}\.\d{4,5})(v\d+)?$", re.I)


def bibtex_entry(paper, title=None) -> str:
    """The BibTeX entry of a model's paper (``arXiv:NNNN.NNNNN``), keyed ``arXiv:NNNN.NNNNN``;
    "" for anything else (or nothing). The title only where the data gives one."""
    m = ARXIV.match(str(paper).strip()) if not is_missing(paper) else None
    if not m:
        return ""
    ident = m.group(1)
    lines = [f"@misc{{arXiv:{ident},"]
    if not is_missing(title):
        lines.append(f"  title         = {{{title}}},")
    lines += [f"  eprint        = {{{ident}}},", "  archivePrefix = {arXiv},",
              f"  howpublished  = {{arXiv:{ident}}},", "}"]
    return "\n".join(lines) + "\n"


def bibtex(zoo_entry: str, papers, titles=None) -> str:
    """The zoo's entry, then one entry per distinct paper of ``papers`` in their order."""
    out, seen = [zoo_entry], set()
    for i, paper in enumerate(papers):
        entry = bibtex_entry(paper, titles[i] if titles else None)
        if entry and entry.split(",")[0] not in seen:
            seen.add(entry.split(",")[0])
            out.append(entry)
    return "\n".join(out)
