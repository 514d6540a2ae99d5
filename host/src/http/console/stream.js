// The live event stream: one EventSource on /api/v1/events (the session cookie authenticates
// it). Every event is handled once: ids at or below the highest one handled are dropped, so a
// resumed stream that repeats a few never duplicates anything. The browser resumes a dropped
// connection by itself (Last-Event-ID); when it gives up (readyState CLOSED) or the console
// drops the stream on purpose, a new EventSource resumes with ?last_event_id=<last handled>
// after a growing pause. Whenever the stream opens again after trouble the console is told,
// so it can re-list what it shows (cheap catch-up). The host sends a named `ping` every 15 s
// of quiet: it is no event, only a sign of life. A stream silent for 45 s (a half-open
// connection) is dropped and reopened; a page coming back into view checks at once.

import { get } from "./api.js";

/** Every kind the host sends (an EventSource only delivers named events it listens for). */
const KINDS = [
  "offered", "offer_withdrawn", "overflowed", "message", "outbound", "status", "send_failed",
  "dead_lettered", "note", "assigned", "transferred", "closed", "reopened", "presence",
  "opted_out", "opted_in", "unknown_contact",
];
const FIRST_PAUSE_MS = 500;
const LONGEST_PAUSE_MS = 10000;
const SILENT_MS = 45000;
const HANDLED_KEPT = 1000;

let source = null;
let lastId = null;
let troubled = false;
let pause = FIRST_PAUSE_MS;
let retry = null;
let hooks = null;
let heard = 0;
let watchdog = null;
let handled = [];

/**
 * Opens the stream after event `from` (the log's end when the console read who it is, so
 * nothing between that read and the stream's start is lost). `onEvent({id, kind,
 * conversation, data, at})` gets each new event, `onCaughtUp()` runs when the stream is back
 * after a drop, `onState("live"|"reconnecting")` reports the connection for the header.
 */
export function startStream(handlers, from) {
  stopStream();
  hooks = handlers;
  lastId = Number.isSafeInteger(from) ? from : null;
  troubled = false;
  pause = FIRST_PAUSE_MS;
  handled = [];
  connect();
}

/** Closes the stream for good (sign-out). */
export function stopStream() {
  clearTimeout(retry);
  clearTimeout(watchdog);
  retry = null;
  watchdog = null;
  if (source) source.close();
  source = null;
  hooks = null;
}

/** Closes the connection as a network drop would; the normal reconnect path brings it back. */
export function dropStream() {
  if (!hooks) return;
  clearTimeout(watchdog);
  if (source) source.close();
  source = null;
  trouble();
  later();
}

/** What the stream is doing, for tests and the header. */
export function streamInfo() {
  return {
    readyState: source ? source.readyState : EventSource.CLOSED,
    lastEventId: lastId,
    troubled,
  };
}

/** The ids of the last events handled, oldest first (for tests: none may repeat). */
export function handledIds() {
  return [...handled];
}

function connect() {
  const url = lastId === null ? "/api/v1/events" : `/api/v1/events?last_event_id=${lastId}`;
  const es = new EventSource(url);
  source = es;
  alive();
  es.addEventListener("open", () => {
    if (source !== es) return;
    alive();
    pause = FIRST_PAUSE_MS;
    hooks.onState("live");
    if (troubled) {
      troubled = false;
      hooks.onCaughtUp();
    }
  });
  es.addEventListener("error", () => {
    if (source !== es) return;
    trouble();
    if (es.readyState === EventSource.CLOSED) {
      source = null;
      later();
    }
  });
  es.addEventListener("ping", () => {
    if (source === es) alive();
  });
  for (const kind of KINDS) es.addEventListener(kind, (e) => handle(es, e));
}

function handle(es, e) {
  if (source !== es) return;
  alive();
  const id = Number(e.lastEventId);
  if (!Number.isSafeInteger(id)) return;
  if (lastId !== null && id <= lastId) return;
  let event;
  try {
    event = JSON.parse(e.data);
  } catch {
    return;
  }
  lastId = id;
  handled.push(id);
  if (handled.length > HANDLED_KEPT) handled.shift();
  hooks.onEvent({ ...event, id });
}

/** Something came from the host: the silence count starts again. */
function alive() {
  heard = Date.now();
  clearTimeout(watchdog);
  watchdog = setTimeout(checkSilence, SILENT_MS);
}

/** Drops a stream silent too long, else looks again when it would be (timers may run late). */
function checkSilence() {
  if (!source) return;
  const quiet = Date.now() - heard;
  if (quiet >= SILENT_MS) {
    dropStream();
  } else {
    clearTimeout(watchdog);
    watchdog = setTimeout(checkSilence, SILENT_MS - quiet);
  }
}

function trouble() {
  troubled = true;
  hooks.onState("reconnecting");
}

function later() {
  clearTimeout(retry);
  retry = setTimeout(reopen, pause);
  pause = Math.min(pause * 2, LONGEST_PAUSE_MS);
}

/** Reopens once the host answers (a 401 ends the session instead, through the api module). */
async function reopen() {
  retry = null;
  if (!hooks || source) return;
  try {
    await get("/api/v1/agents/me");
  } catch (e) {
    if (e.status !== 401 && hooks) later();
    return;
  }
  if (hooks && !source) connect();
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") checkSilence();
});

addEventListener("online", () => {
  if (hooks && !source && retry) {
    clearTimeout(retry);
    reopen();
  }
});
