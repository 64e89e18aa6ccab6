// What the theme and the chart library leave unnamed, named for screen readers and keyboards:
// the search dialog, and tables wide enough to scroll (reachable with the keyboard).
(function () {
  function fix() {
    var search = document.querySelector(".md-search[role=dialog]");
    if (search && !search.getAttribute("aria-label")) search.setAttribute("aria-label", "Search");
    document.querySelectorAll(".md-typeset__scrollwrap").forEach(function (el) {
      if (!el.hasAttribute("tabindex")) {
        el.tabIndex = 0;
        el.setAttribute("role", "region");
        el.setAttribute("aria-label", "Table (scrolls sideways)");
      }
    });
  }
  // the theme wraps tables after the page loads: fix now, and again whenever it adds some
  function start() {
    fix();
    new MutationObserver(fix).observe(document.body, { childList: true, subtree: true });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
