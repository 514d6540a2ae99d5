// The reply box, obeying the conversation's `rules`: a character counter against max_chars
// (and an SMS segment counter where `segments` is set), the channel's reply window (outside it
// the free text is off and a template picker with one field per variable takes its place; a
// window that closes while the conversation is open closes here on time), an attachment URL
// only where the channel takes attachments, opted-out customers and read-only conversations
// (nothing can be sent; notes still work), canned replies typed as /shortcut (Tab or Enter
// inserts the text), and a Note switch that posts an internal note instead. Enter sends,
// Shift+Enter is a new line; the API's refusal is shown under the box as it words it. What
// the agent typed while a send was on its way stays.

import { conv, post } from "./api.js";
import { $, fill, h, kindName, timer } from "./dom.js";
import { cannedFor } from "./people.js";
import { characters, segments } from "./sms.js";

const NOTE_MAX_CHARS = 5000;
const NO_RULES = {
  max_chars: NOTE_MAX_CHARS,
  segments: false,
  attachments: false,
  window: null,
  templates: [],
  opted_out: false,
  read_only: null,
};

let current = null;
let noteMode = false;
let sending = false;
let templatesShown = "";
let suggestions = null;
let windowTimer = null;
let onSent = () => {};

/** Wires the box; `sent(msg)` gets each message or note the API accepted. */
export function initComposer(sent) {
  onSent = sent;
  const input = $("reply-input");
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  input.addEventListener("input", () => {
    counter();
    suggest();
  });
  input.addEventListener("keydown", onKey);
  input.addEventListener("blur", () => hideSuggestions());
  $("note-toggle").addEventListener("click", () => {
    noteMode = !noteMode;
    apply();
    input.focus();
  });
  $("template-select").addEventListener("change", variables);
  $("template-send").addEventListener("click", sendTemplate);
  $("canned").addEventListener("mousedown", (e) => {
    const li = e.target.closest("li");
    if (!li) return;
    e.preventDefault();
    insertCanned(Number(li.dataset.index));
  });
}

/** A different conversation: empty box, reply mode, its rules. */
export function setConversation(row) {
  current = row;
  noteMode = false;
  templatesShown = "";
  $("reply-input").value = "";
  $("attachment-url").value = "";
  showError(null);
  hideSuggestions();
  apply();
}

/** The same conversation with fresh rules (what was typed stays). */
export function updateConversation(row) {
  if (!current || current.id !== row.id) {
    setConversation(row);
    return;
  }
  current = row;
  apply();
}

/** No conversation open. */
export function clearComposer() {
  current = null;
  clearTimeout(windowTimer);
  windowTimer = null;
  hideSuggestions();
}

function rules() {
  return { ...NO_RULES, ...(current && current.rules) };
}

/** What the banner says while the channel's reply window is closed. */
function windowClosedText(r) {
  return `${r.window.hours}-hour window closed: only templates`;
}

/** Whether the reply window is closed now (the host said so, or its closing time passed). */
function windowClosed(r) {
  if (!r.window) return false;
  return !r.window.open || (Number.isFinite(r.window.closes_at) && Date.now() >= r.window.closes_at);
}

/** Applies the rules again when an open window closes. */
function watchWindow(r) {
  clearTimeout(windowTimer);
  windowTimer = null;
  if (r.window && !windowClosed(r) && Number.isFinite(r.window.closes_at)) {
    windowTimer = setTimeout(apply, r.window.closes_at - Date.now());
  }
}

/** Why free text cannot go out now, or null. */
function blocked(r) {
  if (r.read_only) return `Nothing can be sent: ${r.read_only}.`;
  if (r.opted_out) return "The customer opted out: nothing can be sent until they opt back in.";
  if (windowClosed(r)) return windowClosedText(r);
  return null;
}

function apply() {
  if (!current) return;
  const r = rules();
  const reason = blocked(r);
  const input = $("reply-input");
  $("composer").classList.toggle("note-mode", noteMode);
  const toggle = $("note-toggle");
  toggle.setAttribute("aria-pressed", String(noteMode));
  toggle.textContent = noteMode ? "Note: on" : "Note";
  banner(r);
  watchWindow(r);
  const picker = $("template-picker");
  picker.hidden = noteMode || r.opted_out || Boolean(r.read_only) || !windowClosed(r);
  if (!picker.hidden) templates(r.templates);
  input.disabled = !noteMode && reason !== null;
  input.setAttribute("aria-label", noteMode ? "Internal note" : "Reply");
  input.placeholder = noteMode
    ? "Internal note: only agents see it"
    : reason || `Reply on ${kindName(current.kind)}… (Enter sends, Shift+Enter new line, / for canned replies)`;
  $("attachment-row").hidden = noteMode || !r.attachments || reason !== null;
  $("send-button").disabled = input.disabled;
  $("send-button").textContent = noteMode ? "Add note" : "Send";
  counter();
}

function banner(r) {
  const p = $("composer-banner");
  p.className = "banner";
  if (r.read_only || r.opted_out) {
    p.classList.add("banner-warn");
    const label = r.read_only
      ? h("span", { "data-testid": "read-only", text: "Read only. " })
      : h("span", { "data-testid": "opted-out", text: "Opted out. " });
    fill(p, label, blocked(r), noteMode ? "" : " Notes still work.");
  } else if (windowClosed(r)) {
    p.classList.add("banner-warn");
    fill(p, windowClosedText(r));
  } else if (r.window && r.window.closes_at) {
    fill(p, `${r.window.hours}-hour window open: closes in `, timer({ "data-testid": "window-left" }, { until: r.window.closes_at }));
  } else {
    fill(p);
  }
  p.hidden = p.childNodes.length === 0;
}

function templates(list) {
  const key = JSON.stringify(list);
  if (key === templatesShown) return;
  templatesShown = key;
  const select = $("template-select");
  fill(
    select,
    h("option", { value: "", text: list.length ? "Pick a template…" : "No approved templates" }),
    list.map((t, i) => h("option", { value: String(i), text: t.language ? `${t.name} (${t.language})` : t.name })),
  );
  variables();
}

function variables() {
  const t = rules().templates[Number($("template-select").value)];
  const box = $("template-variables");
  if (!t || $("template-select").value === "") {
    fill(box);
    $("template-send").disabled = true;
    return;
  }
  fill(
    box,
    t.variables.map((name) =>
      h("label", { class: "field" }, h("span", { text: `{{${name}}}` }), h("input", {
        type: "text",
        "data-testid": "template-variable",
        "data-name": name,
        "aria-label": `Template variable ${name}`,
        required: true,
      })),
    ),
  );
  $("template-send").disabled = false;
}

function counter() {
  if (!current) return;
  const r = rules();
  const text = $("reply-input").value;
  const n = characters(text);
  const max = noteMode ? NOTE_MAX_CHARS : r.max_chars;
  let line = `${n} / ${max}`;
  if (r.segments && !noteMode) {
    const s = segments(text);
    line += ` · ${s.segments} segment${s.segments === 1 ? "" : "s"} (${s.encoding})`;
  }
  const el = $("segment-counter");
  el.textContent = line;
  el.classList.toggle("over", n > max);
}

function showError(text) {
  const p = $("composer-error");
  p.textContent = text || "";
  p.hidden = !text;
}

async function send() {
  if (!current) return;
  const r = rules();
  const input = $("reply-input");
  const text = input.value;
  const url = $("attachment-url").value.trim();
  if (!text.trim() && !(url && !noteMode)) return;
  let path = conv(current.id, "/messages");
  let body = {};
  if (noteMode) {
    path = conv(current.id, "/notes");
    body = { text };
  } else {
    const reason = blocked(r);
    const n = characters(text);
    if (reason) return showError(reason);
    if (n > r.max_chars) return showError(`Too long: ${n} characters, ${kindName(current.kind)} takes at most ${r.max_chars}.`);
    if (text) body.text = text;
    if (url && r.attachments) body.attachments = [{ url }];
  }
  await submit(path, body, () => {
    if (input.value === text) input.value = "";
    if (body.attachments && $("attachment-url").value.trim() === url) $("attachment-url").value = "";
    counter();
  });
}

async function sendTemplate() {
  if (!current) return;
  const t = rules().templates[Number($("template-select").value)];
  if (!t) return;
  const inputs = [...$("template-variables").querySelectorAll("input")];
  const empty = inputs.find((input) => !input.value.trim());
  if (empty) {
    showError(`Fill in the template variable {{${empty.dataset.name}}}.`);
    empty.focus();
    return;
  }
  const values = {};
  for (const input of inputs) values[input.dataset.name] = input.value;
  const template = { name: t.name, variables: values };
  if (t.language) template.language = t.language;
  await submit(conv(current.id, "/messages"), { template }, () => {
    for (const input of inputs) if (input.value === values[input.dataset.name]) input.value = "";
  });
}

async function submit(path, body, clear) {
  if (sending) return;
  sending = true;
  showError(null);
  const id = current.id;
  try {
    const msg = await post(path, body);
    if (current && current.id === id) clear();
    onSent(msg);
  } catch (e) {
    if (current && current.id === id) showError(e.message);
  } finally {
    sending = false;
  }
}

function onKey(e) {
  if (suggestions) {
    const n = suggestions.items.length;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      suggestions.index = (suggestions.index + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      renderSuggestions();
      return;
    }
    if (e.key === "Tab" || (e.key === "Enter" && !e.shiftKey)) {
      e.preventDefault();
      insertCanned(suggestions.index);
      return;
    }
    if (e.key === "Escape") {
      e.preventDefault();
      hideSuggestions();
      return;
    }
  }
  if (e.key === "Enter" && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
}

/** Offers the canned replies whose shortcut starts with the `/word` just typed. */
function suggest() {
  const input = $("reply-input");
  const canned = current ? cannedFor(current.queue) : [];
  const before = input.value.slice(0, input.selectionStart);
  const match = /(?:^|\s)\/([^\s/]*)$/.exec(before);
  if (!match || canned.length === 0) return hideSuggestions();
  const typed = match[1].toLowerCase();
  const items = canned.filter((c) => c.shortcut.toLowerCase().startsWith(typed));
  if (items.length === 0) return hideSuggestions();
  suggestions = { items, index: 0, start: input.selectionStart - typed.length - 1 };
  renderSuggestions();
}

function renderSuggestions() {
  const ul = $("canned");
  fill(
    ul,
    suggestions.items.map((c, i) =>
      h(
        "li",
        {
          role: "option",
          "data-testid": "canned-suggestion",
          "data-index": i,
          "aria-selected": i === suggestions.index ? "true" : "false",
          class: i === suggestions.index ? "active" : null,
        },
        h("strong", { text: `/${c.shortcut}` }),
        h("span", { text: c.text }),
      ),
    ),
  );
  ul.hidden = false;
}

function hideSuggestions() {
  suggestions = null;
  $("canned").hidden = true;
}

function insertCanned(index) {
  if (!suggestions) return;
  const input = $("reply-input");
  const item = suggestions.items[index];
  const end = input.selectionStart;
  input.value = input.value.slice(0, suggestions.start) + item.text + input.value.slice(end);
  const caret = suggestions.start + item.text.length;
  input.setSelectionRange(caret, caret);
  hideSuggestions();
  counter();
}
