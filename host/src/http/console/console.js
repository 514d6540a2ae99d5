// The agent console's entry module: sign-in (token -> session cookie) and sign-out, the
// header (name, presence switch, stream state, new conversation), the tabs and search, and
// the wiring of the live stream to the list, the offer cards and the open conversation.
//
// Test hooks on `window.__plugboard`: `dropStream()` closes the event stream as a network drop
// would (it comes back through the normal reconnect path with ?last_event_id), `stream()`
// tells its state ({readyState, lastEventId, troubled}), `handled()` lists the ids of the
// last events handled, and `settled()` resolves once no refresh is waiting or running.

import { ApiError, del, get, post, put, setCsrf, whenSignedOut } from "./api.js";
import { $, toast } from "./dom.js";
import { getMe, loadDirectory, nameOf, setMe, setPresence, watchMyPresence } from "./people.js";
import { dropStream, handledIds, startStream, stopStream, streamInfo } from "./stream.js";
import { initList, refreshRow, reload, removeRow, resetList, selectRow, setQuery, setView, upsertRow } from "./list.js";
import { clearOffers, enableTake, hideOffer, initOffers, offerClock, showOffer, syncOffer } from "./offers.js";
import { addMessage, closeConversation, initConversation, openConversation, openConversationId, patchStatus, refreshOpen } from "./conversation.js";
import { initComposer } from "./composer.js";
import { initTransfer } from "./transfer.js";
import { initStart } from "./start.js";
import { initContacts, loadContacts } from "./contacts.js";
import { loadReports } from "./reports.js";

const REFRESH_BATCH_MS = 60;
const SEARCH_PAUSE_MS = 250;

let tab = "recent";
let pending = new Set();
let flushTimer = null;
let busy = 0;

function showSignIn(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  const error = $("signin-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("signin-token").focus();
}

async function enter(me) {
  setMe(me);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = me.name;
  $("tab-monitor").hidden = me.manages.length === 0;
  $("new-conversation").hidden = !me.may_start;
  showPresence(me.presence);
  startStream({ onEvent, onCaughtUp, onState }, me.last_event_id);
  try {
    await loadDirectory();
  } catch (e) {
    background(e);
  }
  await switchTab("recent");
}

function leave(message) {
  stopStream();
  clearOffers();
  closeConversation();
  resetList();
  setCsrf(null);
  pending = new Set();
  tab = "recent";
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  $("app").classList.remove("show-conversation");
  $("search").value = "";
  $("me-name").textContent = "";
  showSignIn(message);
}

async function signIn(e) {
  e.preventDefault();
  const token = $("signin-token").value.trim();
  const button = $("signin-submit");
  button.disabled = true;
  try {
    const { agent, csrf } = await post("/api/v1/session", { token });
    setCsrf(csrf);
    $("signin-form").reset();
    await enter(agent);
  } catch (err) {
    showSignIn(err.message);
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await del("/api/v1/session");
  } catch (e) {
    if (e.status !== 401) {
      toast(`Sign-out failed: ${e.message}`, "error");
      return;
    }
  }
  leave("Signed out.");
}

function showPresence(presence) {
  for (const b of document.querySelectorAll("#presence button")) {
    b.setAttribute("aria-pressed", String(b.dataset.presence === presence));
  }
  $("presence").dataset.presence = presence;
}

async function choosePresence(presence) {
  try {
    const answer = await put("/api/v1/agents/me/presence", { presence });
    setPresence(getMe().id, answer.presence);
  } catch (e) {
    toast(`Presence not changed: ${e.message}`, "error");
  }
}

async function switchTab(next) {
  tab = next;
  for (const b of document.querySelectorAll("#tabs [role=tab]")) {
    b.setAttribute("aria-selected", String(b.dataset.view === next));
  }
  const contacts = next === "contacts";
  const reports = next === "reports";
  $("rows").hidden = contacts || reports;
  $("contacts-panel").hidden = !contacts;
  $("reports-panel").hidden = !reports;
  $("search").parentElement.hidden = reports;
  $("app").classList.toggle("show-reports", reports);
  $("search").placeholder = contacts ? "Search contacts" : "Search conversations and messages";
  $("search").setAttribute("aria-label", $("search").placeholder);
  try {
    if (reports) {
      $("load-more").hidden = true;
      await loadReports();
    } else if (contacts) {
      $("load-more").hidden = true;
      await loadContacts($("search").value);
    } else {
      await setView(next, $("search").value);
    }
  } catch (e) {
    background(e);
  }
}

function onSearch() {
  const q = $("search").value;
  const job = tab === "contacts" ? loadContacts(q) : setQuery(q);
  job.catch(background);
}

/** A background failure: network trouble is the stream's to report; the rest is shown. */
function background(e) {
  if (e instanceof ApiError && (e.status === 0 || e.status === 401)) return;
  toast(e.message, "error");
}

function onState(state) {
  const el = $("stream-status");
  el.dataset.state = state;
  el.textContent = state === "live" ? "Live" : "Reconnecting…";
}

function onEvent(ev) {
  const id = ev.conversation;
  switch (ev.kind) {
    case "offered":
      showOffer(id, ev.data);
      break;
    case "offer_withdrawn":
    case "assigned":
    case "closed":
      hideOffer(id);
      break;
    case "presence":
      setPresence(ev.data.agent, ev.data.presence);
      break;
    case "status":
      if (id === openConversationId()) patchStatus(ev.data);
      break;
    case "send_failed":
    case "dead_lettered":
      if (id === openConversationId()) patchStatus({ id: ev.data.id, status: "failed", error: ev.data.error });
      break;
    default:
      break;
  }
  if (id) refreshSoon(id);
}

/** Folds the refreshes a burst of events asks for into one per conversation. */
function refreshSoon(id) {
  pending.add(id);
  if (flushTimer) return;
  flushTimer = setTimeout(() => {
    flushTimer = null;
    const ids = pending;
    pending = new Set();
    for (const each of ids) {
      if (tab !== "contacts") track(refreshRow(each).catch(background));
      if (each === openConversationId()) track(refreshOpen());
    }
  }, REFRESH_BATCH_MS);
}

/** After a drop: the stream replays what was missed; a re-list covers the rest cheaply. */
function onCaughtUp() {
  const listing = tab === "contacts" ? loadContacts() : reload();
  track(listing.catch(background));
  track(refreshOpen());
  track(loadDirectory().catch(background));
}

/** Counts a background refresh while it runs (see `settled`). */
function track(job) {
  busy += 1;
  job.finally(() => {
    busy -= 1;
  });
}

/** Resolves once no refresh is waiting or running. */
function settled() {
  return new Promise((resolve) => {
    const check = () => (busy === 0 && !flushTimer ? resolve() : setTimeout(check, 50));
    check();
  });
}

async function take(id) {
  try {
    const row = await post(`/api/v1/conversations/${encodeURIComponent(id)}/take`);
    hideOffer(id);
    upsertRow(row);
    open(id);
  } catch (e) {
    if (e.status === 409) {
      hideOffer(id);
      toast(`Taken by ${nameOf(e.body && e.body.owner) || "someone else"}`);
      refreshRow(id).catch(background);
    } else {
      enableTake(id);
      toast(e.message, "error");
    }
  }
}

function open(id) {
  selectRow(id);
  $("app").classList.add("show-conversation");
  track(openConversation(id));
}

function back() {
  $("app").classList.remove("show-conversation");
  const id = openConversationId();
  const row = id && document.querySelector(`#rows [data-id="${CSS.escape(id)}"]`);
  if (row) row.focus();
}

function wire() {
  whenSignedOut(() => leave("Your session ended: sign in again."));
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  for (const b of document.querySelectorAll("#presence button")) {
    b.addEventListener("click", () => choosePresence(b.dataset.presence));
  }
  for (const b of document.querySelectorAll("#tabs [role=tab]")) {
    b.addEventListener("click", () => switchTab(b.dataset.view));
  }
  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(onSearch, SEARCH_PAUSE_MS);
  });
  watchMyPresence(showPresence);
  initList({ onOpen: open, onRow: syncOffer, listingStarts: offerClock });
  initOffers(take);
  initConversation({
    onRow: upsertRow,
    onGone: (id) => {
      removeRow(id);
      toast("That conversation is no longer yours to see.");
      back();
    },
    onRead: (id) => track(refreshRow(id).catch(background)),
    onTake: take,
    onBack: back,
  });
  initComposer((m) => track(addMessage(m)));
  initTransfer();
  initStart(({ conversation }) => {
    upsertRow(conversation);
    open(conversation.id);
  });
  initContacts();
  window.__plugboard = { dropStream, stream: streamInfo, handled: handledIds, settled };
}

async function boot() {
  wire();
  try {
    const me = await get("/api/v1/agents/me");
    setCsrf(me.csrf);
    await enter(me);
  } catch (e) {
    showSignIn(e.status === 401 ? "" : e.message);
  }
}

boot();
