/* Tiny SVG charts for the dashboard: axes, lines, bars, a reliability diagram. No dependencies. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 520, H = 260, M = { top: 14, right: 16, bottom: 40, left: 48 };
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626", "#4b5563"];

  function s(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) { n.setAttribute(k, v); });
    if (text !== undefined) n.textContent = String(text);
    return n;
  }

  function frame(container, opts) {
    const svg = s("svg", { viewBox: "0 0 " + W + " " + H, class: "svg-chart", preserveAspectRatio: "xMidYMid meet" });
    const x0 = opts.x0 === undefined ? 0 : opts.x0, x1 = opts.x1 === undefined ? 1 : opts.x1;
    const y0 = opts.y0 === undefined ? 0 : opts.y0, y1 = opts.y1 === undefined ? 1 : opts.y1;
    const sx = function (v) { return M.left + (W - M.left - M.right) * (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)); };
    const sy = function (v) { return H - M.bottom - (H - M.top - M.bottom) * (y1 === y0 ? 0 : (v - y0) / (y1 - y0)); };
    const grid = s("g", { class: "grid" });
    for (let i = 0; i <= 4; i++) {
      const v = y0 + (y1 - y0) * i / 4;
      grid.appendChild(s("line", { x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v) }));
      grid.appendChild(s("text", { x: M.left - 6, y: sy(v) + 4, "text-anchor": "end" }, opts.yFormat ? opts.yFormat(v) : fmt(v)));
    }
    if (!opts.noXTicks) {
      for (let i = 0; i <= 4; i++) {
        const v = x0 + (x1 - x0) * i / 4;
        grid.appendChild(s("text", { x: sx(v), y: H - M.bottom + 16, "text-anchor": "middle" }, opts.xFormat ? opts.xFormat(v) : fmt(v)));
      }
    }
    svg.appendChild(grid);
    svg.appendChild(s("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
    if (opts.xLabel) svg.appendChild(s("text", { class: "axis-label", x: (W + M.left) / 2, y: H - 6, "text-anchor": "middle" }, opts.xLabel));
    if (opts.yLabel) svg.appendChild(s("text", { class: "axis-label", x: 12, y: (H - M.bottom) / 2, transform: "rotate(-90 12 " + (H - M.bottom) / 2 + ")", "text-anchor": "middle" }, opts.yLabel));
    container.replaceChildren(svg);
    return { svg: svg, sx: sx, sy: sy };
  }

  function fmt(v) {
    if (Math.abs(v) >= 1000) return (v / 1000).toFixed(1) + "k";
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) < 10 ? v.toFixed(2) : v.toFixed(0);
  }

  function empty(container, text) {
    container.replaceChildren(Object.assign(document.createElement("p"), { className: "chart-empty", textContent: text }));
  }

  function legend(svg, items) {
    let x = M.left;
    items.forEach(function (it) {
      svg.appendChild(s("rect", { x: x, y: 2, width: 10, height: 10, rx: 2, fill: it.color }));
      svg.appendChild(s("text", { x: x + 14, y: 11, class: "legend-text" }, it.name));
      x += 24 + it.name.length * 6.5;
    });
  }

  /* series: [{name, color, points: [{x, y, title}]}] */
  function lineChart(container, series, opts) {
    const pts = series.flatMap(function (se) { return se.points; });
    if (!pts.length) { empty(container, opts.emptyText || "No data yet."); return; }
    let x0 = Math.min.apply(null, pts.map(function (p) { return p.x; }));
    let x1 = Math.max.apply(null, pts.map(function (p) { return p.x; }));
    if (x0 === x1) { x0 = Math.max(0, x0 - 1); x1 += 1; }
    const f = frame(container, Object.assign({ x0: x0, x1: x1, y0: 0, y1: 1 }, opts));
    series.forEach(function (se) {
      const ps = se.points.filter(function (p) { return p.y !== null && p.y !== undefined; });
      if (ps.length > 1) f.svg.appendChild(s("polyline", { class: "series", stroke: se.color, points: ps.map(function (p) { return f.sx(p.x) + "," + f.sy(p.y); }).join(" ") }));
      ps.forEach(function (p) {
        const c = s("circle", { cx: f.sx(p.x), cy: f.sy(p.y), r: 4, fill: se.color });
        c.appendChild(s("title", {}, se.name + ": " + p.title));
        f.svg.appendChild(c);
      });
    });
    legend(f.svg, series);
  }

  /* bins: [{lower, upper, count}] as vertical bars */
  function histogram(container, bins, opts) {
    if (!bins.length) { empty(container, opts.emptyText || "No data yet."); return; }
    const maxC = Math.max(1, Math.max.apply(null, bins.map(function (b) { return b.count; })));
    const f = frame(container, Object.assign({ x0: bins[0].lower, x1: bins[bins.length - 1].upper, y0: 0, y1: maxC,
      yFormat: function (v) { return fmt(Math.round(v)); } }, opts));
    bins.forEach(function (b) {
      const r = s("rect", { class: "bar", x: f.sx(b.lower) + 1, width: Math.max(1, f.sx(b.upper) - f.sx(b.lower) - 2),
        y: f.sy(b.count), height: f.sy(0) - f.sy(b.count), fill: opts.color || PALETTE[0] });
      r.appendChild(s("title", {}, (opts.binLabel ? opts.binLabel(b) : fmt(b.lower) + "–" + fmt(b.upper)) + ": " + b.count));
      f.svg.appendChild(r);
    });
  }

  /* bars: [{name, value, color}] horizontal, labelled */
  function hbars(container, bars, opts) {
    if (!bars.length) { empty(container, opts.emptyText || "No data yet."); return; }
    const total = bars.reduce(function (a, b) { return a + b.value; }, 0) || 1;
    const max = Math.max.apply(null, bars.map(function (b) { return b.value; })) || 1;
    const rowH = 28, h = bars.length * rowH + 8, labelW = 130;
    const svg = s("svg", { viewBox: "0 0 " + W + " " + h, class: "svg-chart" });
    bars.forEach(function (b, i) {
      const y = 4 + i * rowH;
      svg.appendChild(s("text", { x: labelW - 8, y: y + 17, "text-anchor": "end", class: "bar-label" }, b.name.length > 18 ? b.name.slice(0, 17) + "…" : b.name));
      const w = (W - labelW - 90) * b.value / max;
      svg.appendChild(s("rect", { x: labelW, y: y + 4, width: Math.max(1, w), height: rowH - 10, rx: 3, fill: b.color || PALETTE[i % PALETTE.length] }));
      svg.appendChild(s("text", { x: labelW + w + 6, y: y + 17, class: "bar-value" }, b.value + " (" + Math.round(100 * b.value / total) + "%)"));
    });
    container.replaceChildren(svg);
  }

  /* before/after: [{lower, upper, count, confidence, accuracy}] */
  function reliability(container, before, after) {
    if (!before.length && !after.length) { empty(container, "No calibration data for this model."); return; }
    const f = frame(container, { x0: 0, x1: 1, y0: 0, y1: 1, xLabel: "confidence", yLabel: "accuracy" });
    f.svg.appendChild(s("line", { class: "diagonal", x1: f.sx(0), y1: f.sy(0), x2: f.sx(1), y2: f.sy(1) }));
    const series = [{ name: "before calibration", color: "#9ca3af", bins: before }, { name: "after calibration", color: PALETTE[0], bins: after }];
    series.forEach(function (se, k) {
      se.bins.forEach(function (b) {
        if (!b.count) return;
        const width = (f.sx(b.upper) - f.sx(b.lower)) / 2 - 1;
        const x = f.sx(b.lower) + 1 + k * width;
        const r = s("rect", { x: x, width: Math.max(1, width), y: f.sy(b.accuracy), height: f.sy(0) - f.sy(b.accuracy), fill: se.color, opacity: 0.85 });
        r.appendChild(s("title", {}, se.name + ", confidence " + fmt(b.lower) + "–" + fmt(b.upper) + ": accuracy " + (100 * b.accuracy).toFixed(0) + "% over " + b.count + " items (mean confidence " + (100 * b.confidence).toFixed(0) + "%)"));
        f.svg.appendChild(r);
      });
    });
    legend(f.svg, series);
  }

  window.charts = { lineChart: lineChart, histogram: histogram, hbars: hbars, reliability: reliability, empty: empty, PALETTE: PALETTE };
})();
