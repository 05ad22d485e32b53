// The API as the dashboard uses it: bearer-token requests and list+watch streams.
// Every call goes through the API server's normal chain; the page holds no credentials of its own.

const TOKEN_KEY = "pilothouse.dashboard.token";

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.reason = (body && body.reason) || "";
  }
}

function headers(accept = "application/json") {
  const result = { Accept: accept };
  const bearer = token();
  if (bearer) result.Authorization = `Bearer ${bearer}`;
  return result;
}

async function failure(response) {
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = { message: text.trim() || response.statusText }; }
  return new ApiError(response.status, body);
}

export async function request(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(), signal, credentials: "same-origin" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const get = (path, signal) => request(path, { signal });

// Lines of a streamed response body, as they arrive.
export async function* lines(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let at;
    while ((at = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, at);
      buffer = buffer.slice(at + 1);
      if (line) yield line;
    }
  }
  if (buffer) yield buffer;
}

// A streamed GET (watch, logs follow); throws ApiError on a refusal.
export async function stream(path, signal, accept = "application/json") {
  const response = await fetch(path, { headers: headers(accept), signal, credentials: "same-origin" });
  if (!response.ok) throw await failure(response);
  return response;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The list in pages of PAGE objects (the reflector's default 500): each page is parsed and painted on
// its own instead of one long parse of thousands of objects. Pages of one list are one snapshot; its
// resourceVersion is where the watch starts.
const PAGE = 500;

async function pagedList(path, sep, reset, change, signal) {
  let next = "";
  let first = true;
  for (;;) {
    const list = await get(`${path}${sep}limit=${PAGE}${next ? `&continue=${encodeURIComponent(next)}` : ""}`, signal);
    if (first) reset(list.items || []);
    else for (const item of list.items || []) change("ADDED", item);
    first = false;
    next = list.metadata.continue || "";
    if (!next) return list.metadata.resourceVersion;
  }
}

// List `path`, then watch it from the list's resourceVersion until `signal` aborts, as client-go's
// reflector does: on a dropped stream resume from the last resourceVersion seen (bookmarks included),
// on 410 Gone (history compacted) list again. reset(items) after each list; change(type, object) per event;
// failed(error) on each failure (a 401/403 ends the loop: retrying would not help).
export async function listWatch(path, { reset, change, failed }, signal) {
  let version = "";
  const sep = path.includes("?") ? "&" : "?";
  while (!signal.aborted) {
    try {
      if (!version) version = await pagedList(path, sep, reset, change, signal);
      const response = await stream(
        `${path}${sep}watch=1&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(version)}`, signal);
      for await (const line of lines(response)) {
        const event = JSON.parse(line);
        if (event.type === "ERROR") {
          if (event.object.code === 410) { version = ""; break; }
          throw new ApiError(event.object.code, event.object);
        }
        version = event.object.metadata.resourceVersion;
        if (event.type !== "BOOKMARK") change(event.type, event.object);
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 410) { version = ""; continue; }
      failed(error);
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return;
      await sleep(1000);
    }
  }
}
