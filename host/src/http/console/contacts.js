// The contacts tab: the directory searched with the shared search box, a form to add a
// contact (name and address), Rename on each entry (the same POST with the same address) and,
// for agents who may start conversations, Message (the new-conversation dialog, filled in).

import { get, post, withQuery } from "./api.js";
import { $, fill, h } from "./dom.js";
import { getMe } from "./people.js";
import { openStart } from "./start.js";

let query = "";
let generation = 0;
let editing = null;

/** Wires the add form. */
export function initContacts() {
  $("contact-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("contact-name").value.trim();
    const address = $("contact-address").value.trim();
    if (await save({ name, address }, $("contact-error"))) {
      $("contact-form").reset();
    }
  });
}

/** Lists the contacts matching `q` (empty: all). */
export async function loadContacts(q = query) {
  query = q.trim();
  const gen = ++generation;
  const { contacts } = await get(withQuery("/api/v1/contacts", { q: query }));
  if (gen !== generation) return;
  const ul = $("contacts");
  const open = editing;
  fill(ul, contacts.map(contactEl));
  if (contacts.length === 0) ul.append(h("li", { class: "rows-empty", text: query ? "Nothing matches." : "No contacts yet." }));
  // A rename in progress survives the re-list (a search, a catch-up after a drop).
  const li = open && [...ul.children].find((el) => el.dataset.address === open.address);
  if (li) li.edit(open.input.value, false);
}

async function save(contact, errorEl) {
  errorEl.hidden = true;
  try {
    await post("/api/v1/contacts", contact);
    if (editing && editing.address === contact.address) editing = null;
    await loadContacts();
    return true;
  } catch (e) {
    errorEl.textContent = e.message;
    errorEl.hidden = false;
    return false;
  }
}

function contactEl(c) {
  const li = h("li", { class: "contact", "data-testid": "contact", "data-address": c.address });
  const show = () => {
    if (editing && editing.address === c.address) editing = null;
    fill(
      li,
      h("div", { class: "row-main" },
        h("span", { class: "who", "data-testid": "contact-name", text: c.name }),
        h("span", { class: "addr", text: c.address })),
      getMe().may_start
        ? h("button", {
            type: "button",
            class: "quiet",
            "data-testid": "contact-message",
            "aria-label": `Message ${c.name}`,
            text: "Message",
            on: { click: () => openStart(c.address) },
          })
        : null,
      h("button", {
        type: "button",
        class: "quiet",
        "data-testid": "contact-rename",
        "aria-label": `Rename ${c.name}`,
        text: "Rename",
        on: { click: () => edit(c.name, true) },
      }),
    );
  };
  const edit = (name, fresh) => {
    const input = h("input", { type: "text", value: name, required: true, "aria-label": `New name for ${c.address}`, "data-testid": "contact-rename-input" });
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const form = h(
      "form",
      {
        class: "rename",
        on: {
          submit: async (e) => {
            e.preventDefault();
            await save({ name: input.value.trim(), address: c.address }, error);
          },
        },
      },
      input,
      h("button", { type: "submit", class: "primary", "data-testid": "contact-rename-save", text: "Save" }),
      h("button", { type: "button", class: "quiet", text: "Cancel", on: { click: show } }),
      error,
    );
    fill(li, form);
    editing = { address: c.address, input };
    input.focus();
    if (fresh) input.select();
  };
  li.edit = edit;
  show();
  return li;
}
