// Plugboard web chat widget. Served by the host with its configuration filled in; add it to a
// page with one tag: <script src="https://HOST/webchat/CHANNEL/widget.js" async></script>
// The page's origin must be listed in the channel's `allowed_origins` (the widget calls the
// host cross-origin, with a CORS preflight).
(function () {
  "use strict";
  var cfg = __PLUGBOARD_CONFIG__;
  var key = "plugboard-webchat:" + cfg.base;
  var state = JSON.parse(localStorage.getItem(key) || "{}");
  var after = 0;
  var starting = null; // the session being started or in use (a promise), null before
  var loop = 0; // the current poll loop; an older one stops

  function el(tag, css, text) {
    var e = document.createElement(tag);
    if (css) e.style.cssText = css;
    if (text) e.textContent = text;
    return e;
  }
  function api(method, path, body) {
    var headers = { "content-type": "application/json" };
    if (state.token) headers.authorization = "Bearer " + state.token;
    return fetch(cfg.base + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        return r.json().then(function (j) {
          if (!r.ok) { var e = new Error(j.error || r.status); e.status = r.status; throw e; }
          return j;
        });
      });
  }
  // An expired or unknown session: forget it, so the next start opens a new one.
  function forget() {
    delete state.token; after = 0; starting = null; loop += 1;
    localStorage.setItem(key, JSON.stringify(state));
  }

  var button = el("button", "position:fixed;bottom:20px;right:20px;border:0;border-radius:24px;padding:12px 18px;color:#fff;cursor:pointer;font:14px sans-serif;background:" + cfg.color, cfg.title);
  button.id = "plugboard-webchat-button";
  var panel = el("div", "display:none;position:fixed;bottom:76px;right:20px;width:320px;height:420px;background:#fff;border:1px solid #ddd;border-radius:8px;box-shadow:0 4px 16px rgba(0,0,0,.15);font:14px sans-serif;flex-direction:column");
  panel.id = "plugboard-webchat";
  var head = el("div", "padding:10px;color:#fff;border-radius:8px 8px 0 0;background:" + cfg.color, cfg.title);
  var log = el("div", "flex:1;overflow-y:auto;padding:10px");
  log.id = "plugboard-webchat-log";
  var form = el("form", "display:none;border-top:1px solid #eee");
  var input = el("input", "flex:1;border:0;padding:10px");
  input.placeholder = "Type a message";
  input.id = "plugboard-webchat-input";
  var send = el("button", "border:0;background:none;color:" + cfg.color + ";padding:0 12px;cursor:pointer", "Send");
  form.appendChild(input); form.appendChild(send);

  var offline = el("form", "display:none;flex-direction:column;gap:6px;padding:10px;border-top:1px solid #eee");
  offline.id = "plugboard-webchat-offline";
  var note = el("div", "color:#555", "Nobody is online right now. Leave a message and we will get back to you.");
  var oname = el("input"); oname.placeholder = "Name"; oname.id = "plugboard-webchat-name";
  var oemail = el("input"); oemail.placeholder = "Email"; oemail.type = "email"; oemail.required = true; oemail.id = "plugboard-webchat-email";
  var omsg = el("textarea"); omsg.placeholder = "Message"; omsg.required = true; omsg.id = "plugboard-webchat-message";
  var osend = el("button", "border:0;color:#fff;padding:8px;border-radius:4px;background:" + cfg.color, "Send");
  [note, oname, oemail, omsg, osend].forEach(function (x) { offline.appendChild(x); });

  panel.appendChild(head); panel.appendChild(log); panel.appendChild(form); panel.appendChild(offline);
  document.body.appendChild(button); document.body.appendChild(panel);

  function line(who, text) {
    var mine = who === "visitor";
    var row = el("div", "margin:4px 0;text-align:" + (mine ? "right" : "left"));
    var bubble = el("span", "display:inline-block;padding:6px 10px;border-radius:12px;max-width:80%;white-space:pre-wrap;background:" + (mine ? cfg.color + ";color:#fff" : "#f1f1f1"), text);
    bubble.className = "plugboard-" + who;
    row.appendChild(bubble); log.appendChild(row); log.scrollTop = log.scrollHeight;
  }
  function showOnline(online) {
    form.style.display = online ? "flex" : "none";
    offline.style.display = online ? "none" : "flex";
  }
  // One loop per session: the first poll answers at once (to show the right form), the next
  // ones wait on the host until a message arrives.
  function poll(me, wait) {
    if (me !== loop) return;
    api("GET", "/messages?after=" + after + "&wait=" + wait).then(function (r) {
      if (me !== loop) return;
      r.messages.forEach(function (m) { after = Math.max(after, m.seq); line(m.from, m.text); });
      showOnline(r.online || after > 0);
      poll(me, 20);
    }, function (err) {
      if (me !== loop) return;
      if (err.status === 401) { forget(); start(); return; }
      setTimeout(function () { poll(me, 20); }, 3000);
    });
  }
  // The session, started once: sending waits for it, so nothing goes out without a token.
  function start() {
    if (starting) return starting;
    if (state.token) {
      starting = Promise.resolve();
    } else {
      starting = api("POST", "/sessions").then(function (s) {
        state.token = s.token; localStorage.setItem(key, JSON.stringify(state));
        line("agent", cfg.intro); showOnline(s.online);
      }, function (err) { starting = null; throw err; });
    }
    var me = loop;
    starting.then(function () { poll(me, 0); }, function () {});
    return starting;
  }
  function failed(err) {
    line("agent", "Not sent: " + err.message);
    if (err.status === 401) { forget(); start(); }
  }
  button.onclick = function () {
    var open = panel.style.display !== "none";
    panel.style.display = open ? "none" : "flex";
    if (!open) start().catch(function (err) { line("agent", "Chat unavailable: " + err.message); });
  };
  form.onsubmit = function (e) {
    e.preventDefault();
    var text = input.value.trim(); if (!text) return;
    input.value = "";
    start().then(function () { return api("POST", "/messages", { text: text }); }).catch(failed);
  };
  offline.onsubmit = function (e) {
    e.preventDefault();
    var body = { name: oname.value, email: oemail.value, message: omsg.value };
    start().then(function () { return api("POST", "/offline", body); }).then(function () {
      offline.style.display = "none"; line("agent", "Thanks! We will get back to you at " + oemail.value + ".");
    }, function (err) {
      note.textContent = "Not sent: " + err.message;
      if (err.status === 401) { forget(); start(); }
    });
  };
})();
