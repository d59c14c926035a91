// Chat: a conversation streamed token by token (server-sent events), with a stop button and a temperature.
import { streamEvents } from "./api.js";
import { append, h } from "./dom.js";
import { exampleButtons, field, panelFrame } from "./panel.js";

export function chatPanel({ models, examples }) {
  const frame = panelFrame({ id: "chat", title: "Chat",
    intro: "A small decoder-only Transformer trained on DailyDialog: everyday small talk, streamed as it is generated.", models });
  const history = []; // {role, content}
  const log = h("ol", { class: "conversation", role: "log", "aria-label": "Conversation" });
  const input = h("textarea", { rows: 2, placeholder: "Say something…" });
  const temperature = h("input", { type: "range", min: 0, max: 1.5, step: 0.1, value: 0.8 });
  const tempValue = h("output", { text: "0.8" });
  temperature.addEventListener("input", () => { tempValue.textContent = temperature.value; });
  const submit = h("button", { type: "submit", text: "Send" });
  const stop = h("button", { type: "button", class: "ghost", text: "Stop", disabled: true });
  const clear = h("button", { type: "button", class: "ghost", text: "New conversation",
    onclick: () => { history.length = 0; log.replaceChildren(); input.focus(); } });
  let controller = null;
  stop.addEventListener("click", () => controller && controller.abort());
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); frame.form.requestSubmit(); }
  });
  const temperatureField = field("Temperature", temperature, "0 answers greedily; higher is more varied");
  temperatureField.querySelector("label").after(tempValue);
  const useExample = async (key) => {
    const response = await fetch("/playground/examples/texts.json");
    const texts = response.ok ? (await response.json()).chat || [] : [];
    input.value = texts[Number(key) % Math.max(1, texts.length)] || "";
    input.focus();
  };
  frame.output.append(log);
  append(frame.form, [field("Message", input, "Enter sends, Shift+Enter starts a new line"),
    examples.includes("texts.json") ? exampleButtons(["0", "1", "2"], useExample, (k) => `opener ${Number(k) + 1}`) : null,
    temperatureField, h("div", { class: "actions" }, submit, stop, clear)]);
  // The conversation sits above the message box.
  frame.form.before(frame.output);

  const bubble = (role, text) => {
    const body = h("p", { class: "text", text });
    const item = h("li", { class: `turn ${role}` }, h("span", { class: "who", text: role === "user" ? "You" : "Model" }), body);
    log.append(item);
    return { item, body };
  };

  frame.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    frame.run(submit, async () => {
      history.push({ role: "user", content: text });
      bubble("user", text);
      input.value = "";
      const reply = bubble("assistant", "");
      reply.item.classList.add("streaming");
      controller = new AbortController();
      stop.disabled = false;
      let content = "";
      let chunks = 0;
      try {
        await streamEvents("/v1/chat/completions",
          { messages: history, stream: true, temperature: Number(temperature.value), model: frame.model(), max_tokens: 64 },
          (chunk) => {
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
            if (delta && delta.content) {
              content += delta.content;
              reply.body.textContent = content;
              reply.item.dataset.chunks = String(++chunks); // how many pieces the reply arrived in
              log.scrollTop = log.scrollHeight;
            }
          }, controller.signal);
      } catch (error) {
        if (error.name !== "AbortError") {
          reply.item.remove();
          history.pop();
          throw error;
        }
        reply.item.classList.add("stopped");
      } finally {
        reply.item.classList.remove("streaming");
        stop.disabled = true;
        controller = null;
      }
      if (!content) reply.body.textContent = "(no reply)";
      history.push({ role: "assistant", content });
    });
  });
  return frame.section;
}
