// One panel's frame: title, model picker (from /v1/models), model card button, form, error line and output.
import { ApiError, getJSON, request } from "./api.js";
import { fill, h, uid } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const cards = new Map(); // model name -> card JSON (fetched once)

export async function fetchCard(name) {
  if (!cards.has(name)) cards.set(name, await getJSON(`/v1/models/${encodeURIComponent(name)}/card`));
  return cards.get(name);
}

// A figure the card's README shows (a PNG beside it), fetched with the API key and shown from a blob: URL.
function cardFigure(name) {
  return (url, alt) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]*\.png$/.test(url)) return null;
    const img = h("img", { class: "card-figure", alt: alt || url });
    request(`/v1/models/${encodeURIComponent(name)}/card/${url}`)
      .then((response) => response.blob())
      .then((blob) => { img.src = URL.createObjectURL(blob); })
      .catch(() => img.replaceWith(h("em", { text: `[figure: ${alt || url}]` })));
    return img;
  };
}

export async function showCard(name, opener) {
  const dialog = document.getElementById("card-dialog");
  const body = document.getElementById("card-body");
  document.getElementById("card-title").textContent = `Model card: ${name}`;
  body.replaceChildren(h("p", { text: "Loading…" }));
  dialog.showModal();
  dialog.addEventListener("close", () => opener && opener.focus(), { once: true });
  try {
    const card = await fetchCard(name);
    body.replaceChildren(...(card.readme ? renderMarkdown(card.readme, cardFigure(name))
      : [h("pre", {}, h("code", { text: JSON.stringify(card.card, null, 2) }))]));
  } catch (error) {
    body.replaceChildren(h("p", { class: "error", text: error.message }));
  }
}

// spec: {id, title, intro, models: [/v1/models rows of the task]}; returns helpers the panel fills in.
export function panelFrame({ id, title, intro, models }) {
  const select = h("select", { id: uid("model"), name: "model" },
    models.map((m) => h("option", { value: m.id, disabled: !m.ready, text: m.ready ? m.id : `${m.id} (${m.state.toLowerCase()})` })));
  // The server's own default: the ready model with the highest manifest priority, ties to the name.
  const ready = models.filter((m) => m.ready).sort((a, b) => (b.priority || 0) - (a.priority || 0) || a.id.localeCompare(b.id));
  if (ready.length) select.value = ready[0].id;
  const cardButton = h("button", { type: "button", class: "ghost", text: "Model card",
    onclick: () => showCard(select.value, cardButton) });
  const describe = h("p", { class: "model-note" });
  const noteFor = () => {
    const m = models.find((row) => row.id === select.value);
    describe.textContent = m ? [m.description, m.provider && `runs on ${m.provider.replace("ExecutionProvider", "")}`]
      .filter(Boolean).join(" · ") : "";
  };
  select.addEventListener("change", noteFor);
  noteFor();
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const output = h("div", { class: "output", "aria-live": "polite" });
  const form = h("form", { class: "panel-form", novalidate: true });
  const headingId = uid("title");
  const section = h("section", { class: "panel", id: `panel-${id}`, "aria-labelledby": headingId, "data-panel": id },
    h("div", { class: "panel-head" },
      h("h2", { id: headingId, text: title }),
      h("div", { class: "model-row" }, h("label", { for: select.id, text: "Model" }), select, cardButton)),
    intro && h("p", { class: "intro", text: intro }),
    describe, form, error, output);

  async function run(button, work) {
    error.hidden = true;
    error.textContent = "";
    button.disabled = true;
    output.setAttribute("aria-busy", "true");
    section.classList.add("busy");
    try {
      await work();
    } catch (failure) {
      if (failure.name === "AbortError") return;
      fill(error, failure instanceof ApiError && failure.status
        ? h("span", { class: "status-code", text: String(failure.status) }) : "",
      failure.message);
      error.hidden = false;
    } finally {
      button.disabled = false;
      output.removeAttribute("aria-busy");
      section.classList.remove("busy");
    }
  }
  // The model field of a request: the picked one.
  const model = () => select.value || undefined;
  return { section, form, output, error, select, run, model };
}

// A labelled control in a form row.
export function field(labelText, control, hint) {
  control.id = control.id || uid("field");
  return h("div", { class: "field" },
    h("label", { for: control.id, text: labelText }), control, hint && h("small", { class: "hint", text: hint }));
}

// A checkbox with its label: {field, input}.
export function checkbox(labelText) {
  const input = h("input", { type: "checkbox", id: uid("check") });
  return { input, field: h("div", { class: "field check" }, input, h("label", { for: input.id, text: labelText })) };
}

// "Try an example" buttons: each calls use(name).
export function exampleButtons(names, use, label = (n) => n) {
  if (!names.length) return null;
  return h("div", { class: "examples", role: "group", "aria-label": "Examples" },
    h("span", { class: "examples-label", text: "Try:" }),
    names.map((name) => h("button", { type: "button", class: "chip", "data-example": name, text: label(name),
      onclick: () => use(name) })));
}
