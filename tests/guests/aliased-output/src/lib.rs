//! Test guest whose webhook answer aliases memory: 4,096 response headers whose values all
//! point at one 1 MiB buffer, so the answer is small inside the guest and 4 GiB once lifted. The
//! host must bound what it lifts from one call. `?headers` instead answers 2,048 distinct 1 KiB
//! headers (2 MiB of headers, a tiny body), which the host's 1 MiB answer limit must count.

use plugboard_sdk::types::{
    Capabilities, HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings,
    WebhookError, WebhookOutcome,
};

fn unsupported() -> SendError {
    SendError::Misconfigured("aliased-output only answers webhooks".into())
}

fn manifest() -> Manifest {
    Manifest {
        name: "aliased-output".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "sms".to_string(),
        settings: Vec::new(),
        api_hosts: Vec::new(),
        capabilities: Capabilities::empty(),
        rules: plugboard_sdk::rules::sms(),
    }
}

/// A channel whose answer aliases one buffer thousands of times.
pub struct AliasedOutput;

/// 4,096 `String`s sharing one 1 MiB allocation. Deliberately unsound (every copy will be freed
/// after the call): the point is what the host does while lifting them.
#[allow(unsafe_code)]
fn aliased_headers() -> Vec<(String, String)> {
    let mut big = std::mem::ManuallyDrop::new("x".repeat(1 << 20));
    let (ptr, len, cap) = (big.as_mut_ptr(), big.len(), big.capacity());
    (0..4096)
        .map(|_| {
            // SAFETY: not safe, on purpose; see the function's doc.
            let alias = unsafe { String::from_raw_parts(ptr, len, cap) };
            ("x-alias".to_string(), alias)
        })
        .collect()
}

impl plugboard_sdk::Channel for AliasedOutput {
    fn describe() -> Manifest {
        manifest()
    }

    fn handle_webhook(req: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        let headers = if req.url.ends_with("?headers") {
            (0..2048)
                .map(|i| (format!("x-h{i}"), "y".repeat(1024)))
                .collect()
        } else {
            aliased_headers()
        };
        Ok(WebhookOutcome {
            events: Vec::new(),
            response: HttpResponse {
                status: 200,
                headers,
                body: b"ok".to_vec(),
            },
        })
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(unsupported())
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(unsupported())
    }
}

plugboard_sdk::export_channel!(AliasedOutput);
