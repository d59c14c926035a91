// Image panels: classification (top-k bars) and tumor detection (probability against the model's threshold).
import { request } from "./api.js";
import { append, bar, fill, h, meter, oodNote, percent } from "./dom.js";
import { checkbox, exampleButtons, fetchCard, field, panelFrame } from "./panel.js";

// A drop zone + file picker + example buttons; keeps the chosen picture and shows it.
export function imagePicker(examples, onPick) {
  let chosen = null;
  const preview = h("img", { class: "preview", alt: "", hidden: true });
  const caption = h("span", { class: "drop-caption", text: "Drop a PNG, JPEG or WebP here, or choose a file" });
  const input = h("input", { type: "file", accept: "image/png,image/jpeg,image/webp", class: "file" });
  const zone = h("label", { class: "drop" }, input, preview, caption);
  const pick = (blob, name) => {
    if (preview.src) URL.revokeObjectURL(preview.src);
    chosen = { blob, name };
    preview.src = URL.createObjectURL(blob);
    preview.alt = `the picture to send: ${name}`;
    preview.hidden = false;
    caption.textContent = name;
    onPick && onPick();
  };
  input.addEventListener("change", () => input.files[0] && pick(input.files[0], input.files[0].name));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) pick(file, file.name);
  });
  const loadExample = async (name) => {
    const response = await fetch(`/playground/examples/${name}`);
    pick(await response.blob(), name);
  };
  const buttons = exampleButtons(examples, loadExample, (n) => n.replace(/\.png$/, "").replace(/^scan-/, ""));
  return { node: h("div", { class: "picker" }, zone, buttons), chosen: () => chosen, loadExample };
}

export function imageForm(frame, picker, extra = []) {
  const submit = h("button", { type: "submit", text: "Send" });
  append(frame.form, [picker.node, extra, h("div", { class: "actions" }, submit)]);
  return submit;
}

export function multipart(frame, picker, options = {}) {
  const chosen = picker.chosen();
  if (!chosen) throw new Error("choose a picture first");
  const form = new FormData();
  form.append("images", chosen.blob, chosen.name);
  for (const [name, value] of Object.entries({ ...options, model: frame.model() })) {
    if (value !== undefined) form.append(name, String(value));
  }
  return form;
}

// An explanation's relevance map (when the server sends one), beside the picture.
function relevance(explanation) {
  if (!explanation || !explanation.overlay_png) return null;
  return h("figure", { class: "relevance" },
    h("img", { src: `data:image/png;base64,${explanation.overlay_png}`, alt: "relevance map over the picture" }),
    h("figcaption", { text: "Where the model looked (relevance for the predicted class)" }));
}

export function imagesPanel({ models, examples, explain }) {
  const frame = panelFrame({ id: "images", title: "Image classification",
    intro: "CIFAR-10's ten classes (airplane … truck) on a 32×32 picture: the top classes with their probabilities.", models });
  const picker = imagePicker(examples.filter((n) => /^(?!scan-).*\.png$/.test(n)));
  const topK = h("select", {}, [1, 3, 5, 10].map((k) => h("option", { value: k, text: k, selected: k === 5 })));
  const explainBox = explain ? checkbox("Explain: show where the model looked (occlusion relevance map)") : null;
  const submit = imageForm(frame, picker, [field("Classes to show", topK), explainBox && explainBox.field]);
  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    frame.run(submit, async () => {
      const form = multipart(frame, picker, { top_k: topK.value, explain: explainBox && explainBox.input.checked ? "true" : undefined });
      const answer = await (await request("/v1/images/classify", { form })).json();
      const result = answer.results[0];
      fill(frame.output, 
        h("p", { class: "headline" }, h("strong", { class: "label-text", text: result.label }), ` ${percent(result.score)}`,
          h("span", { class: "served-by", text: ` · ${answer.model} v${answer.version}` })),
        h("div", { class: "result-row" },
          h("ol", { class: "bars" }, result.top_k.map((row, i) => bar(row.label, row.score, { className: i ? "" : "lead" }))),
          relevance(result.explanation)),
        oodNote(result.ood));
    });
  });
  return frame.section;
}

export function tumorPanel({ models, examples, explain }) {
  const frame = panelFrame({ id: "tumor", title: "Brain tumour detection",
    intro: "One grayscale MRI slice in: the calibrated probability of a tumour, the decision at the model's threshold, and the likely subtype.", models });
  const warning = h("p", { class: "warning", role: "note",
    text: "NOT a medical device: a demonstration model trained on a small public dataset. Never use it to diagnose, screen or triage anyone." });
  frame.form.before(warning);
  // The card's own words, when it says so (models/<name>/README.md opens with them).
  const cardLine = async () => {
    try {
      const card = await fetchCard(frame.model());
      const line = card.readme.split("\n").filter((l) => l.startsWith(">")).map((l) => l.replace(/^>\s?/, "")).join(" ");
      if (/medical device/i.test(line)) warning.textContent = line.replace(/\*\*/g, "");
    } catch (_) { /* keep the built-in line */ }
  };
  frame.select.addEventListener("change", cardLine);
  cardLine();
  const picker = imagePicker(examples.filter((n) => n.startsWith("scan-")));
  const explainBox = explain ? checkbox("Explain: show where the model looked (occlusion relevance map)") : null;
  const submit = imageForm(frame, picker, [explainBox && explainBox.field]);
  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    frame.run(submit, async () => {
      const form = multipart(frame, picker, { explain: explainBox && explainBox.input.checked ? "true" : undefined });
      const answer = await (await request("/v1/tumor/detect", { form })).json();
      const r = answer.results[0];
      const subtype = r.subtype ? h("ol", { class: "bars" }, Object.entries(r.subtype.probabilities)
        .sort((a, b) => b[1] - a[1]).map(([label, p]) => bar(label, p))) : null;
      fill(frame.output, 
        h("p", { class: `headline decision ${r.tumor ? "positive" : "negative"}` },
          h("strong", { text: r.tumor ? "Tumour suspected" : "No tumour found" }),
          ` · P(tumour) ${percent(r.probability)} ${r.tumor ? "≥" : "<"} threshold ${percent(r.threshold)}`),
        meter(r.probability, r.threshold),
        h("div", { class: "result-row" },
          subtype && h("div", { class: "grow" }, h("h3", { text: "Subtype (second head)" }), subtype),
          relevance(r.explanation)),
        oodNote(r.ood),
        h("p", { class: "served-by", text: `${answer.model} v${answer.version}` }));
    });
  });
  return frame.section;
}
