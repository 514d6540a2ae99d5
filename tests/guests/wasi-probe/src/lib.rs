//! Test guest that reports what WASI gives a plugin. `describe` writes a line to stdout and one
//! to stderr (the host must load it and log both). A webhook call answers a JSON document with
//! the WASI wall clock next to `host.now-millis`, two monotonic readings, random bytes, what
//! opening a file and a TCP connection (to `?connect=PORT` on 127.0.0.1) returned, and the
//! environment's size; it also writes a line to stdout.

use plugboard_sdk::types::{
    Capabilities, HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings,
    WebhookError, WebhookOutcome,
};
use std::io::Write;

fn unsupported() -> SendError {
    SendError::Misconfigured("wasi-probe only answers webhooks".into())
}

fn manifest() -> Manifest {
    Manifest {
        name: "wasi-probe".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "sms".to_string(),
        settings: Vec::new(),
        api_hosts: Vec::new(),
        capabilities: Capabilities::empty(),
        rules: plugboard_sdk::rules::sms(),
    }
}

/// A channel that reports what WASI gives it.
pub struct WasiProbe;

fn port(url: &str) -> u16 {
    url.split_once("connect=")
        .and_then(|(_, p)| p.split('&').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(9)
}

impl plugboard_sdk::Channel for WasiProbe {
    fn describe() -> Manifest {
        println!("wasi-probe stdout at describe");
        eprintln!("wasi-probe stderr at describe");
        let _ = std::io::stdout().flush();
        manifest()
    }

    fn handle_webhook(req: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let first = std::time::Instant::now();
        let second = std::time::Instant::now();
        // `RandomState` seeds from WASI random: two fresh ones hash alike only by chance.
        let random: Vec<u8> = (0..16u8)
            .map(|i| {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new()
                    .hash_one(i)
                    .to_le_bytes()[0]
            })
            .collect();
        let file = std::fs::read("/etc/passwd").map(|b| b.len());
        let dir = std::fs::read_dir("/").map(|d| d.count());
        let connect = std::net::TcpStream::connect(("127.0.0.1", port(&req.url)));
        let env = std::env::vars().count() + std::env::args().count();
        println!("wasi-probe stdout in handle-webhook");
        let body = plugboard_sdk::serde_json::json!({
            "wall_ms": wall_ms,
            "host_ms": plugboard_sdk::host::now_millis(),
            "monotonic_elapsed_ns": second.duration_since(first).as_nanos() as u64,
            "random": random.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "file": format!("{file:?}"),
            "dir": format!("{dir:?}"),
            "connect": format!("{:?}", connect.map(|_| "connected")),
            "env": env,
        });
        Ok(WebhookOutcome {
            events: Vec::new(),
            response: plugboard_sdk::http::response(
                200,
                "application/json",
                body.to_string().into_bytes(),
            ),
        })
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(unsupported())
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(unsupported())
    }
}

plugboard_sdk::export_channel!(WasiProbe);
