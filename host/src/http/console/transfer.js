// The transfer dialog: hand the open conversation, with its history, to a colleague (listed
// with a live presence dot) or back to a queue. The API's refusal is shown in the dialog.

import { conv, post } from "./api.js";
import { $, fill, h, presenceDot } from "./dom.js";
import { loadColleagues, loadQueues } from "./people.js";

let target = null;
let done = () => {};

/** Opens the dialog for `row`; `onDone(row)` gets the transferred conversation. */
export async function openTransfer(row, onDone) {
  target = row;
  done = onDone;
  const dialog = $("transfer-dialog");
  $("transfer-error").hidden = true;
  fill($("transfer-agents"), h("li", { class: "muted", text: "Loading…" }));
  fill($("transfer-queues"));
  if (!dialog.open) dialog.showModal();
  try {
    const [agents, queues] = await Promise.all([loadColleagues(), loadQueues()]);
    if (target !== row) return;
    fill(
      $("transfer-agents"),
      agents.length
        ? agents.map((a) =>
            h("li", {}, h(
              "button",
              {
                type: "button",
                class: "choice",
                "data-testid": "transfer-agent",
                "data-agent": a.id,
                "aria-label": `Transfer to ${a.name} (${a.presence})`,
                on: { click: () => transfer({ agent: a.id }) },
              },
              presenceDot(a.id, a.presence),
              h("span", { text: a.name }),
              h("span", { class: "muted", text: a.queues.join(", ") }),
            )),
          )
        : h("li", { class: "muted", text: "No colleagues share your queues." }),
    );
    fill(
      $("transfer-queues"),
      queues.map((q) =>
        h("li", {}, h("button", {
          type: "button",
          class: "choice",
          "data-testid": "transfer-queue",
          "data-queue": q.name,
          "aria-label": `Transfer to queue ${q.name}`,
          on: { click: () => transfer({ queue: q.name }) },
        }, h("span", { text: q.name }), q.name === row.queue ? h("span", { class: "muted", text: "its queue now" }) : null)),
      ),
    );
  } catch (e) {
    showError(e.message);
  }
}

async function transfer(to) {
  const row = target;
  try {
    const fresh = await post(conv(row.id, "/transfer"), to);
    $("transfer-dialog").close();
    done(fresh);
  } catch (e) {
    showError(e.message);
  }
}

function showError(text) {
  const p = $("transfer-error");
  p.textContent = text;
  p.hidden = false;
}

/** Wires the dialog's Cancel button. */
export function initTransfer() {
  $("transfer-cancel").addEventListener("click", () => $("transfer-dialog").close());
}
