// Talking to the server: the API key (kept in this tab only), errors as the API words them, server-sent events.

const KEY = "neuroserve-api-key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

// Called with the ApiError when the server answers 401, so the page can ask for a key.
let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

function headers(extra = {}) {
  const key = apiKey.get();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// {"error": "..."} on most routes, {"error": {"message": ...}} on the OpenAI-compatible ones.
async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const error = body && body.error;
    if (typeof error === "string") message = error;
    else if (error && typeof error.message === "string") message = error.message;
  } catch (_) {
    // not JSON: keep the status line
  }
  const failure = new ApiError(response.status, message);
  if (response.status === 401) onUnauthorized(failure);
  return failure;
}

export async function request(path, { json, form, method, signal } = {}) {
  const init = { method: method || (json || form ? "POST" : "GET"), signal, headers: headers() };
  if (json !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, `the server did not answer (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

export async function postJSON(path, json, options = {}) {
  return (await request(path, { ...options, json })).json();
}

// POST with "stream": true and call onEvent(parsed JSON) for each "data:" event until [DONE].
export async function streamEvents(path, json, onEvent, signal) {
  const response = await request(path, { json, signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const parsed = JSON.parse(data);
        if (parsed.error) throw new ApiError(response.status, parsed.error.message || String(parsed.error));
        onEvent(parsed);
      }
    }
  }
}
