// The conversation list: the Recent, Archived and Monitor views (with search), one row per
// conversation, kept current from events without re-listing (`refreshRow` fetches one row and
// places, moves or drops it), paged with "Load more", and worked from the keyboard
// (ArrowUp/ArrowDown or k/j move, Enter opens). A listing page may be older than a row
// refreshed while it was on its way, so every row asked for meanwhile is refreshed again
// after the page. Rows that events add beyond the pages loaded are capped (oldest go first).

import { conv, get, withQuery } from "./api.js";
import { $, displayAddress, fill, formatTime, h, kindBadge, timer, toast } from "./dom.js";
import { getMe, nameOf } from "./people.js";

const PAGE = 50;
const SPARE = 200;

let view = "recent";
let query = "";
let rows = new Map();
let nextCursor = null;
let loaded = 0;
let generation = 0;
let selected = null;
let epoch = 0;
let asks = 0;
const latestAsk = new Map();
const watchers = new Set();
let hooks = null;

/**
 * Wires the list: `onOpen(id)` opens a conversation, `onRow(row, listedAt)` sees every row
 * fetched (`listedAt` is what `listingStarts()` said when the listing that brought it began,
 * null for one conversation's refresh or an action's answer).
 */
export function initList(handlers) {
  hooks = handlers;
  const ul = $("rows");
  ul.addEventListener("click", (e) => {
    const li = e.target.closest("[data-testid=row]");
    if (li) hooks.onOpen(li.dataset.id);
  });
  ul.addEventListener("keydown", onKey);
  $("load-more").addEventListener("click", () => loadMore().catch((e) => toast(e.message, "error")));
}

/** Forgets everything (sign-out). */
export function resetList() {
  generation += 1;
  epoch += 1;
  latestAsk.clear();
  rows = new Map();
  nextCursor = null;
  loaded = 0;
  selected = null;
  view = "recent";
  query = "";
  render();
}

/** Switches view (searching `q` in it) and lists it. */
export function setView(next, q) {
  view = next;
  query = q.trim();
  return reload();
}

/** Searches (`q=`) the current view. */
export function setQuery(q) {
  query = q.trim();
  return reload();
}

/** Lists the current view from its first page (also the catch-up after a stream drop). */
export function reload() {
  return listPage(null);
}

function loadMore() {
  return nextCursor ? listPage(nextCursor) : Promise.resolve();
}

/**
 * Lists one page (the first, which replaces the rows, or the one at `cursor`), then refreshes
 * again every conversation asked for while the page was on its way.
 */
async function listPage(cursor) {
  const gen = cursor ? generation : ++generation;
  const listedAt = hooks.listingStarts();
  const asked = new Set();
  watchers.add(asked);
  let page;
  try {
    page = await get(withQuery("/api/v1/conversations", { view, q: query, limit: PAGE, cursor }));
  } finally {
    watchers.delete(asked);
  }
  if (gen !== generation) return;
  if (!cursor) {
    rows = new Map();
    loaded = 0;
  }
  for (const row of page.conversations) {
    rows.set(row.id, row);
    hooks.onRow(row, listedAt);
  }
  loaded += page.conversations.length;
  nextCursor = page.next_cursor;
  render();
  await Promise.all([...asked].map((id) => refreshRow(id)));
}

/**
 * Fetches one conversation and places it (or drops it: gone, or no longer in this view). Only
 * the answer to the latest request for a conversation counts (answers may overtake).
 */
export async function refreshRow(id) {
  const asked = ++asks;
  latestAsk.set(id, asked);
  for (const listing of watchers) listing.add(id);
  const at = epoch;
  const latest = () => at === epoch && latestAsk.get(id) === asked;
  let row = null;
  try {
    row = await get(conv(id));
  } catch (e) {
    if (e.status !== 404 && e.status !== 403) {
      if (latest()) latestAsk.delete(id);
      throw e;
    }
  }
  if (!latest()) return;
  latestAsk.delete(id);
  if (row) upsertRow(row);
  else removeRow(id);
}

/** Places a row the console got from an action (take, transfer, ...) or a refresh. */
export function upsertRow(row) {
  hooks.onRow(row, null);
  if (!inView(row)) {
    rows.delete(row.id);
  } else if (rows.has(row.id) || !query) {
    // A search lists only what matched; a new conversation joins it at the next search.
    rows.set(row.id, row);
    trim();
  }
  render();
}

/** Keeps at most SPARE rows beyond the pages loaded, dropping the least recently updated. */
function trim() {
  const extra = rows.size - loaded - SPARE;
  if (extra <= 0) return;
  const oldest = sorted().filter((row) => row.id !== selected).slice(-extra);
  for (const row of oldest) rows.delete(row.id);
}

/** Drops a row from the list. */
export function removeRow(id) {
  if (rows.delete(id)) render();
}

/** Marks the open conversation's row. */
export function selectRow(id) {
  selected = id;
  render();
}

function inView(row) {
  const me = getMe();
  if (view === "recent") {
    return (
      (row.state === "queued" && me.queues.includes(row.queue)) ||
      (row.state !== "closed" && row.owner === me.id)
    );
  }
  if (view === "archived") return row.state === "closed" && (row.handled_by || []).includes(me.id);
  return me.manages.includes(row.queue);
}

function sorted() {
  return [...rows.values()].sort((a, b) => b.updated_at - a.updated_at || Number(b.id) - Number(a.id));
}

function render() {
  const ul = $("rows");
  const focused = ul.contains(document.activeElement) ? document.activeElement.dataset.id : null;
  const list = sorted();
  fill(ul, list.map(rowEl));
  if (list.length === 0) {
    ul.append(h("li", { class: "rows-empty", text: query ? "Nothing matches." : emptyText() }));
  }
  const current = focused || selected || (list[0] && list[0].id);
  const target = current && ul.querySelector(`[data-id="${CSS.escape(current)}"]`);
  const first = target || ul.querySelector("[data-testid=row]");
  if (first) first.tabIndex = 0;
  if (focused && target) target.focus();
  $("load-more").hidden = !nextCursor;
}

function emptyText() {
  return {
    recent: "No waiting or open conversations.",
    archived: "No closed conversations yet.",
    monitor: "Nothing in the queues you manage.",
  }[view];
}

function rowEl(row) {
  const name = row.contact_name || displayAddress(row.customer);
  const preview = row.match
    ? h("span", { class: "preview match", "data-testid": "row-preview", text: row.match })
    : previewEl(row.preview);
  const owner =
    view === "monitor"
      ? h("span", { class: "owner", "data-testid": "row-owner", text: row.owner ? nameOf(row.owner) : "nobody" })
      : null;
  return h(
    "li",
    {
      class: `row${row.id === selected ? " selected" : ""}${row.unread > 0 ? " unread" : ""}`,
      "data-testid": "row",
      "data-id": row.id,
      "data-state": row.state,
      "data-owner": row.owner || "",
      "data-customer": row.customer,
      "data-known": row.known_contact ? "true" : "false",
      "data-unread": row.unread,
      role: "option",
      "aria-selected": row.id === selected ? "true" : "false",
      "aria-label": `${name}, ${row.state}${row.unread ? `, ${row.unread} unread` : ""}`,
      tabindex: "-1",
    },
    kindBadge(row.kind),
    h(
      "div",
      { class: "row-main" },
      h(
        "div",
        { class: "row-line" },
        h("span", { class: "who", "data-testid": "row-name", text: name }),
        row.contact_name ? h("span", { class: "addr", text: displayAddress(row.customer) }) : null,
        row.known_contact
          ? null
          : h("span", { class: "pill pill-unknown", "data-testid": "row-unknown", text: "unknown" }),
        h("span", { class: "grow" }),
        row.waiting_since
          ? timer({ class: "waiting", "data-testid": "row-waiting", title: "Waiting" }, { since: row.waiting_since })
          : h("span", { class: "when", text: formatTime(row.preview ? row.preview.at : row.updated_at) }),
      ),
      h(
        "div",
        { class: "row-line" },
        preview,
        h("span", { class: "grow" }),
        row.unread > 0
          ? h("span", { class: "unread-count", "data-testid": "row-unread", "aria-label": `${row.unread} unread`, text: String(row.unread) })
          : null,
      ),
      h(
        "div",
        { class: "row-line row-meta" },
        h("span", { class: `state state-${row.state}`, "data-testid": "row-state", text: row.state }),
        owner,
        h("span", { class: "queue", text: row.queue }),
        row.priority
          ? h("span", { class: "pill", "data-testid": "row-priority", title: "priority: offered before lower priorities", text: `priority ${row.priority}` })
          : null,
      ),
    ),
  );
}

function previewEl(preview) {
  if (!preview) return h("span", { class: "preview", "data-testid": "row-preview", text: "No messages yet" });
  const lead = { outbound: "Reply: ", note: "Note: " }[preview.direction] || "";
  return h("span", {
    class: `preview preview-${preview.direction}`,
    "data-testid": "row-preview",
    text: lead + (preview.text ?? "(attachment)"),
  });
}

function onKey(e) {
  const items = [...$("rows").querySelectorAll("[data-testid=row]")];
  if (items.length === 0) return;
  const at = items.indexOf(document.activeElement);
  const move = (to) => {
    e.preventDefault();
    const next = items[Math.max(0, Math.min(items.length - 1, to))];
    for (const li of items) li.tabIndex = li === next ? 0 : -1;
    next.focus();
  };
  if (e.key === "ArrowDown" || e.key === "j") move(at + 1);
  else if (e.key === "ArrowUp" || e.key === "k") move(at < 0 ? 0 : at - 1);
  else if (e.key === "Home") move(0);
  else if (e.key === "End") move(items.length - 1);
  else if ((e.key === "Enter" || e.key === " ") && at >= 0) {
    e.preventDefault();
    hooks.onOpen(items[at].dataset.id);
  }
}
