// The playground: asks the server which models it serves (/v1/models) and builds one panel per task it has.
import { apiKey, ApiError, getJSON, whenUnauthorized } from "./api.js";
import { h } from "./dom.js";
import { showCard } from "./panel.js";
import { imagesPanel, tumorPanel } from "./vision.js";
import { detectPanel } from "./detect.js";
import { sentimentPanel, translatePanel } from "./text.js";
import { chatPanel } from "./chat.js";
import { pricePanel, trafficPanel } from "./forecast.js";
import { deteriorationPanel, fraudPanel } from "./tabular.js";

// task (as /v1/models reports it) -> panel. A task the page does not know is listed in the server panel only.
const PANELS = [
  { task: "image-classification", nav: "Images", build: imagesPanel },
  { task: "tumor-detection", nav: "Tumour", build: tumorPanel },
  { task: "object-detection", nav: "Road signs", build: detectPanel },
  { task: "text-sentiment", nav: "Sentiment", build: sentimentPanel },
  { task: "translation", nav: "Translation", build: translatePanel },
  { task: "chat", nav: "Chat", build: chatPanel },
  { task: "traffic-forecast", nav: "Traffic", build: trafficPanel },
  { task: "price-forecast", nav: "Prices", build: pricePanel },
  { task: "fraud-scoring", nav: "Fraud", build: fraudPanel },
  { task: "icu-deterioration", nav: "Deterioration", build: deteriorationPanel },
];

const status = document.getElementById("server-status");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");
const forget = document.getElementById("forget-key");
const panels = document.getElementById("panels");
const navList = document.querySelector("#nav ul");

function askForKey(message) {
  keyForm.hidden = false;
  keyError.hidden = !message;
  keyError.textContent = message || "";
  status.textContent = "Waiting for an API key";
  status.className = "status warn";
  keyInput.focus();
}

whenUnauthorized((error) => askForKey(apiKey.get() ? `${error.message} (the key was not accepted)` : ""));

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey.set(keyInput.value.trim());
  keyInput.value = "";
  boot();
});

forget.addEventListener("click", () => {
  apiKey.clear();
  location.reload();
});

document.getElementById("card-close").addEventListener("click", () => document.getElementById("card-dialog").close());

function serverPanel(models, ready) {
  const rows = models.map((m) => h("tr", {},
    h("th", { scope: "row" }, h("button", { type: "button", class: "link", text: m.id, title: "Open the model card",
      onclick: (event) => showCard(m.id, event.currentTarget) })),
    h("td", { text: m.task || "—" }),
    h("td", {}, h("span", { class: `state ${m.ready ? "ok" : "bad"}`, text: m.state.toLowerCase() }),
      m.reason ? h("small", { class: "hint", text: ` ${m.reason}` }) : null),
    h("td", { text: (m.providers || []).map((p) => p.replace("ExecutionProvider", "")).join(", ") || "—" }),
    h("td", { text: m.provider_fallback ? "yes" : "no" }),
    h("td", { text: m.ood ? "yes" : "no" }),
    h("td", { text: (m.versions || []).join(", ") || "—" })));
  const failed = Object.entries(ready.failed || {});
  return h("section", { class: "panel", id: "panel-server", "data-panel": "server", "aria-labelledby": "server-title" },
    h("div", { class: "panel-head" }, h("h2", { id: "server-title", text: "Server" })),
    h("p", { class: "headline" }, h("span", { class: `state ${ready.ready ? "ok" : "bad"}`, text: ready.ready ? "ready" : "not ready" }),
      ` · ${models.filter((m) => m.ready).length} of ${models.length} models loaded`,
      ready.loading && ready.loading.length ? ` · loading ${ready.loading.join(", ")}` : "",
      failed.length ? ` · failed: ${failed.map(([n, why]) => `${n} (${why})`).join("; ")}` : ""),
    h("div", { class: "table-wrap" }, h("table", { class: "models" },
      h("thead", {}, h("tr", {}, ["model", "task", "state", "providers", "CPU fallback", "OOD flag", "versions"]
        .map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows))),
    h("p", { class: "links" }, "API reference: ", h("a", { href: "/docs", text: "/docs" }), " · ",
      h("a", { href: "/openapi.json", text: "/openapi.json" }), " · metrics: ", h("a", { href: "/metrics", text: "/metrics" }),
      apiKey.get() ? h("small", { class: "hint", text: " (with keys, /docs needs the Bearer header: use curl or the SDK)" }) : null));
}

async function boot() {
  status.textContent = "Connecting…";
  status.className = "status";
  let models;
  let ready;
  let examples = [];
  try {
    models = (await getJSON("/v1/models")).data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // askForKey has run
    status.textContent = `Cannot list the models: ${error.message}`;
    status.className = "status bad";
    return;
  }
  keyForm.hidden = true;
  forget.hidden = !apiKey.get();
  try {
    ready = await (await fetch("/v2/health/ready")).json();
  } catch (_) {
    ready = { ready: false };
  }
  try {
    const listing = await fetch("/playground/examples.json");
    if (listing.ok) examples = (await listing.json()).examples;
  } catch (_) { /* no examples: the panels still work with the user's own inputs */ }
  const explain = true; // "explain": true on images, tumor, sentiment (service/explain.py)
  const built = [];
  for (const spec of PANELS) {
    const mine = models.filter((m) => m.task === spec.task);
    if (!mine.length) continue;
    built.push([spec.nav, spec.build({ models: mine, examples, explain })]);
  }
  built.push(["Server", serverPanel(models, ready)]);
  panels.replaceChildren(...built.map(([, section]) => section));
  navList.replaceChildren(...built.map(([label, section]) => h("li", {}, h("a", { href: `#${section.id}`, text: label }))));
  status.textContent = ready.ready ? `Ready · ${models.filter((m) => m.ready).length} models` : "Server not ready yet: models are loading";
  status.className = `status ${ready.ready ? "ok" : "warn"}`;
  document.body.dataset.ready = "true"; // the panels are built (tests wait for this)
  if (!ready.ready && ready.loading && ready.loading.length) setTimeout(boot, 2000); // opened while models load: again
}

boot();
