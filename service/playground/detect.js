// Object detection panel: a picture in, its boxes drawn over it (an SVG laid on the picture, in the picture's own
// pixels: the server answers in those) and one row per box.
import { request } from "./api.js";
import { fill, h, percent, s } from "./dom.js";
import { field, panelFrame } from "./panel.js";
import { imageForm, imagePicker, multipart } from "./vision.js";

const COLOURS = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b"];

// The picture with its boxes: a figure holding the <img> and an SVG of the same box (viewBox = the picture's pixels).
function boxesOver(blob, result, labels) {
  const { width, height, detections } = result;
  const img = h("img", { src: URL.createObjectURL(blob), alt: "the picture sent" });
  const colour = (label) => COLOURS[Math.max(0, labels.indexOf(label)) % COLOURS.length];
  const size = Math.max(6, Math.round(Math.max(width, height) / 40));
  const shapes = detections.map((d) => {
    const [x0, y0, x1, y1] = d.box;
    const right = x0 > width / 2;  // a label on the right half ends at the box's right side: it stays in the picture
    return s("g", { class: "detection" },
      s("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, fill: "none", stroke: colour(d.label),
        "stroke-width": 3, "vector-effect": "non-scaling-stroke" }),
      s("text", { x: right ? x1 : x0, y: y0 > size + 2 ? y0 - 2 : y1 + size, "text-anchor": right ? "end" : "start",
        "font-size": size, fill: colour(d.label), stroke: "white", "stroke-width": Math.max(1, size / 5),
        "paint-order": "stroke", text: `${d.label} ${percent(d.score)}` }));
  });
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `${detections.length} boxes over the picture` }, shapes);
  const figure = h("figure", { class: "detect-figure" }, img, svg);
  // CSSOM (not style attributes: the page's CSP allows only its own style sheet)
  Object.assign(figure.style, { position: "relative", display: "inline-block", margin: "0", maxWidth: "100%" });
  Object.assign(img.style, { display: "block", width: `${Math.min(640, width * 2)}px`, maxWidth: "100%", height: "auto" });
  Object.assign(svg.style, { position: "absolute", left: "0", top: "0", width: "100%", height: "100%" });
  return figure;
}

export function detectPanel({ models, examples }) {
  const frame = panelFrame({ id: "detect", title: "Road-sign detection",
    intro: "A road photo in (up to 1,024 px on its longer side): boxes around crosswalk signs, speed limits, stop signs and traffic lights, with their scores.",
    models });
  const picker = imagePicker(examples.filter((n) => /\.jpg$/.test(n)));
  const threshold = h("input", { type: "number", min: "0", max: "1", step: "0.05", placeholder: "the model's" });
  const submit = imageForm(frame, picker, [field("Score threshold", threshold, "0-1; empty: the model's own (its card)")]);
  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    frame.run(submit, async () => {
      const form = multipart(frame, picker, { score_threshold: threshold.value.trim() || undefined });
      const answer = await (await request("/v1/images/detect", { form })).json();
      const result = answer.results[0];
      const labels = [...new Set(result.detections.map((d) => d.label))].sort();
      const rows = result.detections.map((d) => h("li", {},
        h("strong", { text: d.label }), ` ${percent(d.score)} `,
        h("span", { class: "box", text: `[${d.box.map((v) => v.toFixed(0)).join(", ")}]` })));
      fill(frame.output,
        h("p", { class: "headline" },
          h("strong", { text: `${result.detections.length} ${result.detections.length === 1 ? "box" : "boxes"}` }),
          ` on a ${result.width}×${result.height} picture`,
          h("span", { class: "served-by", text: ` · ${answer.model} v${answer.version}` })),
        h("div", { class: "result-row" }, boxesOver(picker.chosen().blob, result, labels),
          h("ol", { class: "detections" }, rows)));
    });
  });
  return frame.section;
}
