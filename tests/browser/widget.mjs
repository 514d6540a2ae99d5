// Drives the Plugboard web chat widget in a real headless Chromium, for tests/browser.rs.
//
// Serves a tiny shop page on 127.0.0.1:PAGE_PORT (an origin other than the host's) that embeds
// the widget with its one <script> tag, opens it, types a visitor message, and waits for the
// agent's reply to appear in the page. It also checks that a page on a second origin, not in
// the channel's allowed_origins, cannot call the visitor endpoints.
//
// Usage: node widget.mjs --host URL --channel NAME --page-port N --blocked-port N
//                        --chromium PATH --message TEXT --reply TEXT
// Prints one JSON line per stage to stdout: {"stage":"sent"} once the visitor's message is in
// the page (the test then answers as the agent), and finally {"stage":"done", ...}. Any failure
// prints {"stage":"failed","error":...} and exits 1.

import http from "node:http";
import { chromium } from "playwright-core";

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ["host", "channel", "page-port", "blocked-port", "chromium", "message", "reply"]) {
    if (!out[k]) throw new Error(`missing --${k}`);
  }
  return out;
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function servePage(port, widgetUrl) {
  const page = `<!doctype html><html><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>Acme shop</h1><script src="${widgetUrl}" async></script></body></html>`;
  const server = http.createServer((req, res) => {
    if (req.url === "/" || req.url === "/index.html") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(page);
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

async function main() {
  const a = args();
  const base = `${a.host}/webchat/${a.channel}`;
  const shop = await servePage(Number(a["page-port"]), `${base}/widget.js`);
  const other = await servePage(Number(a["blocked-port"]), `${base}/widget.js`);
  const browser = await chromium.launch({
    executablePath: a.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const consoleLines = [];
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    const pageOrigin = `http://127.0.0.1:${a["page-port"]}`;
    await page.goto(`${pageOrigin}/`);
    await page.locator("#plugboard-webchat-button").click();
    const input = page.locator("#plugboard-webchat-input");
    await input.waitFor({ state: "visible", timeout: 20000 });
    await input.fill(a.message);
    await input.press("Enter");
    await page
      .locator(".plugboard-visitor", { hasText: a.message })
      .waitFor({ timeout: 20000 });
    say({ stage: "sent", page_origin: pageOrigin });
    await page
      .locator(".plugboard-agent", { hasText: a.reply })
      .waitFor({ timeout: 30000 });

    // A page on an origin the channel does not allow: the browser blocks the call.
    const blockedPage = await context.newPage();
    const blockedOrigin = `http://127.0.0.1:${a["blocked-port"]}`;
    await blockedPage.goto(`${blockedOrigin}/`);
    const blocked = await blockedPage.evaluate(async (url) => {
      try {
        const r = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{}",
        });
        return `answered ${r.status}`;
      } catch (e) {
        return `blocked: ${e}`;
      }
    }, `${base}/sessions`);
    say({ stage: "done", page_origin: pageOrigin, blocked_origin: blockedOrigin, blocked });
  } catch (e) {
    say({ stage: "failed", error: String(e && e.stack ? e.stack : e), console: consoleLines });
    process.exitCode = 1;
  } finally {
    await browser.close();
    shop.close();
    other.close();
  }
}

main().catch((e) => {
  say({ stage: "failed", error: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
