// The Compare page: pick two to six models of assets/data/models.json, see every figure side by
// side and the picks drawn over the zoo's accuracy-vs-GMACs chart. The picks live in the URL
// (?m=slug1,slug2), so that a link shows the same comparison. Does nothing on other pages.
(function () {
  var script = document.currentScript;
  var DIGITS = { params_m: 2, gmacs: 3, gmacs_thop: 3, gmacs_fvcore: 3, gmacs_torch: 3,
                 gflops_train: 2, top1: 2, top5: 2, cpu_ms_b1: 2 };
  // per figure, which way is better (marked in bold when two or more models have it)
  var LOWER = ["params_m", "gmacs", "gmacs_thop", "gmacs_fvcore", "gmacs_torch", "gflops_train",
               "cpu_ms_b1"];
  var HIGHER = ["top1", "top5", "train_amp_bf16_adamw_rtx_4090", "train_amp_bf16_adamw_h100",
                "infer_fp32_rtx_4090", "infer_fp32_h100"];
  var BATCH = /^(train|infer)_/;
  var SHOWN = 30;  // search results listed at once

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function start(root) {
    var base = new URL("../../", script.src);  // the site's root: scripts are in assets/js/
    var max = parseInt(root.dataset.max, 10) || 6;
    var maxBatch = parseInt(root.dataset.maxBatch, 10) || Infinity;
    var search = document.getElementById("compare-search");
    var results = document.getElementById("compare-results");
    var pickedBox = document.getElementById("compare-picked");
    var status = document.getElementById("compare-status");
    var tableBox = document.getElementById("compare-table");
    var models = [], bySlug = {}, labels = {}, columns = [], picked = [];

    function name(m) { return m.model + " (" + m.library + ", " + m.img_size + " px)"; }

    function cell(col, m) {
      var v = m[col];
      if (col === "page") {
        if (!v) return el("span", {}, "no page (outside the default zoo)");
        return el("a", { href: new URL(v, base).href }, "model page");
      }
      if (v === null || v === undefined || v === "") {
        if (col === "license") return el("span", {}, "not stated by the library");
        return el("span", { "class": "zoo-none" }, "—");
      }
      if (col === "paper" && /^arxiv:/i.test(v)) {
        return el("a", { href: "https://arxiv.org/abs/" + v.split(":")[1] }, v);
      }
      if (col === "load") return el("code", {}, v);
      if (typeof v === "number") {
        if (col in DIGITS) return el("span", {}, v.toFixed(DIGITS[col]));
        if (BATCH.test(col) && v >= maxBatch) return el("span", {}, ">=" + v);
        return el("span", {}, String(v));
      }
      return el("span", {}, String(v));
    }

    function best(col, shown) {
      var values = shown.map(function (m) { return m[col]; })
        .filter(function (v) { return typeof v === "number"; });
      if (values.length < 2) return null;
      if (LOWER.indexOf(col) >= 0) return Math.min.apply(null, values);
      if (HIGHER.indexOf(col) >= 0) return Math.max.apply(null, values);
      return null;
    }

    function renderTable(shown) {
      tableBox.textContent = "";
      if (!shown.length) return;
      var table = el("table", { "class": "zoo-compare-table", id: "compare-grid" });
      var head = table.createTHead().insertRow();
      head.appendChild(el("th", {}, ""));
      shown.forEach(function (m) {
        var th = el("th", { scope: "col", "data-slug": m.slug });
        th.appendChild(m.page ? el("a", { href: new URL(m.page, base).href }, m.model)
                              : el("span", {}, m.model));
        var remove = el("button", { type: "button", "class": "zoo-compare-remove",
                                    "aria-label": "remove " + m.model, title: "remove" }, "×");
        remove.addEventListener("click", function () { drop(m.slug); });
        th.appendChild(remove);
        head.appendChild(th);
      });
      var body = table.createTBody();
      columns.forEach(function (col) {
        var row = body.insertRow();
        row.dataset.column = col;
        row.appendChild(el("th", { scope: "row" }, labels[col] || col));
        var top = best(col, shown);
        shown.forEach(function (m) {
          var td = row.insertCell();
          td.appendChild(cell(col, m));
          if (top !== null && m[col] === top) td.className = "best";
        });
      });
      tableBox.appendChild(table);
    }

    function renderPicked(shown) {
      pickedBox.textContent = "";
      shown.forEach(function (m) {
        var chip = el("span", { "class": "zoo-compare-chip", "data-slug": m.slug }, m.model + " ");
        var remove = el("button", { type: "button", "aria-label": "remove " + m.model,
                                    title: "remove" }, "×");
        remove.addEventListener("click", function () { drop(m.slug); });
        chip.appendChild(remove);
        pickedBox.appendChild(chip);
      });
    }

    function chart(shown) {
      var id = "chart-compare";
      var rows = shown.filter(function (m) {
        return typeof m.top1 === "number" && typeof m.gmacs === "number";
      });
      function update() {
        var pending = window.zooCharts && window.zooCharts[id];
        if (!pending) return Promise.reject(new Error("no chart"));
        return pending.then(function (result) {
          return result.view.data("picked", rows.map(function (m) {
            return { model: m.model, library: m.library, weights: m.weights,
                     img_size: m.img_size, params_m: m.params_m, gmacs: m.gmacs, top1: m.top1,
                     acc_source: m.acc_source };
          })).runAsync();
        });
      }
      return update().catch(function () {  // the chart's script has not started it yet
        return new Promise(function (resolve) { setTimeout(resolve, 200); }).then(update);
      });
    }

    function render(push) {
      var shown = picked.map(function (s) { return bySlug[s]; });
      renderPicked(shown);
      renderTable(shown);
      var noAcc = shown.filter(function (m) { return typeof m.top1 !== "number"; });
      status.textContent = (shown.length < 2
        ? "Pick " + (shown.length ? "at least one more model" : "two to six models") + " to compare."
        : shown.length + " models side by side" + (shown.length >= max ? " (at most " + max + ")" : "") + ".")
        + (noAcc.length ? " Not on the chart (no published top-1): "
           + noAcc.map(function (m) { return m.model; }).join(", ") + "." : "");
      if (push) {
        var url = location.pathname + (picked.length ? "?m=" + picked.join(",") : "") + location.hash;
        history.replaceState(null, "", url);
      }
      root.dataset.shown = "";
      chart(shown).then(function () { root.dataset.shown = picked.join(","); },
                        function (err) { console.error(err); });
    }

    function add(slug) {
      if (!bySlug[slug] || picked.indexOf(slug) >= 0) return;
      if (picked.length >= max) {
        status.textContent = "At most " + max + " models: remove one first.";
        return;
      }
      picked.push(slug);
      render(true);
    }

    function drop(slug) {
      picked = picked.filter(function (s) { return s !== slug; });
      render(true);
    }

    function matches(q) {
      var terms = q.toLowerCase().split(/\s+/).filter(Boolean);
      if (!terms.length) return [];
      return models.filter(function (m) {
        var text = (m.slug + " " + m.model + " " + m.family).toLowerCase();
        return picked.indexOf(m.slug) < 0 && terms.every(function (t) { return text.indexOf(t) >= 0; });
      });
    }

    function listResults() {
      var found = matches(search.value);
      results.textContent = "";
      found.slice(0, SHOWN).forEach(function (m) {
        var li = el("li");
        var button = el("button", { type: "button", "data-slug": m.slug }, name(m));
        button.addEventListener("click", function () {
          add(m.slug);
          search.value = "";
          results.textContent = "";
          search.focus();
        });
        li.appendChild(button);
        results.appendChild(li);
      });
      if (found.length > SHOWN) {
        results.appendChild(el("li", { "class": "zoo-compare-more" },
                               (found.length - SHOWN) + " more: type more of the name"));
      }
    }

    fetch(new URL("assets/data/models.json", base).href)
      .then(function (r) { return r.json(); })
      .then(function (data) {
        columns = data.columns;
        labels = data.labels;
        models = data.rows.map(function (row) {
          var m = {};
          data.columns.forEach(function (c, i) { m[c] = row[i]; });
          return m;
        });
        // the default zoo's models (those with a page) first, then by name
        models.sort(function (a, b) {
          return (!a.page - !b.page) || (a.model < b.model ? -1 : a.model > b.model ? 1 : 0);
        });
        models.forEach(function (m) { bySlug[m.slug] = m; });
        var asked = (new URLSearchParams(location.search).get("m") || "").split(",")
          .map(function (s) { return s.trim(); }).filter(Boolean);
        var unknown = asked.filter(function (s) { return !bySlug[s]; });
        asked.forEach(function (s) {
          if (bySlug[s] && picked.indexOf(s) < 0 && picked.length < max) picked.push(s);
        });
        search.disabled = false;
        search.addEventListener("input", listResults);
        search.addEventListener("keydown", function (e) {
          if (e.key !== "Enter") return;
          e.preventDefault();
          var first = results.querySelector("button[data-slug]");
          if (first) first.click();
        });
        render(unknown.length > 0);
        if (unknown.length) {
          status.textContent += " Not in this site's data: " + unknown.join(", ") + ".";
        }
      })
      .catch(function (err) {
        status.textContent = "Could not read the table of models: " + err;
        console.error(err);
      });
  }

  function init() {
    var root = document.getElementById("zoo-compare");
    if (root) start(root);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
