// The new-conversation dialog (agents with `may_start`): an E.164 number, an optional
// channel (suggested from the channels GET /api/v1/channels says the agent may start on, or
// typed) and an optional first text. The API's refusal is shown as it words it; success
// opens the conversation.

import { get, post } from "./api.js";
import { $, fill, h } from "./dom.js";

let onStarted = () => {};

/** Wires the dialog; `started({conversation, message})` gets the API's answer. */
export function initStart(started) {
  onStarted = started;
  $("new-conversation").addEventListener("click", () => openStart());
  $("start-cancel").addEventListener("click", () => $("start-dialog").close());
  $("start-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { to: $("start-to").value.trim() };
    const channel = $("start-channel").value.trim();
    const text = $("start-text").value;
    if (channel) body.channel = channel;
    if (text.trim()) body.text = text;
    const error = $("start-error");
    error.hidden = true;
    try {
      const answer = await post("/api/v1/conversations", body);
      $("start-dialog").close();
      $("start-form").reset();
      onStarted(answer);
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  });
}

/** Opens the dialog, `to` filled in if given, with the channels the agent may start on. */
export async function openStart(to = "") {
  try {
    const { channels } = await get("/api/v1/channels");
    const mine = channels.filter((c) => c.startable);
    fill($("start-channels"), mine.map((c) => h("option", { value: c.name, label: `${c.name} (${c.kind})` })));
  } catch {
    // The suggestions are a convenience: the channel can still be typed.
  }
  $("start-error").hidden = true;
  if (to) $("start-to").value = to;
  $("start-dialog").showModal();
  $("start-to").focus();
}
