// The live event stream: one EventSource on /api/v1/events (the session cookie authenticates
// it). Every event is handled once: ids at or below the highest one handled are dropped, so a
// resumed stream that repeats a few never duplicates anything. The browser resumes a dropped
// connection by itself (Last-Event-ID); when it gives up (readyState CLOSED) or the console
// drops the stream on purpose, a new EventSource resumes with ?last_event_id=<last handled>
// after a growing pause. Whenever the stream opens again after trouble the console is told,
// so it can re-list what it shows (cheap catch-up).

import { get } from "./api.js";

/** Every kind the host sends (an EventSource only delivers named events it listens for). */
const KINDS = [
  "offered", "offer_withdrawn", "message", "outbound", "status", "note", "assigned",
  "transferred", "closed", "reopened", "presence", "opted_out", "opted_in", "unknown_contact",
];
const FIRST_PAUSE_MS = 500;
const LONGEST_PAUSE_MS = 10000;

let source = null;
let lastId = null;
let troubled = false;
let pause = FIRST_PAUSE_MS;
let retry = null;
let hooks = null;

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
  connect();
}

/** Closes the stream for good (sign-out). */
export function stopStream() {
  clearTimeout(retry);
  retry = null;
  if (source) source.close();
  source = null;
  hooks = null;
}

/** Closes the connection as a network drop would; the normal reconnect path brings it back. */
export function dropStream() {
  if (!hooks) return;
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

function connect() {
  const url = lastId === null ? "/api/v1/events" : `/api/v1/events?last_event_id=${lastId}`;
  const es = new EventSource(url);
  source = es;
  es.addEventListener("open", () => {
    if (source !== es) return;
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
  for (const kind of KINDS) es.addEventListener(kind, (e) => handle(es, e));
}

function handle(es, e) {
  if (source !== es) return;
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
  hooks.onEvent({ ...event, id });
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

addEventListener("online", () => {
  if (hooks && !source && retry) {
    clearTimeout(retry);
    reopen();
  }
});
