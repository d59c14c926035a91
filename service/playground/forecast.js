// Forecast panels: paste or load a history, see the chart of history, median forecast and interval band.
import { postJSON } from "./api.js";
import { append, fill, h } from "./dom.js";
import { forecastChart, legend } from "./chart.js";
import { checkbox, exampleButtons, field, panelFrame } from "./panel.js";

const numbers = (text) => text.split(/[\s,;]+/).filter(Boolean).map(Number);
const hourLabel = (iso) => iso.replace("T", " ").slice(0, 16);

const KINDS = {
  traffic: {
    title: "Traffic forecast", route: "/v1/forecast/traffic", example: "traffic.json", window: 168, shown: 96, maxHorizon: 24,
    intro: "Hourly traffic volume on the I-94 (vehicles/hour): give at least a week (168 hours) and the local time of its first hour.",
    unit: "vehicles/hour",
    labels: (body, answer) => {
      const start = new Date(`${body.start}Z`); // local times, formatted as given (no time zone)
      start.setUTCHours(start.getUTCHours() + body.history.length - 96);
      return { start: hourLabel(start.toISOString()), split: `forecast from ${hourLabel(answer.timestamps[0])} →`,
        end: hourLabel(answer.timestamps.at(-1)) };
    },
  },
  price: {
    title: "Stock price forecast", route: "/v1/forecast/price", example: "prices.json", window: 60, shown: 30, maxHorizon: 5,
    intro: "Daily closing prices, oldest first (at least 60 trading days): the next 1–5 closes with an interval.",
    unit: "price",
    labels: (body, answer) => ({ start: "30 trading days ago", split: "forecast →", end: `+${answer.forecast.length} days` }),
  },
};

function forecastPanel(kind, { models, examples }) {
  const spec = KINDS[kind];
  const frame = panelFrame({ id: kind, title: spec.title, intro: spec.intro, models });
  const history = h("textarea", { rows: 4, placeholder: `At least ${spec.window} numbers, separated by commas, spaces or lines`, spellcheck: "false" });
  const count = h("small", { class: "hint", "aria-live": "polite" });
  history.addEventListener("input", () => { count.textContent = `${numbers(history.value).length} values`; });
  const horizon = h("input", { type: "number", min: 1, max: spec.maxHorizon, value: spec.maxHorizon, inputmode: "numeric" });
  const start = kind === "traffic" ? h("input", { type: "datetime-local", step: 3600 }) : null;
  const submit = h("button", { type: "submit", text: "Forecast" });
  const explainBox = checkbox("Explain: how much each history value moved the forecast (bars under the chart: up raised it)");
  const useExample = async () => {
    const body = await (await fetch(`/playground/examples/${spec.example}`)).json();
    history.value = body.history.join(", ");
    history.dispatchEvent(new Event("input"));
    if (start && body.start) start.value = body.start.slice(0, 16);
  };
  const historyField = field("History", history);
  historyField.append(count);
  append(frame.form, [historyField,
    examples.includes(spec.example) ? exampleButtons([spec.example], useExample, () => "example history") : null,
    h("div", { class: "row-fields" }, start && field("First hour (local time)", start),
      field(`Steps ahead (1–${spec.maxHorizon})`, horizon)),
    explainBox.field, h("div", { class: "actions" }, submit)]);
  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    frame.run(submit, async () => {
      const body = { history: numbers(history.value), horizon: Number(horizon.value), model: frame.model() };
      if (start) body.start = start.value.length === 16 ? `${start.value}:00` : start.value;
      if (explainBox.input.checked) body.explain = true;
      const answer = await postJSON(spec.route, body);
      const shown = body.history.slice(-spec.shown); // the model reads the last `window`; the chart shows fewer
      const last = answer.forecast.length - 1;
      fill(frame.output, 
        h("p", { class: "headline" }, "Next: ", h("strong", { text: answer.forecast[0].toFixed(kind === "price" ? 2 : 0) }),
          ` (${Math.round(answer.interval * 100)}% interval ${answer.lower[0].toFixed(kind === "price" ? 2 : 0)}–${answer.upper[0].toFixed(kind === "price" ? 2 : 0)})`,
          last > 0 ? ` · in ${last + 1} steps: ${answer.forecast[last].toFixed(kind === "price" ? 2 : 0)}` : ""),
        forecastChart({ history: shown, forecast: answer.forecast, lower: answer.lower, upper: answer.upper,
          labels: spec.labels(body, answer), unit: spec.unit,
          weights: answer.explanation ? answer.explanation.history_weights.slice(-spec.shown) : null }),
        legend(answer.interval),
        h("p", { class: "hint", text: `The chart shows the last ${spec.shown} of the ${spec.window} values the model reads.` }),
        answer.ood && answer.ood[0] && answer.ood[0].unusual
          ? h("p", { class: "ood unusual", text: `Unusual history: unlike the model's training data (OOD score ${answer.ood[0].score.toFixed(2)}).` }) : null,
        h("p", { class: "served-by", text: `${answer.model} v${answer.version}` }));
    });
  });
  return frame.section;
}

export const trafficPanel = (ctx) => forecastPanel("traffic", ctx);
export const pricePanel = (ctx) => forecastPanel("price", ctx);
