"""The HTML report's inline style sheet and script (no network, no CDN: it works from file://)."""

from __future__ import annotations

__all__ = ["FALSE_POSITIVE_COLORS", "SCRIPT", "SIZE_COLORS", "STYLE"]

#: Colours of the false-positive types in the error bars (colour-blind safe, Okabe-Ito).
FALSE_POSITIVE_COLORS = {
    "localization": "#E69F00",
    "confusion": "#56B4E9",
    "background": "#999999",
}
SIZE_COLORS = {"found": "#009E73", "missed": "#D55E00"}

STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #fafafa; }
header, section { max-width: 1180px; margin: 0 auto; padding: 8px 20px; }
header { border-bottom: 1px solid #ddd; }
h1 { font-size: 22px; margin: 12px 0 4px; }
h2 { font-size: 18px; margin: 18px 0 8px; border-bottom: 1px solid #e3e3e3; }
h3 { font-size: 15px; margin: 14px 0 6px; }
nav a { margin-right: 12px; }
.summary span { display: inline-block; margin-right: 18px; }
.summary b { font-size: 18px; }
table { border-collapse: collapse; background: #fff; }
th, td { padding: 3px 8px; border: 1px solid #e0e0e0; text-align: right; }
th { background: #f0f0f3; }
td.name, th.name { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
tfoot td { font-weight: bold; background: #f7f7f7; }
table.kv td { text-align: left; vertical-align: top; }
table.kv td:first-child { font-weight: bold; white-space: nowrap; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; }
svg { background: #fff; border: 1px solid #e6e6e6; font-size: 10px; }
svg .t { font-size: 11px; font-weight: bold; }
svg .frame { fill: none; stroke: #bbb; }
svg .raw { fill: none; stroke: #aaa; stroke-width: 1; }
svg .env { fill: none; stroke: #1f6fd1; stroke-width: 1.6; }
svg.bars text { font-size: 11px; }
table.confusion td { min-width: 28px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; background: #fff; border: 1px solid #e0e0e0; padding: 4px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #444; padding-top: 3px; }
.note { color: #555; font-size: 13px; }
.legend-gt { border: 2px dashed #000; padding: 0 4px; }
.legend-det { border: 2px solid #e6194b; padding: 0 4px; }
"""

# Sort a table by a clicked heading: numbers by value (a missing one, "-Infinity", sorts last
# when descending), text alphabetically; a second click reverses the order.
SCRIPT = """
(function () {
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, column) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        var text = th.getAttribute("data-type") === "text";
        rows.sort(function (a, b) {
          var x = a.cells[column].getAttribute("data-value");
          var y = b.cells[column].getAttribute("data-value");
          var c = text ? x.localeCompare(y) : parseFloat(x) - parseFloat(y);
          if (isNaN(c)) { c = 0; }
          return ascending ? c : -c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      });
    });
  });
})();
"""
