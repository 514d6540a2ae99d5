// The console's one door to the host: same-origin JSON requests with the session cookie, the
// CSRF token on every state change, and the API's own error words in every failure. A 401
// from anything but sign-in means the session is gone: the console goes back to the form.

let csrf = null;
let onSignedOut = () => {};

/** A failed request: `status` (0 when the host could not be reached), the API's `error` text
 *  as the message, and the whole JSON body (`owner` of a 409 on take, ...). */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Keeps the CSRF token sign-in or `/agents/me` handed out (null forgets it). */
export function setCsrf(token) {
  csrf = token || null;
}

/** What to do when the host says the session is no longer valid. */
export function whenSignedOut(fn) {
  onSignedOut = fn;
}

/** `path` with the non-empty `params` as its query string. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** One request; resolves to the JSON answer (null for 204), rejects with an ApiError. */
async function request(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The host cannot be reached: check the network.", null);
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const message = data && typeof data.error === "string" ? data.error : `The host answered ${resp.status}.`;
    if (resp.status === 401 && path !== "/api/v1/session") onSignedOut();
    throw new ApiError(resp.status, message, data);
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body === undefined ? {} : body);
export const put = (path, body) => request("PUT", path, body);
export const del = (path) => request("DELETE", path);

/** The path of conversation `id` (and a sub-resource). */
export function conv(id, rest = "") {
  return `/api/v1/conversations/${encodeURIComponent(id)}${rest}`;
}
