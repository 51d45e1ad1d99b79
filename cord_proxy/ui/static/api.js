// Calls to the proxy: the page's JSON APIs and the streaming chat completion.
const KEY = "cord-proxy-key";
let key = sessionStorage.getItem(KEY) || "";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function setKey(value) {
  key = value;
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

function headers(extra = {}) {
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// The server writes a candidate that could not be scored as -Infinity, which JSON lacks.
export function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return JSON.parse(text.replace(/(?<=[:[,]\s*)-?(?:Infinity|NaN)(?=\s*[,\]}])/g, "null"));
  }
}

async function failure(response) {
  let message = `HTTP ${response.status}`;
  try {
    const body = parseJSON(await response.text());
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    // not JSON: keep the status
  }
  return new ApiError(message, response.status);
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await failure(response);
  return parseJSON(await response.text());
}

function events(buffer, onEvent) {
  const parts = buffer.split("\n\n");
  const rest = parts.pop();
  for (const part of parts) {
    for (const line of part.split("\n")) {
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6);
      if (data === "[DONE]") return { rest: "", done: true };
      onEvent(parseJSON(data));
    }
  }
  return { rest, done: false };
}

export async function streamChat(body, onEvent, signal) {
  const response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const parsed = events(buffer, onEvent);
    buffer = parsed.rest;
    if (parsed.done) return;
  }
}
