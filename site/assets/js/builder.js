// The paper-table builder (the page with #zoo-builder; nothing on other pages): pick models and
// columns from assets/data/models.json, and copy or download the table as LaTeX, Markdown or CSV
// with the BibTeX of the zoo and of the models' papers. The formatting rules are those of
// zoo/report/formats.py, implemented identically here (tests/test_site_builder.py compares them):
// change one, change both.
(function () {
  "use strict";

  // ---- the formatter (zoo/report/formats.py) ----------------------------------------------------
  var LONG = 40, TEXTWIDTH = 345.0, COLSEP = 12.0, MIN_TEXT = 100.0;
  var NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?$/;
  var LATEX_SPECIALS = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#",
    "_": "\\_", "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"};
  var BREAK_AFTER = "_./";
  var WRAP = function (w) { return ">{\\raggedright\\arraybackslash}p{" + Math.trunc(w) + "pt}"; };

  function charPt(ch) {
    if (ch >= "0" && ch <= "9") return 5.0;
    if (ch >= "a" && ch <= "z") return 5.3;
    if (ch >= "A" && ch <= "Z") return 7.5;
    if (".,:;!'|".indexOf(ch) >= 0) return 2.8;
    if (ch === " ") return 3.4;
    return 5.5;
  }
  function textPt(text) {
    var width = 0.0;
    for (var ch of text) width += charPt(ch);
    return width;
  }
  function length(text) { return Array.from(text).length; }
  function isMissing(v) {
    return v === null || v === undefined || v === "" || (typeof v === "number" && isNaN(v));
  }
  function isNumber(v) { return typeof v === "number"; }
  function columnDigits(values, digits) {
    var numbers = values.filter(function (v) { return isNumber(v) && !isMissing(v); });
    if (numbers.length && numbers.every(function (v) { return Number.isInteger(v); })) return 0;
    return digits;
  }
  function cell(value, digits) {
    if (isMissing(value)) return "";
    if (!isNumber(value)) return String(value);
    if (digits === null || digits === undefined) return String(value);
    var text = value.toFixed(digits);
    if (text[0] === "-" && !/[1-9]/.test(text)) text = text.slice(1);
    return text;
  }
  function cells(rows, digits) {
    return rows.map(function (row) {
      return row.map(function (v, i) { return cell(v, Array.isArray(digits) ? digits[i] : digits); });
    });
  }
  function numeric(texts) {
    var filled = texts.filter(function (t) { return t !== ""; });
    return filled.length > 0 && filled.every(function (t) { return NUMBER.test(t); });
  }
  function alignments(headers, body) {
    return headers.map(function (h, i) {
      return numeric(body.map(function (r) { return r[i]; })) ? "r" : "l";
    });
  }
  function escapeLatex(text, wrap) {
    var out = "";
    for (var ch of text) {
      out += Object.prototype.hasOwnProperty.call(LATEX_SPECIALS, ch) ? LATEX_SPECIALS[ch] : ch;
      if (wrap && BREAK_AFTER.indexOf(ch) >= 0) out += "\\allowbreak{}";
    }
    return out;
  }
  function layout(headers, body) {
    var aligns = alignments(headers, body);
    var natural = headers.map(function (h, i) {
      var widest = textPt(h);
      body.forEach(function (r) { widest = Math.max(widest, textPt(r[i])); });
      return widest;
    });
    var total = 0.0;
    natural.forEach(function (w) { total += w + COLSEP; });
    var texts = [];
    aligns.forEach(function (a, i) { if (a === "l") texts.push(i); });
    var wraps = headers.map(function () { return false; });
    if (total <= TEXTWIDTH || !texts.length) return [aligns, wraps];
    var room = TEXTWIDTH, i, k;
    for (i = 0; i < natural.length; i++) {
      room -= COLSEP;
      if (aligns[i] === "r") room -= natural[i];
    }
    var specs = aligns.slice(), pool = texts.slice(), settled = true, poolNatural;
    while (settled) {
      settled = false;
      poolNatural = 0.0;
      pool.forEach(function (j) { poolNatural += natural[j]; });
      for (k = 0; k < pool.length; k++) {
        i = pool[k];
        var share = room * natural[i] / poolNatural;
        if (natural[i] <= share || share < MIN_TEXT) {
          var width = natural[i] <= share ? natural[i] : Math.min(MIN_TEXT, natural[i]);
          room -= width;
          if (width < natural[i]) { specs[i] = WRAP(width); wraps[i] = true; }
          pool.splice(k, 1);
          settled = true;
          break;
        }
      }
    }
    poolNatural = 0.0;
    pool.forEach(function (j) { poolNatural += natural[j]; });
    pool.forEach(function (j) {
      specs[j] = WRAP(Math.floor(room * natural[j] / poolNatural));
      wraps[j] = true;
    });
    return [specs, wraps];
  }
  function latex(headers, body, caption, label, comment) {
    caption = caption || ""; label = label || ""; comment = comment || "";
    var lay = layout(headers, body), specs = lay[0], wraps = lay[1];
    var packages = ["booktabs"].concat(wraps.some(Boolean) ? ["array"] : [])
      .concat(body.length > LONG ? ["longtable"] : []);
    function line(row) {
      return row.map(function (t, i) { return escapeLatex(t, wraps[i]); }).join(" & ") + " \\\\";
    }
    var head = ["\\toprule", line(headers), "\\midrule"];
    var out = comment.split(/\r\n|\r|\n/).filter(function (c) { return c.trim(); })
      .map(function (c) { return "% " + c; });
    out.push("% requires: \\usepackage{" + packages.join(",") + "}");
    var cap = escapeLatex(caption, false);
    if (body.length > LONG) {
      out.push("\\begin{longtable}{" + specs.join("") + "}");
      out.push((caption ? "\\caption{" + cap + "}" : "") + (label ? "\\label{" + label + "}" : "")
               + "\\\\");
      out = out.concat(head, ["\\endfirsthead"], head, ["\\endhead", "\\bottomrule", "\\endlastfoot"]);
      out = out.concat(body.map(line), ["\\end{longtable}"]);
    } else {
      out.push("\\begin{table}[htbp]", "\\centering");
      if (caption) out.push("\\caption{" + cap + "}");
      if (label) out.push("\\label{" + label + "}");
      out.push("\\begin{tabular}{" + specs.join("") + "}");
      out = out.concat(head, body.map(line), ["\\bottomrule", "\\end{tabular}", "\\end{table}"]);
    }
    return out.join("\n") + "\n";
  }
  function markdown(headers, body, caption) {
    var aligns = alignments(headers, body);
    function esc(t) { return t.split("|").join("\\|"); }
    var head = headers.map(esc);
    var rows = body.map(function (r) { return r.map(esc); });
    var widths = head.map(function (h, i) {
      return Math.max.apply(null, [3, length(h)].concat(rows.map(function (r) { return length(r[i]); })));
    });
    function pad(t, i) {
      var fill = " ".repeat(widths[i] - length(t));
      return aligns[i] === "r" ? fill + t : t + fill;
    }
    function line(row) { return "| " + row.map(pad).join(" | ") + " |"; }
    var rule = "|" + widths.map(function (w, i) {
      return aligns[i] === "r" ? "-".repeat(w + 1) + ":" : ":" + "-".repeat(w + 1);
    }).join("|") + "|";
    var out = [line(head), rule].concat(rows.map(line));
    return out.join("\n") + "\n" + (caption ? "\n" + caption + "\n" : "");
  }
  function csv(headers, body) {
    function quote(t) { return /[",\r\n]/.test(t) ? '"' + t.split('"').join('""') + '"' : t; }
    return [headers].concat(body).map(function (r) { return r.map(quote).join(",") + "\n"; }).join("");
  }
  function render(fmt, headers, rows, digits, caption, label, comment) {
    var body = cells(rows, digits);
    if (fmt === "latex") return latex(headers, body, caption, label, comment);
    if (fmt === "markdown") return markdown(headers, body, caption);
    if (fmt === "csv") return csv(headers, body);
    throw new Error("no format " + fmt);
  }
  var ARXIV = /^(?:arxiv:\s*)?(\d{4}\.\d{4,5})(v\d+)?$/i;
  function bibtexEntry(paper, title) {
    var m = isMissing(paper) ? null : ARXIV.exec(String(paper).trim());
    if (!m) return "";
    var id = m[1], lines = ["@misc{arXiv:" + id + ","];
    if (!isMissing(title)) lines.push("  title         = {" + title + "},");
    lines.push("  eprint        = {" + id + "},", "  archivePrefix = {arXiv},",
               "  howpublished  = {arXiv:" + id + "},", "}");
    return lines.join("\n") + "\n";
  }
  function bibtex(zooEntry, papers, titles) {
    var out = [zooEntry], seen = {};
    papers.forEach(function (p, i) {
      var entry = bibtexEntry(p, titles ? titles[i] : null), key = entry.split(",")[0];
      if (entry && !seen[key]) { seen[key] = true; out.push(entry); }
    });
    return out.join("\n");
  }
  window.zooFormats = {render: render, cell: cell, columnDigits: columnDigits, latex: latex,
                       markdown: markdown, csv: csv, bibtex: bibtex};

  // ---- the page ---------------------------------------------------------------------------------
  var EXT = {latex: "tex", markdown: "md", csv: "csv"};
  var SRC = (document.currentScript && document.currentScript.src) || "";

  function start() {
    var root = document.getElementById("zoo-builder");
    if (!root || root.dataset.ready) return;
    var settings = JSON.parse(document.getElementById("builder-settings").textContent);
    var url = SRC ? new URL("../data/models.json", SRC).href : "../assets/data/models.json";
    fetch(url).then(function (r) { return r.json(); }).then(function (data) {
      setUp(root, settings, data);
    }).catch(function (e) {
      document.getElementById("builder-status").textContent = "Could not read models.json: " + e;
    });
  }

  function setUp(root, settings, data) {
    var $ = function (id) { return document.getElementById(id); };
    var cols = data.columns, at = {};
    cols.forEach(function (c, i) { at[c] = i; });
    var bySlug = {};
    data.rows.forEach(function (r) { bySlug[r[at.slug]] = r; });
    var state = {models: settings.models.filter(function (s) { return bySlug[s]; }),
                 columns: settings.columns.slice(), digits: settings.digits,
                 format: settings.format, caption: settings.caption};
    var q = new URLSearchParams(window.location.search);
    if (q.has("models")) state.models = q.get("models").split(",").filter(function (s) { return bySlug[s]; });
    if (q.has("columns")) state.columns = q.get("columns").split(",").filter(function (c) { return c in at; });
    if (q.has("digits")) state.digits = Math.max(0, Math.min(4, parseInt(q.get("digits"), 10) || 0));
    if (q.has("format") && EXT[q.get("format")]) state.format = q.get("format");
    if (q.has("caption")) state.caption = q.get("caption");

    // the models: one checkbox each, filtered by the search box
    var list = $("builder-models"), boxes = {};
    var frag = document.createDocumentFragment();
    data.rows.forEach(function (r) {
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox"; box.value = r[at.slug];
      box.dataset.model = r[at.model];
      label.appendChild(box);
      var extra = [r[at.library], isMissing(r[at.params_m]) ? "" : r[at.params_m].toFixed(1) + " M"];
      label.appendChild(document.createTextNode(" " + r[at.model] + " "));
      var small = document.createElement("small");
      small.textContent = extra.filter(Boolean).join(" · ");
      label.appendChild(small);
      label.dataset.search = (r[at.model] + " " + r[at.library] + " " + (r[at.family] || "")).toLowerCase();
      label.style.display = "block";
      boxes[r[at.slug]] = box;
      frag.appendChild(label);
    });
    list.appendChild(frag);
    list.addEventListener("change", function (e) {
      var slug = e.target.value;
      if (e.target.checked) { if (state.models.indexOf(slug) < 0) state.models.push(slug); }
      else state.models = state.models.filter(function (s) { return s !== slug; });
      update();
    });
    function filter() {
      var words = $("builder-search").value.toLowerCase().split(/\s+/).filter(Boolean), shown = 0;
      Array.prototype.forEach.call(list.children, function (label) {
        var hit = words.every(function (w) { return label.dataset.search.indexOf(w) >= 0; });
        label.style.display = hit ? "block" : "none";
        if (hit) shown++;
      });
      $("builder-count").textContent = shown + " of " + data.rows.length + " models";
    }
    $("builder-search").addEventListener("input", filter);
    $("builder-clear").addEventListener("click", function () { state.models = []; update(); });

    // the columns, in the JSON's order
    var fieldset = $("builder-columns");
    cols.forEach(function (c) {
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox"; box.value = c; box.checked = state.columns.indexOf(c) >= 0;
      box.addEventListener("change", function () {
        state.columns = cols.filter(function (k) {
          return fieldset.querySelector('input[value="' + k + '"]').checked;
        });
        update();
      });
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + data.labels[c] + " "));
      label.style.marginRight = "1em";
      label.style.display = "inline-block";
      fieldset.appendChild(label);
    });
    $("builder-digits").value = String(state.digits);
    $("builder-format").value = state.format;
    $("builder-caption").value = state.caption;
    $("builder-digits").addEventListener("change", function (e) { state.digits = parseInt(e.target.value, 10); update(); });
    $("builder-format").addEventListener("change", function (e) { state.format = e.target.value; update(); });
    $("builder-caption").addEventListener("input", function (e) { state.caption = e.target.value; update(); });

    var digitsOf = {};  // per column: 0 for a column of whole numbers (over every model)
    function columnDigits(c) {
      var key = c + ":" + state.digits;
      if (!(key in digitsOf)) {
        digitsOf[key] = columnDigits0(data.rows.map(function (r) { return r[at[c]]; }), state.digits);
      }
      return digitsOf[key];
    }
    var columnDigits0 = window.zooFormats.columnDigits;

    function table(fmt) {
      var chosen = cols.filter(function (c) { return state.columns.indexOf(c) >= 0; });
      var headers = chosen.map(function (c) { return data.labels[c]; });
      var rows = state.models.map(function (s) { return chosen.map(function (c) { return bySlug[s][at[c]]; }); });
      var caption = (state.caption.trim() ? state.caption.trim() + " " : "") + data.stamp;
      return render(fmt, headers, rows, chosen.map(columnDigits), caption, "tab:zoo-models", data.stamp);
    }
    function bib() {
      return bibtex(settings.bibtex, state.models.map(function (s) { return bySlug[s][at.paper]; }),
                    "paper_title" in at ? state.models.map(function (s) { return bySlug[s][at.paper_title]; }) : null);
    }

    function update() {
      Object.keys(boxes).forEach(function (s) { boxes[s].checked = false; });
      state.models.forEach(function (s) { boxes[s].checked = true; });
      $("builder-chosen").textContent = state.models.length
        ? state.models.map(function (s) { return bySlug[s][at.model]; }).join(", ") : "(none)";
      $("builder-output").value = table(state.format);
      $("builder-bib").value = bib();
      $("builder-status").textContent = "";
      var p = new URLSearchParams();
      p.set("models", state.models.join(","));
      p.set("columns", state.columns.join(","));
      p.set("digits", String(state.digits));
      p.set("format", state.format);
      if (state.caption !== settings.caption) p.set("caption", state.caption);
      history.replaceState(null, "", window.location.pathname + "?" + p.toString() + window.location.hash);
    }

    function copy(text, what) {
      function done() { $("builder-status").textContent = what + " copied"; }
      function fallback() {
        var area = document.createElement("textarea");
        area.value = text; document.body.appendChild(area); area.select();
        try { document.execCommand("copy"); done(); } catch (e) { $("builder-status").textContent = "Select the text and copy it"; }
        area.remove();
      }
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
      else fallback();
    }
    function download(text, name) {
      var a = document.createElement("a");
      a.href = "data:text/plain;charset=utf-8," + encodeURIComponent(text);
      a.download = name;
      document.body.appendChild(a); a.click(); a.remove();
    }
    $("builder-copy").addEventListener("click", function () { copy($("builder-output").value, "Table"); });
    $("builder-download").addEventListener("click", function () {
      download($("builder-output").value, "zoo-table." + EXT[state.format]);
    });
    $("builder-copy-bib").addEventListener("click", function () { copy($("builder-bib").value, "BibTeX"); });
    $("builder-download-bib").addEventListener("click", function () { download($("builder-bib").value, "zoo.bib"); });

    filter();
    update();
    root.dataset.ready = "1";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
