// The conversation view: the header (who, channel, queue, state, owner) with Take, Transfer,
// Close and Reopen; the whole history oldest first (paged until the end), each message once
// (by id) with its delivery mark, attachments, internal notes and host remarks; the read
// marker after showing messages; and live refreshes that fetch only what came after the last
// sequence number shown.

import { conv, get, post, withQuery } from "./api.js";
import { $, displayAddress, fill, formatTime, h, kindBadge, kindName, statusIcon, timer, webUrl } from "./dom.js";
import { getMe, nameOf } from "./people.js";
import { clearComposer, setConversation, updateConversation } from "./composer.js";
import { openTransfer } from "./transfer.js";

const PAGE = 200;

let openId = null;
let row = null;
let generation = 0;
let lastSeq = 0;
let readSeq = 0;
let elements = new Map();
let running = null;
let again = false;
let hooks = null;

/**
 * Wires the view: `onRow(row)` gets every row an action or refresh returns, `onGone(id)` runs
 * when the open conversation is no longer visible, `onRead(id)` after the read marker moved,
 * `onTake(id)` takes it (shared with the offer cards), `onBack()` returns to the list.
 */
export function initConversation(handlers) {
  hooks = handlers;
  $("take-button").addEventListener("click", () => hooks.onTake(openId));
  $("transfer-button").addEventListener("click", () => openTransfer(row, apply));
  $("close-button").addEventListener("click", () => act("/close"));
  $("reopen-button").addEventListener("click", () => act("/reopen"));
  $("back").addEventListener("click", () => hooks.onBack());
}

/** The open conversation's id, or null. */
export function openConversationId() {
  return openId;
}

/** Opens conversation `id`: its header, then its whole history. */
export async function openConversation(id) {
  const gen = ++generation;
  openId = id;
  row = null;
  lastSeq = 0;
  readSeq = 0;
  elements = new Map();
  const pane = $("conversation");
  pane.dataset.id = id;
  $("conv-empty").hidden = true;
  $("conv-body").hidden = false;
  fill($("history"));
  showError(null);
  try {
    const fresh = await get(conv(id));
    if (gen !== generation) return;
    row = fresh;
    renderHead();
    setConversation(row);
    await loadMessages(gen);
  } catch (e) {
    if (gen !== generation) return;
    if (e.status === 404 || e.status === 403) gone();
    else showError(e.message);
  }
}

/** Shows the empty pane. */
export function closeConversation() {
  generation += 1;
  openId = null;
  row = null;
  elements = new Map();
  delete $("conversation").dataset.id;
  delete $("conversation").dataset.state;
  $("conv-empty").hidden = false;
  $("conv-body").hidden = true;
  fill($("history"));
  clearComposer();
}

/**
 * Re-reads the open conversation and the messages after the last one shown. Calls made while
 * one runs fold into one more run after it.
 */
export function refreshOpen() {
  if (!openId) return Promise.resolve();
  if (running) {
    again = true;
    return running;
  }
  running = (async () => {
    try {
      do {
        again = false;
        await refreshOnce();
      } while (again);
    } finally {
      running = null;
    }
  })();
  return running;
}

async function refreshOnce() {
  const gen = generation;
  try {
    const fresh = await get(conv(openId));
    if (gen !== generation) return;
    row = fresh;
    renderHead();
    updateConversation(row);
    await loadMessages(gen);
  } catch (e) {
    if (gen !== generation) return;
    if (e.status === 404 || e.status === 403) gone();
    else if (e.status !== 0) showError(e.message);
  }
}

/** Applies a delivery status event to the message it names, at once. */
export function patchStatus(data) {
  const li = elements.get(data.id);
  if (!li) return;
  const m = { ...li.message, status: data.status, error: data.error ?? li.message.error };
  place(m);
}

/**
 * Shows a message the console itself just sent or noted (the refresh that follows dedupes);
 * the agent has read their own words, so the read marker moves past it.
 */
export function addMessage(m) {
  if (m && m.conversation === openId) {
    place(m);
    scrollToEnd();
    markRead();
  }
}

/**
 * Pages through the messages after the last sequence shown (the message cursor is "after this
 * sequence number", so the last seq shown is a valid cursor), then moves the read marker.
 */
async function loadMessages(gen) {
  const first = elements.size === 0;
  const history = $("history");
  const nearEnd = history.scrollHeight - history.scrollTop - history.clientHeight < 80;
  let cursor = lastSeq > 0 ? String(lastSeq) : null;
  let added = false;
  do {
    const page = await get(withQuery(conv(openId, "/messages"), { limit: PAGE, cursor }));
    if (gen !== generation) return;
    for (const m of page.messages) added = place(m) || added;
    cursor = page.next_cursor;
  } while (cursor);
  if (first || (added && nearEnd)) scrollToEnd();
  markRead();
}

function scrollToEnd() {
  const history = $("history");
  history.scrollTop = history.scrollHeight;
}

/** Puts `m` in the history in sequence order, replacing its earlier version; true if new. */
function place(m) {
  const el = messageEl(m);
  const old = elements.get(m.id);
  elements.set(m.id, el);
  if (Number.isSafeInteger(m.seq)) lastSeq = Math.max(lastSeq, m.seq);
  if (old) {
    old.replaceWith(el);
    return false;
  }
  const history = $("history");
  const after = [...history.children].find((li) => Number(li.dataset.seq) > m.seq);
  history.insertBefore(el, after || null);
  return true;
}

function markRead() {
  if (!openId || lastSeq <= readSeq) return;
  const id = openId;
  const seq = lastSeq;
  readSeq = seq;
  post(conv(id, "/read"), { seq }).then(
    () => hooks.onRead(id),
    () => {
      if (readSeq === seq) readSeq = 0;
    },
  );
}

function messageEl(m) {
  const attrs = {
    class: `msg msg-${m.direction}${m.status === "failed" ? " msg-failed" : ""}`,
    "data-testid": "message",
    "data-id": m.id,
    "data-seq": m.seq,
    "data-direction": m.direction,
    "data-status": m.status || "",
    "data-template": m.template || null,
  };
  const meta = [];
  if (m.direction === "note") {
    meta.push(h("span", { class: "note-label", text: "Internal note, not sent" }));
    meta.push(h("span", { class: "author", text: nameOf(m.author) }));
  } else if (m.direction === "outbound") {
    meta.push(h("span", { class: "author", text: m.author ? nameOf(m.author) : "Plugboard" }));
  }
  if (m.template && m.text) meta.push(h("span", { class: "pill", text: `template ${m.template}` }));
  meta.push(h("time", { datetime: new Date(m.created_at).toISOString(), text: formatTime(m.created_at) }));
  if (m.direction === "outbound") meta.push(statusIcon(m.status));
  const li = h(
    "li",
    attrs,
    h(
      "div",
      { class: "bubble" },
      m.text ? h("p", { class: "text", "data-testid": "message-text", text: m.text }) : null,
      !m.text && m.template ? h("p", { class: "text muted", text: `Template “${m.template}”` }) : null,
      (m.attachments || []).map(attachmentEl),
      m.status === "failed" && m.error
        ? h("p", { class: "msg-error", "data-testid": "message-error", text: m.error })
        : null,
      h("div", { class: "msg-meta" }, meta),
    ),
    m.note ? h("p", { class: "remark", "data-testid": "message-remark", text: m.note }) : null,
  );
  li.message = m;
  return li;
}

function attachmentEl(a) {
  const url = webUrl(a.url);
  const type = a.content_type || "";
  if (!url) return h("p", { class: "attachment", text: `Attachment: ${a.url}` });
  if (type.startsWith("image/")) {
    return h(
      "a",
      { class: "attachment attachment-image", href: url, target: "_blank", rel: "noopener noreferrer" },
      h("img", { src: url, alt: "Image attachment", loading: "lazy", "data-testid": "attachment-image" }),
    );
  }
  return h("a", {
    class: "attachment",
    href: url,
    target: "_blank",
    rel: "noopener noreferrer",
    "data-testid": "attachment-link",
    text: `${type || "File"}: ${new URL(url).pathname.split("/").pop() || url}`,
  });
}

function renderHead() {
  const me = getMe();
  const pane = $("conversation");
  pane.dataset.state = row.state;
  const name = row.contact_name || displayAddress(row.customer);
  fill(
    $("conv-name"),
    kindBadge(row.kind),
    h("span", { text: name }),
    row.known_contact ? null : h("span", { class: "pill pill-unknown", text: "unknown" }),
  );
  const owner = row.owner ? `owner: ${nameOf(row.owner)}` : row.state === "queued" ? "waiting" : "";
  fill(
    $("conv-meta"),
    row.contact_name ? h("span", { text: displayAddress(row.customer) }) : null,
    h("span", { text: `${kindName(row.kind)} · ${row.channel}` }),
    h("span", { text: `queue ${row.queue}` }),
    h("span", { class: `state state-${row.state}`, "data-testid": "conversation-state", text: row.state }),
    owner ? h("span", { "data-testid": "conversation-owner", text: owner }) : null,
    row.waiting_since ? timer({ class: "waiting" }, { since: row.waiting_since, prefix: "for " }) : null,
  );
  const mine = row.owner === me.id;
  const manager = me.manages.includes(row.queue);
  $("take-button").hidden = row.state !== "queued";
  $("transfer-button").hidden = row.state === "closed" || !(mine || manager);
  $("close-button").hidden = row.state === "closed" || !(mine || manager);
  $("reopen-button").hidden = row.state !== "closed";
}

async function act(path) {
  showError(null);
  const id = openId;
  try {
    apply(await post(conv(id, path)));
  } catch (e) {
    if (id === openId) showError(e.message);
  }
}

/** Takes in a row an action answered with (take, transfer, close, reopen). */
function apply(fresh) {
  hooks.onRow(fresh);
  if (fresh.id !== openId) return;
  row = { ...row, ...fresh };
  renderHead();
  updateConversation(row);
}

/** Shows an action's error under the header (null hides it). */
function showError(text) {
  const p = $("conv-error");
  p.textContent = text || "";
  p.hidden = !text;
}

function gone() {
  const id = openId;
  closeConversation();
  hooks.onGone(id);
}
