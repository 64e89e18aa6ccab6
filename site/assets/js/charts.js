// Draws every chart of a page with the bundled vega-embed (no network).
(function () {
  function draw() {
    window.zooCharts = window.zooCharts || {};
    document.querySelectorAll(".zoo-chart").forEach(function (el) {
      if (el.dataset.drawn) return;
      el.dataset.drawn = "1";
      var spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
      window.zooCharts[el.id] = vegaEmbed(el, spec, {
        renderer: "svg",
        actions: { export: true, source: false, compiled: false, editor: false },
      }).then(function (result) {
        // the export menu's toggle is an icon: give it a name a screen reader can say
        el.querySelectorAll("details > summary").forEach(function (s) {
          s.setAttribute("aria-label", "Download this chart");
        });
        el.dataset.ready = "1";
        return result;
      })
        .catch(function (err) { el.dataset.error = String(err); console.error(err); });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
