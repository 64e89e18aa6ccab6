// Sortable, filterable tables: click a header to sort (numbers as numbers), type to filter rows.
(function () {
  function value(cell) {
    var text = cell.textContent.trim().replace(/,/g, "");
    var num = parseFloat(text);
    return text !== "" && !isNaN(num) && /^-?[\d.]+(e[-+]?\d+)?$/i.test(text) ? num : cell.textContent.trim().toLowerCase();
  }
  function sortable(table) {
    var body = table.tBodies[0];
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.style.cursor = "pointer";
      th.title = "sort";
      th.addEventListener("click", function () {
        var asc = th.dataset.order !== "asc";
        th.dataset.order = asc ? "asc" : "desc";
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = value(a.cells[col]), y = value(b.cells[col]);
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
    if (body.rows.length > 12) {
      var box = document.createElement("input");
      box.type = "search";
      box.placeholder = "Filter rows";
      box.className = "zoo-filter";
      box.addEventListener("input", function () {
        var q = box.value.toLowerCase();
        Array.prototype.forEach.call(body.rows, function (r) {
          r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
        });
      });
      table.parentNode.insertBefore(box, table);
    }
  }
  function init() {
    document.querySelectorAll(".md-typeset table").forEach(function (t) {
      if (t.tHead && t.tBodies.length && !t.dataset.sortable) { t.dataset.sortable = "1"; sortable(t); }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
