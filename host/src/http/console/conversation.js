// The conversation view: the header (who, channel, queue, state, owner) with Take, Transfer,
// Close and Reopen; the whole history oldest first (paged until the end), each message once
// (by id) with its delivery mark, attachments (images load on request), internal notes and
// host remarks; the read marker after showing messages; and live refreshes that fetch only
// what came after the last sequence number listed. Only listing pages move that cursor: a
// message the agent just sent shows at once but may be ahead of one not fetched yet. Delivery
// marks only move forward (pending, queued, sent, delivered, read; failed is final), whichever
// copy of a message or status event arrives last.

import { conv, get, post, withQuery } from "./api.js";
import { $, displayAddress, fill, formatTime, h, kindBadge, kindName, statusIcon, timer, webUrl } from "./dom.js";
import { getMe, nameOf } from "./people.js";
import { clearComposer, setConversation, updateConversation } from "./composer.js";
import { openTransfer } from "./transfer.js";

const PAGE = 200;
const RANK = { pending: 0, queued: 1, sent: 2, delivered: 3, read: 4, failed: 5 };

let openId = null;
let row = null;
let generation = 0;
let listedSeq = 0;
let readSeq = 0;
let elements = new Map();
let statuses = new Map();
let revealed = new Set();
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
  listedSeq = 0;
  readSeq = 0;
  elements = new Map();
  statuses = new Map();
  revealed = new Set();
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
  statuses = new Map();
  revealed = new Set();
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

/**
 * Applies a delivery status event (`{id, status, error}`) of the open conversation at once,
 * and remembers it for a message not shown yet.
 */
export function patchStatus(data) {
  if (!data || typeof data.id !== "string") return;
  statuses.set(data.id, further({ status: data.status, error: data.error ?? null }, statuses.get(data.id)));
  const li = elements.get(data.id);
  if (li) place(li.message);
}

/**
 * Shows a message the console itself just sent or noted, then refreshes from the last one
 * listed (so nothing that came before it is skipped), which moves the read marker past it.
 */
export function addMessage(m) {
  if (!m || m.conversation !== openId) return Promise.resolve();
  place(m);
  scrollToEnd();
  return refreshOpen();
}

/**
 * Pages through the messages after the last sequence listed (the message cursor is "after
 * this sequence number", so the last seq listed is a valid cursor), then moves the read marker.
 */
async function loadMessages(gen) {
  const first = elements.size === 0;
  const history = $("history");
  const nearEnd = history.scrollHeight - history.scrollTop - history.clientHeight < 80;
  let cursor = listedSeq > 0 ? String(listedSeq) : null;
  let added = false;
  do {
    const page = await get(withQuery(conv(openId, "/messages"), { limit: PAGE, cursor }));
    if (gen !== generation) return;
    for (const m of page.messages) {
      added = place(m) || added;
      if (Number.isSafeInteger(m.seq)) listedSeq = Math.max(listedSeq, m.seq);
    }
    cursor = page.next_cursor;
  } while (cursor);
  if (first || (added && nearEnd)) scrollToEnd();
  await markRead();
}

function scrollToEnd() {
  const history = $("history");
  history.scrollTop = history.scrollHeight;
}

/** The further along of two delivery states `{status, error}` (on a tie, `a`). */
function further(a, b) {
  return b && (RANK[b.status] ?? -1) > (RANK[a.status] ?? -1) ? b : a;
}

/**
 * Puts `m` in the history in sequence order, replacing its earlier version, with the furthest
 * delivery state any copy or event told; true if new.
 */
function place(m) {
  const old = elements.get(m.id);
  const best = further(further({ status: m.status, error: m.error }, old && old.message), statuses.get(m.id));
  const el = messageEl({ ...m, status: best.status, error: best.error ?? m.error });
  elements.set(m.id, el);
  if (old) {
    old.replaceWith(el);
    return false;
  }
  const history = $("history");
  const after = [...history.children].find((li) => Number(li.dataset.seq) > m.seq);
  history.insertBefore(el, after || null);
  return true;
}

/** Moves my read marker to the last message listed (once per new one). */
async function markRead() {
  if (!openId || listedSeq <= readSeq) return;
  const id = openId;
  const seq = listedSeq;
  readSeq = seq;
  try {
    await post(conv(id, "/read"), { seq });
  } catch {
    if (id === openId && readSeq === seq) readSeq = 0;
    return;
  }
  hooks.onRead(id);
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
    if (m.automated) {
      const bot = m.automated.startsWith("bot:") ? m.automated.slice(4) : null;
      const text = bot ? `bot ${bot}` : `automated: ${m.automated.replace(/_/g, " ")}`;
      meta.push(h("span", { class: "pill", "data-testid": "automated", text }));
    }
  }
  if (m.template && m.text) meta.push(h("span", { class: "pill", text: `template ${m.template}` }));
  if (m.failover) {
    const f = m.failover;
    meta.push(h("span", { class: "pill", "data-testid": "failover", title: `moved from ${f.from}: ${f.reason}`, text: `via ${f.to}` }));
  }
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

/**
 * An attachment: an https link (an image shows only once asked for, so opening a conversation
 * tells no image host anything); any other address only as text.
 */
function attachmentEl(a) {
  const url = webUrl(a.url);
  const type = a.content_type || "";
  if (!url) return h("p", { class: "attachment", "data-testid": "attachment-text", text: `Attachment: ${a.url}` });
  const link = h("a", {
    class: "attachment",
    href: url,
    target: "_blank",
    rel: "noopener noreferrer",
    "data-testid": "attachment-link",
    text: `${type || "File"}: ${new URL(url).pathname.split("/").pop() || url}`,
  });
  if (!type.startsWith("image/")) return link;
  const box = h("div", { class: "attachment-image" });
  const reveal = () => {
    revealed.add(url);
    const img = h("img", { src: url, alt: "Image attachment", "data-testid": "attachment-image" });
    fill(box, h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, img));
  };
  const ask = h("button", {
    type: "button",
    class: "quiet",
    "data-testid": "attachment-show",
    text: "Show image",
    on: { click: reveal },
  });
  if (revealed.has(url)) reveal();
  else fill(box, ask, link);
  return box;
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
  const owner =
    row.state === "bot"
      ? `with bot ${row.bot}`
      : row.owner
        ? `owner: ${nameOf(row.owner)}`
        : row.state === "queued"
          ? "waiting"
          : "";
  fill(
    $("conv-meta"),
    row.contact_name ? h("span", { text: displayAddress(row.customer) }) : null,
    h("span", { text: `${kindName(row.kind)} · ${row.channel}` }),
    h("span", { text: `queue ${row.queue}` }),
    h("span", { class: `state state-${row.state}`, "data-testid": "conversation-state", text: row.state }),
    owner ? h("span", { "data-testid": "conversation-owner", text: owner }) : null,
    row.waiting_since ? timer({ class: "waiting" }, { since: row.waiting_since, prefix: "for " }) : null,
    row.rating ? h("span", { class: "pill", "data-testid": "conversation-rating", text: `rated ${row.rating}/5` }) : null,
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
