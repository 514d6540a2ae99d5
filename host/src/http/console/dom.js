// DOM helpers for the agent console: an element builder that only ever sets text (customer
// data is hostile, so nothing here touches innerHTML), channel badges, inline SVG delivery
// ticks, presence dots, time formatting, one ticker that keeps every "waiting 3 min" and
// "closes in 2 h" label current, and toasts.

const SVG = "http://www.w3.org/2000/svg";

/** The first element with this id. */
export function $(id) {
  return document.getElementById(id);
}

/**
 * Builds an element: `attrs` sets attributes (`class`, `data-*`, `aria-*`, ...; `text` sets
 * textContent, `on` is a map of event listeners; false/null/undefined values are skipped),
 * and `children` are nodes or strings (appended as text).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "text") el.textContent = String(value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function svg(viewBox, paths, cls) {
  const root = document.createElementNS(SVG, "svg");
  root.setAttribute("viewBox", viewBox);
  root.setAttribute("aria-hidden", "true");
  root.setAttribute("focusable", "false");
  if (cls) root.setAttribute("class", cls);
  for (const [name, attrs] of paths) {
    const p = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) p.setAttribute(k, v);
    root.append(p);
  }
  return root;
}

const KIND_LABELS = {
  sms: ["SMS", "SMS"],
  whatsapp: ["WA", "WhatsApp"],
  webchat: ["Web", "Web chat"],
  email: ["@", "Email"],
  line: ["LINE", "LINE"],
  messenger: ["M", "Messenger"],
  lineworks: ["LW", "LINE WORKS"],
};

/** The channel's name for people (`whatsapp` -> `WhatsApp`). */
export function kindName(kind) {
  return (KIND_LABELS[kind] || [null, kind || "Channel"])[1];
}

/** A small badge for a channel kind (`sms`, `whatsapp`, ...; anything else gets a neutral one). */
export function kindBadge(kind) {
  const known = Object.hasOwn(KIND_LABELS, kind);
  const [short, long] = known ? KIND_LABELS[kind] : ["•", kind || "Channel"];
  return h("span", {
    class: `kind kind-${known ? kind : "other"}`,
    "data-testid": "kind",
    "data-kind": kind || "",
    role: "img",
    "aria-label": long,
    title: long,
    text: short,
  });
}

const TICK = ["path", { d: "M2 8.5l3.2 3.2L13 4", fill: "none", "stroke-width": "1.8" }];
const TICK2 = ["path", { d: "M7 11.7L14.8 4", fill: "none", "stroke-width": "1.8" }];

/** The delivery mark of an outbound message: clock, one tick, two ticks, blue ticks or a cross. */
export function statusIcon(status) {
  const label = {
    pending: "Pending",
    queued: "Queued",
    sent: "Sent",
    delivered: "Delivered",
    read: "Read",
    failed: "Failed",
  }[status] || status;
  let icon;
  if (status === "pending") {
    icon = svg("0 0 16 16", [
      ["circle", { cx: "8", cy: "8", r: "6", fill: "none", "stroke-width": "1.5" }],
      ["path", { d: "M8 4.5V8l2.5 1.5", fill: "none", "stroke-width": "1.5" }],
    ]);
  } else if (status === "queued" || status === "sent") {
    icon = svg("0 0 16 16", [TICK]);
  } else if (status === "delivered" || status === "read") {
    icon = svg("0 0 18 16", [TICK, TICK2]);
  } else if (status === "failed") {
    icon = svg("0 0 16 16", [
      ["circle", { cx: "8", cy: "8", r: "6.5", fill: "none", "stroke-width": "1.5" }],
      ["path", { d: "M8 4.5v4.5M8 11v.5", fill: "none", "stroke-width": "1.8" }],
    ]);
  } else {
    return null;
  }
  return h("span", {
    class: `tick tick-${status}`,
    "data-testid": "tick",
    role: "img",
    "aria-label": label,
    title: label,
  }, icon);
}

/** A presence dot for an agent, kept current by `setPresenceDots`. */
export function presenceDot(agent, presence) {
  return h("span", {
    class: "dot",
    "data-testid": "presence-dot",
    "data-presence-of": agent,
    "data-presence": presence || "offline",
    role: "img",
    "aria-label": presence || "offline",
    title: presence || "offline",
  });
}

/** Updates every presence dot of `agent` on the page. */
export function setPresenceDots(agent, presence) {
  for (const dot of document.querySelectorAll(`[data-presence-of="${CSS.escape(agent)}"]`)) {
    dot.dataset.presence = presence;
    dot.setAttribute("aria-label", presence);
    dot.title = presence;
  }
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** A message time: the clock today, the date before. */
export function formatTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? clock.format(d) : `${day.format(d)} ${clock.format(d)}`;
}

/** A duration in words: `45 s`, `3 min`, `1 h 5 min`, `2 d 3 h`. */
function formatSpan(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

/**
 * A label that counts time: `since` (ms) shows how long ago, `until` (ms) how long is left;
 * `prefix` goes before the span. The shared ticker refreshes it every second.
 */
export function timer(attrs, { since, until, prefix = "" }) {
  const el = h("span", {
    ...attrs,
    "data-since": since ?? null,
    "data-until": until ?? null,
    "data-prefix": prefix,
  });
  tickOne(el, Date.now());
  return el;
}

function tickOne(el, now) {
  const prefix = el.dataset.prefix || "";
  if (el.dataset.since) el.textContent = prefix + formatSpan(now - Number(el.dataset.since));
  else if (el.dataset.until) el.textContent = prefix + formatSpan(Number(el.dataset.until) - now);
}

setInterval(() => {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-since], [data-until]")) tickOne(el, now);
}, 1000);

/** A customer address for people: WhatsApp's `whatsapp:` prefix is shown by the badge. */
export function displayAddress(address) {
  return String(address || "").replace(/^whatsapp:/, "");
}

/**
 * `url` if it is an absolute https address, safe to link or load; else null. A relative one
 * would reach this host with the agent's cookie, and plain http is not worth a link.
 */
export function webUrl(url) {
  try {
    const u = new URL(url);
    return u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

const toasts = () => $("toasts");

/** A short message in the corner, gone after a few seconds. */
export function toast(text, kind = "info") {
  const el = h("p", { class: `toast toast-${kind}`, "data-testid": "toast", role: "status", text });
  toasts().append(el);
  setTimeout(() => el.remove(), 6000);
}
