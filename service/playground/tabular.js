// Risk panels: card-fraud scoring (transactions as CSV rows) and patient deterioration (ICU stays as JSON).
import { postJSON } from "./api.js";
import { append, featureBars, fill, h, meter, oodNote, percent } from "./dom.js";
import { checkbox, exampleButtons, field, panelFrame } from "./panel.js";

const COLUMNS = ["Time", ...Array.from({ length: 28 }, (_, i) => `V${i + 1}`), "Amount"];

// CSV with a header (extra columns such as Class are dropped) or bare rows in the ULB order Time, V1..V28, Amount.
export function parseTransactions(text) {
  const rows = text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => line.split(/[,;\t]/).map((c) => c.trim()));
  if (!rows.length) throw new Error("paste at least one transaction");
  const header = /^[A-Za-z]/.test(rows[0][0]) ? rows.shift() : COLUMNS;
  return rows.map((cells, n) => {
    const transaction = {};
    header.forEach((name, i) => {
      if (!COLUMNS.includes(name)) return;
      const value = Number(cells[i]);
      if (cells[i] === undefined || cells[i] === "" || Number.isNaN(value)) throw new Error(`row ${n + 1}: ${name} is not a number`);
      transaction[name] = value;
    });
    return transaction;
  });
}

async function exampleText(name) {
  const response = await fetch(`/playground/examples/${name}`);
  return response.ok ? response.text() : "";
}

function riskForm(frame, { input, inputLabel, exampleName, examples, extra = [], explainText }) {
  const explainBox = explainText ? checkbox(explainText) : null;
  const submit = h("button", { type: "submit", text: "Score" });
  const useExample = async () => { input.value = await exampleText(exampleName); };
  append(frame.form, [field(inputLabel, input),
    examples.includes(exampleName) ? exampleButtons([exampleName], useExample, () => "example") : null,
    extra, explainBox && explainBox.field, h("div", { class: "actions" }, submit)]);
  return { submit, explain: () => Boolean(explainBox && explainBox.input.checked) };
}

export function fraudPanel({ models, examples }) {
  const frame = panelFrame({ id: "fraud", title: "Card fraud",
    intro: "Card transactions in the ULB columns (Time, V1…V28, Amount), one CSV row each: the probability of fraud and the decision at the model's threshold.", models });
  const input = h("textarea", { rows: 5, spellcheck: "false", placeholder: "Time,V1,…,V28,Amount header, then one row per transaction" });
  const threshold = h("input", { type: "number", min: 0, max: 1, step: 0.01, placeholder: "the model's" });
  const form = riskForm(frame, { input, inputLabel: "Transactions (CSV)", exampleName: "transactions.csv", examples,
    extra: [field("Threshold (optional)", threshold, "empty: the model's own, chosen on validation")],
    explainText: "Explain: which columns moved each score (Shapley estimate)" });
  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    frame.run(form.submit, async () => {
      const transactions = parseTransactions(input.value);
      const body = { transactions, model: frame.model() };
      if (threshold.value !== "") body.threshold = Number(threshold.value);
      if (form.explain()) body.explain = true;
      const answer = await postJSON("/v1/fraud/score", body);
      fill(frame.output, h("ol", { class: "results" }, answer.results.map((r, i) => h("li", { class: "result" },
        h("p", { class: `headline decision ${r.fraud ? "positive" : "negative"}` },
          h("strong", { text: r.fraud ? "Fraud suspected" : "Looks genuine" }),
          ` · transaction ${i + 1}, amount ${transactions[i].Amount} · P(fraud) ${percent(r.probability)} ${r.fraud ? "≥" : "<"} threshold ${percent(r.threshold)}`),
        meter(r.probability, r.threshold),
        r.explanation && featureBars(r.explanation.features, 6, "fraud"), oodNote(r.ood)))),
      h("p", { class: "served-by", text: `${answer.model} v${answer.version}` }));
    });
  });
  return frame.section;
}

export function deteriorationPanel({ models, examples }) {
  const frame = panelFrame({ id: "deterioration", title: "Patient deterioration",
    intro: "ICU stays (the first hours of measurements, as JSON): the risk of in-hospital death and the decision at the model's threshold.", models });
  frame.form.before(h("p", { class: "warning", role: "note",
    text: "NOT a medical device: a research demonstration trained on one public ICU data set (PhysioNet 2012). Never use it for a patient." }));
  const input = h("textarea", { rows: 6, spellcheck: "false", placeholder: '{"stays": [{"measurements": [{"minute": 5, "parameter": "HR", "value": 96}], "age": 70, "icu_type": 2}]}' });
  const form = riskForm(frame, { input, inputLabel: "Stays (JSON request body)", exampleName: "icu_stay.json", examples,
    explainText: "Explain: which measurements moved the risk (Shapley estimate)" });
  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    frame.run(form.submit, async () => {
      let body;
      try {
        body = JSON.parse(input.value);
      } catch (error) {
        throw new Error(`the stays are not valid JSON: ${error.message}`);
      }
      body = { ...body, model: frame.model() };
      if (form.explain()) body.explain = true;
      const answer = await postJSON("/v1/clinical/deterioration", body);
      fill(frame.output, h("ol", { class: "results" }, answer.results.map((r, i) => h("li", { class: "result" },
        h("p", { class: `headline decision ${r.high_risk ? "positive" : "negative"}` },
          h("strong", { text: r.high_risk ? "High risk" : "Not high risk" }),
          ` · stay ${i + 1}, ${r.hours_observed} h observed · risk ${percent(r.risk)} ${r.high_risk ? "≥" : "<"} threshold ${percent(r.threshold)}`),
        meter(r.risk, r.threshold),
        r.ignored && r.ignored.length ? h("p", { class: "hint", text: `Ignored as implausible: ${r.ignored
          .map((m) => `${m.parameter} ${m.value} at minute ${m.minute} (${m.reason})`).join("; ")}` }) : null,
        r.explanation && featureBars(r.explanation.features, 6, "higher risk"), oodNote(r.ood)))),
      h("p", { class: "served-by", text: `${answer.model} v${answer.version}` }));
    });
  });
  return frame.section;
}
