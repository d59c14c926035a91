// Building the page from data without HTML parsing: every text a model or the API returns goes in as text.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replace a node's children; null and false children are skipped (the DOM's own replaceChildren prints "null").
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) if (child) node.append(child);
  return node;
}

let counter = 0;
export const uid = (prefix) => `${prefix}-${++counter}`;

export const percent = (x) => `${(100 * x).toFixed(1)}%`;

// A labelled horizontal bar: label, bar, value.
export function bar(label, value, { title, className = "" } = {}) {
  const fill = h("span", { class: "fill" });
  fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
  return h("li", { class: `bar ${className}`.trim(), title },
    h("span", { class: "bar-label", text: label }),
    h("span", { class: "track", role: "presentation" }, fill),
    h("span", { class: "bar-value", text: percent(value) }));
}

// A probability against a decision threshold: a bar with a mark at the threshold.
export function meter(probability, threshold) {
  const fill = h("span", { class: "fill" });
  const mark = h("span", { class: "threshold", title: `threshold ${percent(threshold)}` });
  fill.style.width = percent(probability);
  mark.style.left = percent(threshold);
  return h("div", { class: "meter", role: "img", "aria-label": `probability ${percent(probability)}, threshold ${percent(threshold)}` },
    fill, mark);
}

// Feature weights (explanation.features: [{name, weight}], largest |weight| first) as bars either side of zero.
export function featureBars(features, limit = 8, towards = "the answer") {
  if (!features || !features.length) return null;
  const shown = features.slice(0, limit);
  const top = Math.max(1e-9, ...shown.map((f) => Math.abs(f.weight)));
  return h("div", { class: "features" },
    h("h3", { text: `What moved it (top ${shown.length}; right: towards ${towards})` }),
    h("ol", { class: "diverging" }, shown.map((f) => {
      const fill = h("span", { class: `fill ${f.weight >= 0 ? "up" : "down"}` });
      fill.style.width = `${(50 * Math.abs(f.weight)) / top}%`;
      return h("li", {}, h("span", { class: "bar-label", text: f.name }), h("span", { class: "track centre" }, fill),
        h("span", { class: "bar-value", text: (f.weight >= 0 ? "+" : "") + f.weight.toFixed(3) }));
    })));
}

// The "unusual input" note for answers that carry an OOD score (service/ood.py).
export function oodNote(ood) {
  if (!ood) return null;
  return ood.unusual
    ? h("p", { class: "ood unusual", text: `Unusual input: unlike the model's training data (OOD score ${ood.score.toFixed(2)}); treat the answer with care.` })
    : h("p", { class: "ood", text: `Input looks like the training data (OOD score ${ood.score.toFixed(2)}).` });
}
