// Drives a scripted shift in the Plugboard agent console (/console) in a real headless
// Chromium, for tests/console.rs: two agents (alice and dana, queue `support`) and a manager
// (carol) in three browser contexts at 1280x800.
//
// Usage: node console.mjs --host URL --chromium PATH --alice TOKEN --dana TOKEN --carol TOKEN
//                         --shots DIR
//
// Line protocol: the driver prints one JSON line per stage to stdout and, after every stage
// but the last, waits for one line on stdin (JSON, `{}` when the test has nothing to say)
// before it goes on. Stages, and what the test does in between:
//   {"stage":"ready"}                 all three signed in through the form (a wrong token was
//                                     refused first with the API's words, "that token belongs
//                                     to no agent"), alice and dana online, every event stream
//                                     live, carol's Monitor open (she never clicks it again).
//                                     -> the test posts an inbound SMS from +14155550123.
//   {"stage":"replied","conversation":ID}
//                                     the offer card popped for alice and dana and carol's
//                                     Monitor shows the row queued; alice took it, dana's card
//                                     vanished, Monitor shows it assigned to alice; alice typed
//                                     /late + Tab (the canned text filled the box), cleared it
//                                     and replied "Sorry! Checking now." (segment counter:
//                                     1 segment, GSM-7).
//                                     -> the test checks the fake Twilio and posts "delivered".
//   {"stage":"closed","conversation":ID}
//                                     the tick turned delivered live, alice noted, and her row
//                                     shows no unread count; her search for "late" showed the
//                                     row with its matching text; she transferred to dana
//                                     (dialog showed dana online), Monitor followed to owner
//                                     dana; dana saw the whole history and closed it, Monitor
//                                     followed to closed; alice's and dana's Archived list it.
//   {"stage":"template_sent","conversation":ID}
//                                     alice started a WhatsApp conversation on channel `wa`
//                                     without text: free text off, template picker on; she sent
//                                     order_update with variable 1 = A-1001.
//   {"stage":"offline","drop":"network"|"hook"}
//                                     alice's context is offline and her event stream is down.
//                                     -> the test posts a new customer's SMS (+14155550188) and
//                                     a WhatsApp "thanks" into the open conversation.
//   {"stage":"done","shots":[...],"drop":...,"resumed_from":N,"handled":n}
//                                     back online without a reload: the stream asked to resume
//                                     from N, the last event id handled before the drop (query
//                                     `last_event_id` or header Last-Event-ID); the new
//                                     customer's offer card (from the replayed event, with its
//                                     countdown) is there and the row shows 1 unread; "thanks"
//                                     shows exactly once; no event id was handled twice and no
//                                     message id or row appears twice; j/k and Enter in the
//                                     list opened the new customer's conversation; screenshots
//                                     saved.
// Any failure prints {"stage":"failed","error":...,"at":<step>,"console":[...]}, saves
// failed-<who>.png for every page into --shots, and exits 1.
//
// The network drop: `context.setOffline(true)` stops new requests, but Chromium may keep an
// already open EventSource connection alive. If the stream is still open 3 s after going
// offline, the driver drops it through the console's test hook `window.__plugboard.dropStream()`
// (closing the EventSource as a network drop would); either way the console comes back through
// its normal reconnect path (a new EventSource with ?last_event_id=<last handled>, or the
// browser's own resume with Last-Event-ID) and re-lists. `drop` in the "offline" line says which
// happened.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";

const FIRST = "+14155550123";
const SECOND = "+14155550188";
const WA_CUSTOMER = "+14155552100";
const REPLY = "Sorry! Checking now.";
const NOTE = "VIP customer, be quick";
const CANNED = "Sorry for the delay: your order is on its way.";
const REFUSAL = "that token belongs to no agent";

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ["host", "chromium", "alice", "dana", "carol", "shots"]) {
    if (!out[k]) throw new Error(`missing --${k}`);
  }
  return out;
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const stdin = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Prints a stage and waits for the test's one-line answer. */
async function stage(obj) {
  say(obj);
  const { value, done } = await stdin.next();
  if (done) throw new Error(`stdin closed after stage ${obj.stage}`);
  return value.trim() ? JSON.parse(value) : {};
}

let at = "start";
const pages = {};
const logs = [];

function step(name) {
  at = name;
}

function check(ok, what) {
  if (!ok) throw new Error(what);
}

const byId = (page, testid, attrs = {}) =>
  page.locator(
    `[data-testid="${testid}"]` +
      Object.entries(attrs)
        .map(([k, v]) => `[data-${k}="${v}"]`)
        .join(""),
  );

/** A message of the open conversation's history whose text is exactly `text`. */
const message = (page, direction, text) =>
  byId(page, "message", { direction }).filter({
    has: page.locator('[data-testid="message-text"]', {
      hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`),
    }),
  });

async function newPage(browser, who) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") logs.push(`${who} ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => logs.push(`${who} pageerror: ${e.message}`));
  pages[who] = page;
  return { context, page };
}

async function signIn(page, host, token) {
  await page.goto(`${host}/console`);
  await page.getByTestId("signin-token").waitFor({ timeout: 30000 });
  await page.getByTestId("signin-token").fill(token);
  await page.getByTestId("signin-submit").click();
  await page.getByTestId("me-name").filter({ hasText: /\S/ }).waitFor();
  await byId(page, "stream-status", { state: "live" }).waitFor();
}

async function goOnline(page) {
  await page.getByTestId("presence-online").click();
  await page.locator('[data-testid="presence-online"][aria-pressed="true"]').waitFor();
}

/** Where an event stream request asks to resume: its Last-Event-ID header, else its query. */
function resumesFrom(request) {
  const header = request.headers()["last-event-id"];
  const query = new URL(request.url()).searchParams.get("last_event_id");
  const from = header ?? query;
  return from === null || from === undefined ? null : Number(from);
}

/** Waits until carol's Monitor row of `id` says `state` with `owner` (she does not click). */
async function monitorShows(page, id, state, owner) {
  const attrs = { id, state };
  if (owner !== undefined) attrs.owner = owner;
  await byId(page, "row", attrs).waitFor();
}

async function shot(page, dir, name, list) {
  const file = path.join(dir, name);
  await page.screenshot({ path: file });
  list.push(file);
}

async function main() {
  const a = args();
  fs.mkdirSync(a.shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: a.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const shots = [];
  try {
    const { context: aliceContext, page: alice } = await newPage(browser, "alice");
    const { page: dana } = await newPage(browser, "dana");
    const { page: carol } = await newPage(browser, "carol");
    const streams = [];
    alice.on("request", (r) => {
      if (new URL(r.url()).pathname === "/api/v1/events") streams.push(r);
    });

    step("a: a wrong token is refused with the API's error");
    await dana.goto(`${a.host}/console`);
    await dana.getByTestId("signin-token").waitFor({ timeout: 30000 });
    await dana.getByTestId("signin-token").fill("not-a-real-token-000");
    await dana.getByTestId("signin-submit").click();
    const refusal = dana.getByTestId("signin-error");
    await refusal.waitFor({ state: "visible" });
    const refused = (await refusal.textContent()).trim();
    check(refused === REFUSAL, `the sign-in error says ${JSON.stringify(refused)}, not the API's words`);
    await shot(dana, a.shots, "dana-signin-refused.png", shots);

    step("a: sign in");
    await signIn(alice, a.host, a.alice);
    await signIn(dana, a.host, a.dana);
    await signIn(carol, a.host, a.carol);
    check(await carol.getByTestId("tab-monitor").isVisible(), "carol (a manager) has no Monitor tab");
    check(!(await alice.getByTestId("tab-monitor").isVisible()), "alice (not a manager) has a Monitor tab");
    step("a: carol opens her Monitor");
    await carol.getByTestId("tab-monitor").click();
    await carol.locator('[data-testid="tab-monitor"][aria-selected="true"]').waitFor();
    await carol.locator("#rows .rows-empty").waitFor();
    step("a: presence online");
    await goOnline(alice);
    await goOnline(dana);
    await stage({ stage: "ready" });

    step("b: the offer card pops up for alice and dana");
    const aliceCard = byId(alice, "offer-card", { customer: FIRST });
    const danaCard = byId(dana, "offer-card", { customer: FIRST });
    await aliceCard.waitFor({ timeout: 30000 });
    await danaCard.waitFor({ timeout: 30000 });
    const first = await aliceCard.getAttribute("data-conversation");
    check(first, "the offer card names no conversation");
    step("b: carol's Monitor shows it queued, live");
    await monitorShows(carol, first, "queued");
    step("b: alice takes; dana's card vanishes");
    await aliceCard.getByTestId("offer-take").click();
    await danaCard.waitFor({ state: "detached", timeout: 15000 });
    await aliceCard.waitFor({ state: "detached" });
    step("b: carol's Monitor shows it assigned to alice, live");
    await monitorShows(carol, first, "assigned", "alice");
    step("b: alice's conversation view shows the inbound text");
    await byId(alice, "conversation", { id: first }).waitFor();
    await message(alice, "inbound", "Hi, my order is late").waitFor();
    step("b: /late and Tab insert the canned reply");
    const input = alice.getByTestId("reply-input");
    await input.click();
    await input.pressSequentially("/late");
    await alice.getByTestId("canned-suggestion").first().waitFor();
    await input.press("Tab");
    const filled = await input.inputValue();
    check(filled === CANNED, `after /late + Tab the reply box holds ${JSON.stringify(filled)}`);
    await input.fill("");
    step("b: alice types; the segment counter follows");
    await input.pressSequentially(REPLY);
    const counter = (await alice.getByTestId("segment-counter").textContent()).trim();
    check(
      counter.startsWith(`${REPLY.length} / 1600`) && counter.includes("1 segment") && counter.includes("GSM-7"),
      `segment counter says ${JSON.stringify(counter)}`,
    );
    step("b: Enter sends; the outbound message shows with a status");
    await input.press("Enter");
    const outbound = message(alice, "outbound", REPLY);
    await outbound.waitFor();
    const status = await outbound.getAttribute("data-status");
    check(["pending", "queued", "sent", "delivered"].includes(status), `outbound status ${status}`);
    check((await input.inputValue()) === "", "the reply box was not emptied after sending");
    await stage({ stage: "replied", conversation: first });

    step("c: the tick turns delivered without a reload");
    await outbound.and(alice.locator('[data-status="delivered"]')).waitFor();
    await outbound.getByTestId("tick").and(alice.locator('[aria-label="Delivered"]')).waitFor();
    step("c: alice adds a note");
    await alice.getByTestId("note-toggle").click();
    await input.fill(NOTE);
    await input.press("Enter");
    await message(alice, "note", NOTE).waitFor();
    check(
      (await message(alice, "note", NOTE).textContent()).includes("Internal note, not sent"),
      "the note is not marked as internal",
    );
    await alice.getByTestId("note-toggle").click();
    step("c: alice's own reply and note leave her row with nothing unread");
    await alice.evaluate(() => window.__plugboard.settled());
    const aliceRow = byId(alice, "row", { id: first });
    await aliceRow.and(alice.locator('[data-unread="0"]')).waitFor();
    check((await aliceRow.getByTestId("row-unread").count()) === 0, "alice's open conversation shows an unread count");
    await shot(alice, a.shots, "alice-conversation.png", shots);
    step("c: alice searches for 'late' and sees the matching text");
    const search = alice.getByTestId("search");
    await search.fill("late");
    const match = aliceRow.locator('[data-testid="row-preview"].match');
    await match.waitFor();
    const matched = await match.textContent();
    check(/late/i.test(matched), `the search match reads ${JSON.stringify(matched)}`);
    await shot(alice, a.shots, "alice-search.png", shots);
    await search.fill("");
    await match.waitFor({ state: "detached" });
    await aliceRow.waitFor();
    step("c: alice transfers to dana; the dialog shows dana's presence");
    await alice.getByTestId("transfer-button").click();
    const toDana = byId(alice, "transfer-agent", { agent: "dana" });
    await toDana.locator('[data-testid="presence-dot"][data-presence="online"]').waitFor();
    await shot(alice, a.shots, "alice-transfer-dialog.png", shots);
    await toDana.click();
    await alice.getByTestId("transfer-dialog").waitFor({ state: "hidden" });
    step("c: carol's Monitor shows it assigned to dana, live");
    await monitorShows(carol, first, "assigned", "dana");
    step("c: dana sees the conversation with its whole history");
    await byId(dana, "row", { id: first }).click();
    await byId(dana, "conversation", { id: first }).waitFor();
    await message(dana, "inbound", "Hi, my order is late").waitFor();
    await message(dana, "outbound", REPLY).waitFor();
    await message(dana, "note", NOTE).waitFor();
    const order = await byId(dana, "message").evaluateAll((els) => els.map((e) => e.dataset.direction));
    check(
      JSON.stringify(order) === JSON.stringify(["inbound", "outbound", "note"]),
      `dana's history reads ${JSON.stringify(order)}, not inbound, outbound, note oldest first`,
    );
    step("c: dana closes it");
    await dana.getByTestId("close-button").click();
    await byId(dana, "conversation", { id: first, state: "closed" }).waitFor();
    await dana.getByTestId("reopen-button").waitFor();
    step("c: carol's Monitor shows it closed with owner dana, live");
    await monitorShows(carol, first, "closed", "dana");
    const monitored = byId(carol, "row", { id: first, state: "closed", owner: "dana" });
    check((await monitored.getByTestId("row-owner").textContent()).includes("Dana"), "Monitor does not name Dana");
    check((await monitored.getByTestId("row-state").textContent()).includes("closed"), "Monitor does not say closed");
    await shot(carol, a.shots, "carol-monitor.png", shots);
    step("c: Archived lists it for dana and alice");
    await dana.getByTestId("tab-archived").click();
    await byId(dana, "row", { id: first }).waitFor();
    await shot(dana, a.shots, "dana-archived.png", shots);
    await alice.getByTestId("tab-archived").click();
    await byId(alice, "row", { id: first }).waitFor();
    await alice.getByTestId("tab-recent").click();
    await byId(alice, "row", { id: first }).waitFor({ state: "detached" });
    await stage({ stage: "closed", conversation: first });

    step("c: carol's Reports count the work: dana resolved it, support handled one");
    await carol.getByTestId("tab-reports").click();
    const danaLine = carol.getByTestId("report-agents-dana");
    await danaLine.waitFor();
    const metric = async (line, name) => (await line.locator(`[data-metric="${name}"]`).textContent()).trim();
    check((await metric(danaLine, "handled")) === "1", `dana's line says handled ${await metric(danaLine, "handled")}, not 1`);
    const supportLine = carol.getByTestId("report-queues-support");
    await supportLine.waitFor();
    check((await metric(supportLine, "handled")) === "1", "the support queue's line does not say handled 1");
    check((await metric(supportLine, "transfers")) === "1", "the support queue's line does not count the transfer");
    await carol.getByTestId("report-channels-sms").waitFor();
    await shot(carol, a.shots, "carol-reports.png", shots);
    await carol.getByTestId("tab-monitor").click();

    step("d: alice starts a WhatsApp conversation without text");
    await alice.getByTestId("new-conversation").click();
    await alice.getByTestId("start-to").fill(WA_CUSTOMER);
    await alice.getByTestId("start-channel").fill("wa");
    await alice.getByTestId("start-submit").click();
    await alice.getByTestId("start-dialog").waitFor({ state: "hidden" });
    await alice.waitForFunction(
      (old) => {
        const pane = document.querySelector('[data-testid="conversation"]');
        return pane.dataset.id && pane.dataset.id !== old && !pane.querySelector("#conv-body").hidden;
      },
      first,
    );
    const wa = await alice.getByTestId("conversation").getAttribute("data-id");
    step("d: outside the 24-hour window only templates");
    await alice.getByTestId("template-picker").waitFor({ state: "visible" });
    check(await input.isDisabled(), "the free-text box is enabled outside the 24-hour window");
    check(
      (await alice.getByTestId("composer-banner").textContent()).includes("24-hour window closed"),
      "the reply box does not say the window is closed",
    );
    step("d: alice sends order_update with variable 1");
    await alice.getByTestId("template-select").selectOption({ label: "order_update (en)" });
    await byId(alice, "template-variable", { name: "1" }).fill("A-1001");
    await alice.getByTestId("template-send").click();
    await byId(alice, "message", { direction: "outbound", template: "order_update" }).waitFor();
    await shot(alice, a.shots, "alice-template.png", shots);
    await stage({ stage: "template_sent", conversation: wa });

    step("e: the network drops");
    await aliceContext.setOffline(true);
    let drop = "network";
    try {
      await alice.waitForFunction(() => window.__plugboard.stream().readyState !== EventSource.OPEN, null, {
        timeout: 3000,
      });
    } catch {
      drop = "hook";
      await alice.evaluate(() => window.__plugboard.dropStream());
    }
    await byId(alice, "stream-status", { state: "reconnecting" }).waitFor();
    const lastBefore = await alice.evaluate(() => window.__plugboard.stream().lastEventId);
    check(Number.isSafeInteger(lastBefore), `no event id handled before the drop: ${lastBefore}`);
    const streamsBefore = streams.length;
    await stage({ stage: "offline", drop });

    step("e: back online, the stream resumes from the last event id handled");
    await aliceContext.setOffline(false);
    await byId(alice, "stream-status", { state: "live" }).waitFor({ timeout: 30000 });
    const resumed = streams.slice(streamsBefore).map(resumesFrom);
    check(resumed.length > 0, "no event stream request after the drop");
    check(
      resumed.every((from) => from === lastBefore),
      `after the drop the stream asked to resume from ${JSON.stringify(resumed)}, not ${lastBefore}`,
    );
    step("e: the new customer's offer card, from the replayed event, with its countdown");
    const secondCard = byId(alice, "offer-card", { customer: SECOND });
    await secondCard.getByTestId("offer-left").waitFor({ timeout: 30000 });
    const second = await secondCard.getAttribute("data-conversation");
    step("e: the new customer's row shows 1 unread");
    const secondRow = byId(alice, "row", { id: second });
    await secondRow.and(alice.locator('[data-unread="1"]')).waitFor();
    check((await secondRow.getByTestId("row-unread").textContent()).trim() === "1", "the new row's unread badge is not 1");
    await byId(alice, "conversation", { id: wa }).waitFor();
    await message(alice, "inbound", "thanks").waitFor({ timeout: 30000 });
    step("e: the window opened: free text is back");
    await alice.waitForFunction(() => !document.querySelector('[data-testid="reply-input"]').disabled);
    step("e: nothing twice");
    await alice.evaluate(() => window.__plugboard.settled());
    const thanks = await message(alice, "inbound", "thanks").count();
    check(thanks === 1, `"thanks" shows ${thanks} times`);
    const ids = await byId(alice, "message").evaluateAll((els) => els.map((e) => e.dataset.id));
    check(new Set(ids).size === ids.length, `duplicate message ids in the open view: ${ids}`);
    const rows = await byId(alice, "row").evaluateAll((els) => els.map((e) => e.dataset.id));
    check(new Set(rows).size === rows.length, `duplicate rows in the list: ${rows}`);
    const handled = await alice.evaluate(() => window.__plugboard.handled());
    check(new Set(handled).size === handled.length, `event ids handled twice: ${handled}`);
    check(handled.some((id) => id > lastBefore), `no event after ${lastBefore} was handled: ${handled}`);
    await shot(alice, a.shots, "alice-after-drop.png", shots);
    step("e: j/k move in the list and Enter opens");
    const at = rows.indexOf(wa);
    const to = rows.indexOf(second);
    check(at >= 0 && to >= 0 && Math.abs(at - to) === 1, `the list reads ${rows}: wa ${wa} and ${second} not neighbours`);
    const [toward, back] = to > at ? ["j", "k"] : ["k", "j"];
    const focused = () => alice.evaluate(() => document.activeElement.dataset.id);
    await byId(alice, "row", { id: wa }).focus();
    await alice.keyboard.press(toward);
    check((await focused()) === second, `${toward} did not move to ${second}`);
    await alice.keyboard.press(back);
    check((await focused()) === wa, `${back} did not move back to ${wa}`);
    await alice.keyboard.press(to > at ? "ArrowDown" : "ArrowUp");
    await alice.keyboard.press("Enter");
    await byId(alice, "conversation", { id: second }).waitFor();
    await message(alice, "inbound", "Are you open today?").waitFor();
    step("e: phone width");
    await alice.setViewportSize({ width: 390, height: 844 });
    await shot(alice, a.shots, "alice-phone-conversation.png", shots);
    await alice.getByTestId("back").click();
    await alice.getByTestId("rows").waitFor({ state: "visible" });
    check(!(await alice.getByTestId("conversation").isVisible()), "both panes show at phone width");
    await shot(alice, a.shots, "alice-phone-list.png", shots);
    say({ stage: "done", shots, drop, resumed_from: lastBefore, handled: handled.length });
  } catch (e) {
    for (const [who, page] of Object.entries(pages)) {
      try {
        await page.screenshot({ path: path.join(a.shots, `failed-${who}.png`) });
      } catch {
        // The page may be gone already; the error below is what matters.
      }
    }
    say({ stage: "failed", error: String(e && e.stack ? e.stack : e), at, console: logs });
    process.exitCode = 1;
  } finally {
    await browser.close();
    process.stdin.destroy();
  }
}

main().catch((e) => {
  say({ stage: "failed", error: String(e && e.stack ? e.stack : e), at });
  process.exit(1);
});
