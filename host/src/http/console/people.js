// Who is who: the signed-in agent, their colleagues (with presence) and the configured queues
// (transfer targets, canned replies). Other modules ask here for names and canned replies;
// presence events land here and every dot on the page follows.

import { get } from "./api.js";
import { setPresenceDots } from "./dom.js";

let me = null;
let colleagues = new Map();
let queues = [];
const presenceWatchers = [];

/** Remembers the signed-in agent (`/agents/me` or sign-in's `agent`), clearing the rest. */
export function setMe(agent) {
  me = agent;
  colleagues = new Map();
  queues = [];
}

/** The signed-in agent. */
export function getMe() {
  return me;
}

/** Loads colleagues and queues (again after a stream drop; the transfer dialog reloads both). */
export async function loadDirectory() {
  await Promise.all([loadColleagues(), loadQueues()]);
}

/** Reloads colleagues (`GET /api/v1/agents`). */
export async function loadColleagues() {
  const { agents } = await get("/api/v1/agents");
  colleagues = new Map(agents.map((a) => [a.id, a]));
  return agents;
}

/** Reloads queues (`GET /api/v1/queues`). */
export async function loadQueues() {
  ({ queues } = await get("/api/v1/queues"));
  return queues;
}

/** An agent's display name (`You` for me, the id when unknown). */
export function nameOf(id) {
  if (!id) return "";
  if (me && id === me.id) return "You";
  return colleagues.get(id)?.name || id;
}

/** The canned replies of `queue`. */
export function cannedFor(queue) {
  return queues.find((q) => q.name === queue)?.canned || [];
}

/** Calls `fn(presence)` whenever my own presence changes. */
export function watchMyPresence(fn) {
  presenceWatchers.push(fn);
}

/** Applies a presence change of anyone (a `presence` event or my own PUT). */
export function setPresence(agent, presence) {
  if (me && agent === me.id) {
    me.presence = presence;
    for (const fn of presenceWatchers) fn(presence);
  } else if (colleagues.has(agent)) {
    colleagues.get(agent).presence = presence;
  }
  setPresenceDots(agent, presence);
}
