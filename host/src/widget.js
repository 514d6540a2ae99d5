// Plugboard web chat widget. Served by the host with its configuration filled in; add it to a
// page with one tag: <script src="https://HOST/webchat/CHANNEL/widget.js" async></script>
(function () {
  "use strict";
  var cfg = __PLUGBOARD_CONFIG__;
  var key = "plugboard-webchat:" + cfg.base;
  var state = JSON.parse(localStorage.getItem(key) || "{}");
  var after = 0;

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
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || r.status); return j; }); });
  }

  var button = el("button", "position:fixed;bottom:20px;right:20px;border:0;border-radius:24px;padding:12px 18px;color:#fff;cursor:pointer;font:14px sans-serif;background:" + cfg.color, cfg.title);
  button.id = "plugboard-webchat-button";
  var panel = el("div", "display:none;position:fixed;bottom:76px;right:20px;width:320px;height:420px;background:#fff;border:1px solid #ddd;border-radius:8px;box-shadow:0 4px 16px rgba(0,0,0,.15);font:14px sans-serif;flex-direction:column");
  panel.id = "plugboard-webchat";
  var head = el("div", "padding:10px;color:#fff;border-radius:8px 8px 0 0;background:" + cfg.color, cfg.title);
  var log = el("div", "flex:1;overflow-y:auto;padding:10px");
  log.id = "plugboard-webchat-log";
  var form = el("form", "display:flex;border-top:1px solid #eee");
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
  function poll() {
    api("GET", "/messages?after=" + after + "&wait=20").then(function (r) {
      r.messages.forEach(function (m) { after = Math.max(after, m.seq); line(m.from, m.text); });
      showOnline(r.online || after > 0);
      poll();
    }, function () { setTimeout(poll, 3000); });
  }
  function start() {
    if (state.token) { poll(); return Promise.resolve(); }
    return api("POST", "/sessions").then(function (s) {
      state.token = s.token; localStorage.setItem(key, JSON.stringify(state));
      line("agent", cfg.intro); showOnline(s.online); poll();
    });
  }
  button.onclick = function () {
    var open = panel.style.display !== "none";
    panel.style.display = open ? "none" : "flex";
    if (!open) start();
  };
  form.onsubmit = function (e) {
    e.preventDefault();
    var text = input.value.trim(); if (!text) return;
    input.value = "";
    api("POST", "/messages", { text: text }).catch(function (err) { line("agent", "Not sent: " + err.message); });
  };
  offline.onsubmit = function (e) {
    e.preventDefault();
    api("POST", "/offline", { name: oname.value, email: oemail.value, message: omsg.value }).then(function () {
      offline.style.display = "none"; line("agent", "Thanks! We will get back to you at " + oemail.value + ".");
    }, function (err) { note.textContent = "Not sent: " + err.message; });
  };
})();
