// The forecast chart, drawn as SVG: the history, the interval band and the median forecast, with a y axis.
import { s } from "./dom.js";

const W = 720;
const H = 300;
const PAD = { left: 58, right: 16, top: 14, bottom: 34 };

function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const step = [1, 2, 2.5, 5, 10].map((m) => m * 10 ** Math.floor(Math.log10(raw))).find((x) => x >= raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(+v.toFixed(10));
  return ticks;
}

const fmt = (v) => (Math.abs(v) >= 1000 ? v.toLocaleString("en-US", { maximumFractionDigits: 0 }) : String(+v.toFixed(2)));

// history: numbers; forecast/lower/upper: numbers (same length); labels: {start, split, end} texts for the x axis;
// weights (optional, one per history value): how much each moved the forecast, drawn as a strip under the axis.
export function forecastChart({ history, forecast, lower, upper, labels = {}, unit = "", weights = null }) {
  const n = history.length + forecast.length;
  const values = [...history, ...lower, ...upper];
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const margin = (hi - lo) * 0.06 || 1;
  lo -= margin;
  hi += margin;
  const x = (i) => PAD.left + (i / Math.max(1, n - 1)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  const line = (points) => points.map(([i, v], k) => `${k ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");

  const h0 = history.length - 1; // the forecast is drawn from the last observed value on
  const hist = history.map((v, i) => [i, v]);
  const med = [[h0, history[h0]], ...forecast.map((v, k) => [h0 + 1 + k, v])];
  const band = [[h0, history[h0]], ...upper.map((v, k) => [h0 + 1 + k, v]),
    ...lower.map((v, k) => [h0 + 1 + k, v]).reverse()];

  const grid = niceTicks(lo, hi).map((t) => s("g", { class: "tick" },
    s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(t), y2: y(t) }),
    s("text", { x: PAD.left - 8, y: y(t) + 4, "text-anchor": "end", text: fmt(t) })));
  const axis = [ // first shown value and last forecast step under the axis; the forecast's first step beside its line
    s("text", { class: "axis-label", x: PAD.left, y: H - 10, "text-anchor": "start", text: labels.start || "" }),
    s("text", { class: "axis-label split", x: x(h0) - 6, y: PAD.top + 10, "text-anchor": "end", text: labels.split || "forecast" }),
    s("text", { class: "axis-label", x: W - PAD.right, y: H - 10, "text-anchor": "end", text: labels.end || "" }),
    s("line", { class: "now", x1: x(h0), x2: x(h0), y1: PAD.top, y2: H - PAD.bottom }),
  ];
  const title = `History of ${history.length} values and a forecast of ${forecast.length} steps${unit ? ` (${unit})` : ""}`;
  const strip = weights ? influence(weights, x) : null;
  return s("svg", { viewBox: `0 0 ${W} ${H + (strip ? STRIP : 0)}`, class: "chart", role: "img", "aria-label": title },
    s("title", { text: title }),
    s("g", { class: "grid" }, grid),
    s("path", { class: "series band", "data-series": "interval", d: `${line(band)} Z` }),
    s("path", { class: "series history", "data-series": "history", d: line(hist) }),
    s("path", { class: "series forecast", "data-series": "forecast", d: line(med) }),
    axis, strip);
}

const STRIP = 56;

// The explanation's history weights as bars about a middle line, under each history value they belong to.
function influence(weights, x) {
  const top = Math.max(1e-12, ...weights.map(Math.abs));
  const mid = H + STRIP / 2 + 4;
  const half = STRIP / 2 - 10;
  const width = Math.max(1, (x(1) - x(0)) * 0.7);
  return s("g", { class: "influence" },
    s("text", { x: PAD.left - 8, y: mid + 4, "text-anchor": "end", text: "effect" }),
    s("title", { text: "How much each history value moved the mean forecast: up raised it, down lowered it" }),
    s("line", { x1: PAD.left, x2: x(weights.length - 1), y1: mid, y2: mid }),
    weights.map((w, i) => {
      const size = (Math.abs(w) / top) * half;
      return s("rect", { class: w >= 0 ? "up" : "down", x: (x(i) - width / 2).toFixed(1), width: width.toFixed(1),
        y: (w >= 0 ? mid - size : mid).toFixed(1), height: Math.max(0.5, size).toFixed(1) });
    }));
}

export function legend(interval) {
  const item = (cls, text) => s("g", {}, s("rect", { class: `key ${cls}`, width: 18, height: 10, y: 2 }), s("text", { x: 24, y: 11, text }));
  const parts = [item("history", "history"), item("forecast", "median forecast"), item("band", `${Math.round(interval * 100)}% interval`)];
  parts.forEach((p, i) => p.setAttribute("transform", `translate(${[0, 90, 240][i]},0)`));
  return s("svg", { class: "legend", viewBox: "0 0 380 16", "aria-hidden": "true" }, parts);
}
