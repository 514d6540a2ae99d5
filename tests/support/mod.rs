//! Test support: start the real `plugboard` binary on a free loopback port with a generated
//! configuration, talk to it over HTTP, and run fake providers that record what they receive.

#![allow(dead_code)]

pub mod browser;
pub mod postgres;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

/// The plugin and agent settings most tests use.
pub const AUTH_TOKEN: &str = "test-auth-token-0123456789";
/// The Twilio account SID the tests configure.
pub const ACCOUNT_SID: &str = "ACtest000000000000000000000000000";
/// Alice's bearer token (queue `support`).
pub const ALICE: &str = "alice-token-123";
/// Bob's bearer token (queue `sales`).
pub const BOB: &str = "bob-token-12345";
/// The admin token.
pub const ADMIN: &str = "admin-token-123";

/// A free loopback port (bound, read, released), never one this test process handed out
/// before: tests run in parallel, and a port released by one could otherwise be picked again
/// for another's host before the first one's host has bound it.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A running `plugboard serve`, killed on drop.
pub struct Host {
    child: Option<Child>,
    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    /// The working directory (config, data, logs).
    pub dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    /// A client for requests to the host.
    pub http: reqwest::Client,
    env: Vec<(String, String)>,
}

/// What a test configures beyond the standard `support`/`sales` queues, agents and `sms` channel.
#[derive(Default, Clone)]
pub struct Setup {
    /// The Twilio API base the `sms` channel sends to.
    pub twilio_api_base: Option<String>,
    /// Extra TOML appended to the configuration.
    pub extra: String,
    /// Test guest plugins to copy into the plugins directory.
    pub plugins: Vec<&'static str>,
    /// Extra TOML lines for the `support` queue (`offer_timeout = 1`, ...).
    pub support: String,
    /// Extra TOML lines for agent `alice`.
    pub alice: String,
    /// Extra TOML lines for the `sms` channel (`fallback = "backup"`, ...).
    pub sms: String,
    /// Extra TOML lines for the `[limits]` table (`provider_timeout_ms = 1000`, ...).
    pub limits: String,
    /// Environment variables set for the host process (`PLUGBOARD_OUTBOX_MAX_ATTEMPTS`, ...).
    pub env: Vec<(String, String)>,
    /// Extra TOML lines for the `[server]` table (`allowed_origins = [...]`, ...).
    pub server: String,
}

impl Host {
    /// Starts a host in a fresh directory and waits until it answers `/healthz`.
    pub fn start(setup: Setup) -> Host {
        let dir = tempfile::Builder::new()
            .prefix("plugboard-e2e-")
            .tempdir()
            .unwrap()
            .keep();
        Host::start_in(dir, setup)
    }

    /// Starts a host in `dir` (reusing its data if any).
    pub fn start_in(dir: PathBuf, setup: Setup) -> Host {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let plugins_dir = dir.join("plugins");
        std::fs::create_dir_all(&plugins_dir).unwrap();
        for name in &setup.plugins {
            let src = plugboard_artifacts::test_plugin(name);
            std::fs::copy(&src, plugins_dir.join(format!("{name}.wasm")))
                .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
        let api_base = setup
            .twilio_api_base
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:9".to_owned());
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{base}"
data_dir = "{data}"
plugins_dir = "{plugins}"
admin_token = "{ADMIN}"
{server}

[limits]
memory_mib = 32
call_timeout_ms = 500
{limits}

[[queues]]
name = "support"
router = "ring-all"
{support}

[[queues]]
name = "sales"
router = "ring-all"

[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "support"
{sms}
[channels.settings]
account_sid = "{ACCOUNT_SID}"
auth_token = "${{TEST_TWILIO_AUTH_TOKEN}}"
from = "+15005550006"
api_base = "{api_base}"

[[agents]]
id = "alice"
name = "Alice"
token = "{ALICE}"
queues = ["support"]
{alice}

[[agents]]
id = "bob"
name = "Bob"
token = "{BOB}"
queues = ["sales"]
{extra}
"#,
            data = dir.join("data").display(),
            plugins = plugins_dir.display(),
            extra = setup.extra,
            support = setup.support,
            alice = setup.alice,
            sms = setup.sms,
            limits = setup.limits,
            server = setup.server,
        );
        let config_path = dir.join("plugboard.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut host = Host {
            child: None,
            base,
            log_path: dir.join("plugboard.log"),
            dir,
            config_path,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            env: setup.env.clone(),
        };
        host.spawn();
        host
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let before = self.ready_lines(self.base.trim_start_matches("http://"));
        let log_filter = self
            .env
            .iter()
            .find(|(k, _)| k == "RUST_LOG")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PLUGBOARD_TEST_LOG").ok())
            .unwrap_or_else(|| "info".into());
        let child = Command::new(env!("CARGO_BIN_EXE_plugboard"))
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("TEST_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // Whatever the filter, the line that says the server is ready stays (see
            // `wait_ready`).
            .env(
                "RUST_LOG",
                format!("{log_filter},plugboard::http::server=info"),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn plugboard");
        self.child = Some(child);
        self.wait_ready(before);
    }

    /// How many times the log says a process of this host became ready on `addr`.
    fn ready_lines(&self, addr: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("plugboard ready") && l.contains(addr))
            .count()
    }

    fn wait_ready(&mut self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let addr = self.base.trim_start_matches("http://").to_owned();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("plugboard exited early ({status}); log:\n{}", self.log());
            }
            // The answer must come from this process, not from another test's server that
            // holds the port this one failed to bind: its log names the address it listens on.
            if http_status(&addr, "/healthz") == Ok(200) && self.ready_lines(&addr) > before {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plugboard not ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (no shutdown, no final flush).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again with the same configuration and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends raw bytes to the host (write errors ignored: the host may answer and close
    /// before reading everything) and returns whatever it answered.
    pub fn raw(&self, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(request);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The configuration file the host runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a Twilio-style form to a channel's webhook, signed with `token` (None: unsigned).
    pub async fn post_twilio(
        &self,
        channel: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
    ) -> reqwest::Response {
        let url = self.url(&format!("/webhooks/{channel}"));
        let body = form(params);
        let mut req = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(token) = token {
            req = req.header("x-twilio-signature", twilio_signature(token, &url, params));
        }
        req.send().await.unwrap()
    }

    /// A signed inbound SMS from `from` on channel `sms`, which must be answered 200.
    pub async fn sms(&self, sid: &str, from: &str, text: &str) {
        let params = inbound_sms(sid, from, text);
        let resp = self
            .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
            .await;
        assert_eq!(resp.status(), 200);
    }

    /// GETs an API path as the agent with `token`, expecting JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` to `/api/v1/conversations/{id}/{action}` (`take`, `close`, `notes`, ...) as
    /// the agent with `token`.
    pub async fn act(&self, id: &str, action: &str, token: &str, body: Value) -> (u16, Value) {
        self.post_json(&format!("/api/v1/conversations/{id}/{action}"), token, body)
            .await
    }

    /// POSTs JSON to an API path as the agent with `token`.
    pub async fn post_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sets the presence of `token`'s agent.
    pub async fn presence(&self, token: &str, presence: &str) {
        let resp = self
            .http
            .put(self.url("/api/v1/agents/me/presence"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "presence": presence }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    /// Starts a web chat visitor's session on `channel` (asserting `201`); its JSON answer
    /// (`token`, `online`, ...).
    pub async fn webchat_session(&self, channel: &str) -> Value {
        let resp = self
            .http
            .post(self.url(&format!("/webchat/{channel}/sessions")))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    /// The conversations `token`'s agent sees, every page of them.
    pub async fn conversations(&self, token: &str) -> Vec<Value> {
        self.all_pages("/api/v1/conversations?limit=200", "conversations", token)
            .await
    }

    /// A conversation's messages as `token`'s agent sees them, every page of them.
    pub async fn messages(&self, conversation: &str, token: &str) -> Vec<Value> {
        let path = format!("/api/v1/conversations/{conversation}/messages?limit=200");
        self.all_pages(&path, "messages", token).await
    }

    /// Follows `next_cursor` from `path` (which has a query string) until the last page.
    pub async fn all_pages(&self, path: &str, field: &str, token: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}&cursor={c}"),
                None => path.to_owned(),
            };
            let (status, body) = self.get_json(&url, token).await;
            assert_eq!(status, 200, "{body}");
            all.extend(body[field].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return all,
            }
        }
    }
}

impl Drop for Host {
    /// Stops the process and removes its directory (config, data, log), unless the test is
    /// failing: then the directory stays for reading.
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The status of a plain blocking GET, for readiness polling outside async code.
fn http_status(addr: &str, path: &str) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no status".to_owned())
}

/// `application/x-www-form-urlencoded` encoding of `params`.
pub fn form(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Twilio's `X-Twilio-Signature`, computed independently of the plugin: HMAC-SHA1 over the URL
/// followed by each parameter name and value, sorted by name, Base64.
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// An inbound SMS as Twilio posts it (shape of a real capture).
pub fn inbound_sms(sid: &str, from: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ToCountry", "US".into()),
        ("SmsMessageSid", sid.into()),
        ("NumMedia", "0".into()),
        ("SmsSid", sid.into()),
        ("SmsStatus", "received".into()),
        ("Body", body.into()),
        ("To", "+15005550006".into()),
        ("NumSegments", "1".into()),
        ("MessageSid", sid.into()),
        ("AccountSid", ACCOUNT_SID.into()),
        ("From", from.into()),
        ("ApiVersion", "2010-04-01".into()),
    ]
}

/// A Twilio delivery-status callback for the message `sid` (shape of a real capture).
pub fn status_callback(
    sid: &str,
    status: &str,
    error: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("MessageSid", sid.to_owned()),
        ("MessageStatus", status.to_owned()),
        ("AccountSid", ACCOUNT_SID.to_owned()),
        ("From", "+15005550006".to_owned()),
        ("To", "+14155552200".to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
        ("SmsSid", sid.to_owned()),
        ("SmsStatus", status.to_owned()),
    ];
    if let Some(code) = error {
        p.push(("ErrorCode", code.to_owned()));
    }
    p
}

/// The WhatsApp sender number of the `wa` channel [`whatsapp_channel`] configures.
pub const WA_FROM: &str = "+14155238886";

/// The Content SID of that channel's one approved template, `order_update` (en, variable `1`).
pub const WA_TEMPLATE_SID: &str = "HXb5b62575e6e4ff6129ad7c8efe1f983e";

/// A Twilio WhatsApp channel `wa` feeding `support` and sending to `api_base`, with one
/// approved template (for [`Setup::extra`]).
pub fn whatsapp_channel(api_base: &str) -> String {
    format!(
        r#"
[[channels]]
name = "wa"
plugin = "twilio-whatsapp"
queue = "support"
[channels.settings]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "{WA_FROM}"
api_base = "{api_base}"
templates = '[{{"name": "order_update", "language": "en", "content_sid": "{WA_TEMPLATE_SID}", "variables": ["1"]}}]'
"#
    )
}

/// Dana's token: she works `support` beside Alice ([`console_team`]).
pub const DANA: &str = "dana-token-12345";

/// Carol's token: she works no queue ([`console_team`]); a test makes her a manager.
pub const CAROL: &str = "carol-token-1234";

/// Agents Dana and Carol as TOML (for [`Setup::extra`]).
pub fn console_team() -> String {
    format!(
        r#"
[[agents]]
id = "dana"
name = "Dana"
token = "{DANA}"
queues = ["support"]

[[agents]]
id = "carol"
name = "Carol"
token = "{CAROL}"
"#
    )
}

/// Borrows owned parameters as `&str` pairs.
pub fn pairs<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// One request a fake provider received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body parsed as a form, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// A scripted answer: status, JSON body.
pub type Answer = (u16, Value);

/// A real HTTP server on 127.0.0.1 that records every request and answers from a script of
/// immediate JSON answers (the last answer repeats): a [`ScriptedProvider`] without delays or
/// headers.
pub struct FakeProvider {
    /// Its base URL.
    pub base: String,
    inner: ScriptedProvider,
}

impl FakeProvider {
    /// A fake Twilio that accepts every send (`201` with a message sid).
    pub async fn accepting() -> FakeProvider {
        FakeProvider::start(vec![(
            201,
            serde_json::json!({"sid": "SMout000000000000000000000000001"}),
        )])
        .await
    }

    /// The `Body` of every form posted for `To` = `to`, in order.
    pub fn bodies_to(&self, to: &str) -> Vec<String> {
        self.recorded()
            .iter()
            .map(|r| r.form())
            .filter(|f| f.iter().any(|(k, v)| k == "To" && v == to))
            .filter_map(|f| f.into_iter().find(|(k, _)| k == "Body").map(|(_, v)| v))
            .collect()
    }

    /// Starts the server on a free port in the current tokio runtime.
    pub async fn start(script: Vec<Answer>) -> FakeProvider {
        let inner = ScriptedProvider::start(replies(script)).await;
        FakeProvider {
            base: inner.base.clone(),
            inner,
        }
    }

    /// Everything received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.inner.hits().into_iter().map(|h| h.request).collect()
    }

    /// Replaces the script.
    pub fn answer(&self, script: Vec<Answer>) {
        *self.inner.script.lock().unwrap() = replies(script);
    }
}

fn replies(script: Vec<Answer>) -> Vec<Reply> {
    script
        .into_iter()
        .map(|(status, body)| Reply::new(status, body))
        .collect()
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    /// Its id.
    pub id: u64,
    /// Its kind.
    pub kind: String,
    /// Its data as JSON.
    pub data: Value,
}

/// A Server-Sent Events stream from the host.
pub struct SseStream {
    resp: reqwest::Response,
    buf: String,
}

impl SseStream {
    /// Opens `/api/v1/events` as the agent with `token`, resuming after `last` if given.
    pub async fn open(host: &Host, token: &str, last: Option<u64>) -> SseStream {
        let req = reqwest::Client::new()
            .get(host.url("/api/v1/events"))
            .bearer_auth(token);
        SseStream::open_request(req, last).await
    }

    /// Opens `/api/v1/events` with the console's session `cookie` (`name=value`).
    pub async fn open_cookie(host: &Host, cookie: &str, last: Option<u64>) -> SseStream {
        let req = reqwest::Client::new()
            .get(host.url("/api/v1/events"))
            .header("cookie", cookie);
        SseStream::open_request(req, last).await
    }

    async fn open_request(req: reqwest::RequestBuilder, last: Option<u64>) -> SseStream {
        let mut req = req.header("accept", "text/event-stream");
        if let Some(last) = last {
            req = req.header("last-event-id", last.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        SseStream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, waiting up to 20 s.
    pub async fn next(&mut self) -> Sse {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if let Some(id) = id {
                    return Sse {
                        id,
                        kind,
                        data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    };
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within 20 s");
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => panic!("event stream ended"),
                Ok(Err(e)) => panic!("event stream failed: {e}"),
                Err(_) => panic!("no event within 20 s"),
            }
        }
    }

    /// The next event of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Sse {
        loop {
            let e = self.next().await;
            if e.kind == kind {
                return e;
            }
        }
    }
}

/// Starts a web chat visitor's long-poll of `path` (on `host`, with the visitor's `token`) in
/// a task of its own; the task ends with the poll's JSON answer.
pub fn spawn_visitor_poll(host: &Host, path: &str, token: &str) -> tokio::task::JoinHandle<Value> {
    let url = host.url(path);
    let token = token.to_owned();
    tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    })
}

/// Polls `f` until it returns Some, for up to 20 s.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The path of a file inside the host's directory.
pub fn path_in(host: &Host, rel: &str) -> PathBuf {
    Path::new(&host.dir).join(rel)
}

impl Host {
    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends SIGTERM (with the `kill` command) and waits up to 30 s for the process to exit;
    /// returns its exit status. Start it again with [`Host::restart`].
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("host is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "plugboard did not exit within 30 s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends raw bytes one chunk at a time with `pause` between chunks, stopping when the host
    /// closes the connection; returns what it answered and how long until it closed.
    pub fn raw_slowly(&self, chunks: &[&[u8]], pause: Duration) -> (String, Duration) {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        for chunk in chunks {
            if s.write_all(chunk).is_err() {
                break;
            }
            std::thread::sleep(pause);
        }
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        (
            String::from_utf8_lossy(&buf).into_owned(),
            started.elapsed(),
        )
    }
}

/// One scripted answer of a [`ScriptedProvider`]: status, JSON body, headers, and a delay
/// before answering.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// An immediate answer.
    pub fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// With a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answered after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request a [`ScriptedProvider`] received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The request.
    pub request: Recorded,
    /// The status it was (or is being) answered with.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// A fake provider like [`FakeProvider`] whose answers can carry headers and delays, and which
/// records the status it answered each request with (the last answer repeats).
pub struct ScriptedProvider {
    /// Its base URL.
    pub base: String,
    recorded: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<Vec<Reply>>>,
}

impl ScriptedProvider {
    /// Starts the server on a free port in the current tokio runtime.
    pub async fn start(script: Vec<Reply>) -> ScriptedProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let (rec, scr) = (recorded.clone(), script.clone());
        let handler = move |req: axum::extract::Request| {
            let (rec, scr) = (rec.clone(), scr.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 16 << 20).await.unwrap();
                let reply = {
                    let mut s = scr.lock().unwrap();
                    if s.len() > 1 {
                        s.remove(0)
                    } else {
                        s[0].clone()
                    }
                };
                rec.lock().unwrap().push(Hit {
                    request: Recorded {
                        method: parts.method.to_string(),
                        path: parts
                            .uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        headers: parts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect(),
                        body: body.to_vec(),
                    },
                    status: reply.status,
                    at: Instant::now(),
                });
                tokio::time::sleep(reply.delay).await;
                let mut resp = axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::from_u16(reply.status).unwrap(),
                    axum::Json(reply.body),
                ));
                for (k, v) in reply.headers {
                    resp.headers_mut().insert(
                        axum::http::HeaderName::try_from(k).unwrap(),
                        axum::http::HeaderValue::try_from(v).unwrap(),
                    );
                }
                resp
            }
        };
        let app = axum::Router::new().fallback(handler);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ScriptedProvider {
            base: format!("http://{addr}"),
            recorded,
            script,
        }
    }

    /// Every request received so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.recorded.lock().unwrap().clone()
    }

    /// How many requests were answered with `status`.
    pub fn answered(&self, status: u16) -> usize {
        self.recorded
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.status == status)
            .count()
    }

    /// Replaces the script.
    pub fn answer(&self, script: Vec<Reply>) {
        *self.script.lock().unwrap() = script;
    }
}

/// A Twilio "message created" answer with `sid`.
pub fn twilio_created(sid: &str) -> Value {
    serde_json::json!({"sid": sid, "status": "queued", "error_code": null})
}

/// A Twilio error answer.
pub fn twilio_error(status: u16, code: u32, message: &str) -> Value {
    serde_json::json!({"code": code, "message": message, "status": status})
}

/// Runs `plugboard check --config` on `text`, written to `check.toml` in `dir` (relative
/// paths in it are under `dir`): whether it passed, and what it printed on stderr.
pub fn run_check(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["check", "--config"])
        .arg(&path)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `X-Signature` of the example JSON channel: hex HMAC-SHA256 of `body` under `secret`.
pub fn json_signature(secret: &str, body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
