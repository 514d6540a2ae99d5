// Offer cards: an `offered` event pops a card (customer, channel, queue, time left) with Take;
// the card goes when the offer is withdrawn (taken, expired, transferred, closed, ...) or when
// the conversation is seen assigned or closed. A conversation that was offered to me while the
// page was away (seen in a listing: queued, me among `offered_to`) gets its card too, unless
// its offer was seen ending after that listing began (the listing is older than that news).

import { $, displayAddress, h, kindBadge, timer } from "./dom.js";
import { getMe } from "./people.js";

const ENDED_KEPT = 500;

const cards = new Map();
const ended = new Map();
let clock = 0;
let onTake = () => {};

/** `take(id)` runs when an agent presses a card's Take. */
export function initOffers(take) {
  onTake = take;
}

/** Removes every card (sign-out). */
export function clearOffers() {
  for (const card of cards.values()) card.remove();
  cards.clear();
  ended.clear();
}

/** A mark of the offer endings seen so far, taken when a listing begins (see `syncOffer`). */
export function offerClock() {
  return clock;
}

/** Shows (or refreshes) the card of conversation `id` from an `offered` event's data. */
export function showOffer(id, { customer, channel, queue, expires_at: expiresAt }) {
  const old = cards.get(id);
  const card = h(
    "article",
    {
      class: "offer",
      "data-testid": "offer-card",
      "data-conversation": id,
      "data-customer": customer,
      "aria-label": `Offer: ${displayAddress(customer)}`,
    },
    h(
      "div",
      { class: "offer-who" },
      old ? old.querySelector("[data-testid=kind]") : h("span", { class: "kind kind-other", "data-testid": "kind", text: "•" }),
      h("strong", { "data-testid": "offer-customer", text: old?.dataset.name || displayAddress(customer) }),
    ),
    h("p", { class: "offer-meta", text: `${channel} · queue ${queue}` }),
    expiresAt ? timer({ class: "offer-left", "data-testid": "offer-left" }, { until: expiresAt, prefix: "expires in " }) : null,
    h("button", {
      type: "button",
      class: "primary",
      "data-testid": "offer-take",
      "aria-label": `Take conversation with ${displayAddress(customer)}`,
      text: "Take",
      on: { click: (e) => { e.currentTarget.disabled = true; onTake(id); } },
    }),
  );
  if (old) old.replaceWith(card);
  else $("offers").append(card);
  cards.set(id, card);
}

/** Hides the card of conversation `id`, if any, noting that its offer ended now. */
export function hideOffer(id) {
  ended.delete(id);
  ended.set(id, ++clock);
  if (ended.size > ENDED_KEPT) ended.delete(ended.keys().next().value);
  const card = cards.get(id);
  if (!card) return;
  card.remove();
  cards.delete(id);
}

/**
 * Follows what a row says: a card goes once the conversation is no longer queued; a card
 * shows the contact's name and channel icon; a queued row offered to me that has no card gets
 * one when it came from a listing begun at `listedAt` (an `offerClock()` mark) and no ending
 * of its offer was seen since.
 */
export function syncOffer(row, listedAt = null) {
  if (row.state !== "queued") {
    hideOffer(row.id);
    return;
  }
  const me = getMe();
  const fresh = listedAt !== null && (ended.get(row.id) || 0) <= listedAt;
  if (fresh && !cards.has(row.id) && (row.offered_to || []).includes(me.id)) {
    showOffer(row.id, { customer: row.customer, channel: row.channel, queue: row.queue });
  }
  const card = cards.get(row.id);
  if (!card) return;
  card.querySelector("[data-testid=kind]").replaceWith(kindBadge(row.kind));
  if (row.contact_name) {
    card.dataset.name = row.contact_name;
    card.querySelector("[data-testid=offer-customer]").textContent = row.contact_name;
  }
}

/** Re-enables a card's Take after a failed attempt that left the offer open. */
export function enableTake(id) {
  const button = cards.get(id)?.querySelector("[data-testid=offer-take]");
  if (button) button.disabled = false;
}
