// Text panels: sentiment (label, score, word highlights when explained) and translation (beam size choice).
import { postJSON } from "./api.js";
import { append, bar, fill, h, oodNote } from "./dom.js";
import { checkbox, exampleButtons, field, panelFrame } from "./panel.js";

const lines = (text) => text.split("\n").map((t) => t.trim()).filter(Boolean);

function textArea(rows, placeholder) {
  return h("textarea", { rows, placeholder, spellcheck: "true" });
}

async function textsExample(key) {
  const response = await fetch("/playground/examples/texts.json");
  return response.ok ? (await response.json())[key] || [] : [];
}

// Words coloured by how much they pushed towards the predicted label (explanation: {tokens, weights}, positive
// weights towards that label): green pulled towards "positive", red towards "negative", whichever was predicted.
function highlights(explanation, label) {
  if (!explanation || !explanation.tokens) return null;
  const top = Math.max(1e-9, ...explanation.weights.map(Math.abs));
  return h("p", { class: "highlights", "aria-label": `words weighted towards ${label}` },
    explanation.tokens.map((token, i) => {
      const w = explanation.weights[i] / top;
      const towardsPositive = (w >= 0) === (label === "positive");
      const span = h("span", { class: `token ${towardsPositive ? "pos" : "neg"}`, title: explanation.weights[i].toFixed(4), text: token });
      span.style.setProperty("--w", Math.abs(w).toFixed(3));
      return [span, " "];
    }));
}

export function sentimentPanel({ models, examples, explain }) {
  const frame = panelFrame({ id: "sentiment", title: "Sentiment",
    intro: "Short English texts (one per line): positive or negative, with the probability that the text is positive.", models });
  const input = textArea(4, "One text per line");
  const explainBox = explain ? checkbox("Explain: colour the words by how much each pushed the answer") : null;
  const submit = h("button", { type: "submit", text: "Send" });
  const useExample = async () => { input.value = (await textsExample("sentiment")).join("\n"); };
  append(frame.form, [field("Texts", input),
    examples.includes("texts.json") ? exampleButtons(["sentences"], useExample) : null,
    explainBox && explainBox.field, h("div", { class: "actions" }, submit)]);
  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    frame.run(submit, async () => {
      const body = { texts: lines(input.value), model: frame.model() };
      if (explainBox && explainBox.input.checked) body.explain = true;
      const answer = await postJSON("/v1/text/sentiment", body);
      fill(frame.output, h("ul", { class: "results" }, answer.results.map((r, i) => h("li", { class: "result" },
        h("p", { class: "quoted", text: body.texts[i] }),
        h("div", { class: "verdict" }, h("span", { class: `chip-label ${r.label}`, text: r.label }),
          h("ol", { class: "bars compact" }, bar("P(positive)", r.score))),
        highlights(r.explanation, r.label), oodNote(r.ood)))),
      h("p", { class: "served-by", text: `${answer.model} v${answer.version}` }));
    });
  });
  return frame.section;
}

export function translatePanel({ models, examples }) {
  const frame = panelFrame({ id: "translate", title: "Translation",
    intro: "English in, German out (a Transformer trained on Multi30k image captions: short descriptive sentences work best).", models });
  const input = textArea(4, "One English sentence per line");
  const beam = h("select", {}, [1, 2, 4, 8].map((b) => h("option", { value: b, text: b === 1 ? "1 (greedy)" : String(b), selected: b === 4 })));
  const submit = h("button", { type: "submit", text: "Translate" });
  const useExample = async () => { input.value = (await textsExample("translate")).join("\n"); };
  append(frame.form, [field("English", input),
    examples.includes("texts.json") ? exampleButtons(["sentences"], useExample) : null,
    field("Beam size", beam, "1 is greedy decoding; more beams search wider"),
    h("div", { class: "actions" }, submit)]);
  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    frame.run(submit, async () => {
      const texts = lines(input.value);
      const started = performance.now();
      const answer = await postJSON("/v1/text/translate",
        { texts, source: "en", target: "de", beam_size: Number(beam.value), model: frame.model() });
      const ms = Math.round(performance.now() - started);
      fill(frame.output, h("ul", { class: "results" }, answer.translations.map((t, i) => h("li", { class: "result pair" },
        h("p", { class: "quoted", lang: "en", text: texts[i] }), h("p", { class: "translation", lang: "de", text: t })))),
      h("p", { class: "served-by", text: `${answer.model} v${answer.version} · beam ${beam.value} · ${ms} ms` }));
    });
  });
  return frame.section;
}
