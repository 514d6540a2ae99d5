//! Nobody in, against the real binary over loopback: malformed forms and JSON, invalid UTF-8,
//! header floods, slow clients, path tricks in channel names, rate limits, oversize bodies, and
//! a bounded property test of arbitrary bytes at the webhook and at the SDK's parsers. The host
//! answers each with a 4xx and a message, stores nothing, and keeps serving.

mod support;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;
use support::*;

/// The status code of a raw HTTP answer (0 when there is none).
fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn healthy(host: &Host) {
    let resp = host.http.get(host.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the host still serves");
}

/// Everything alice can see: (conversations, messages).
async fn inventory(host: &Host) -> (usize, usize) {
    let convs = host.conversations(ALICE).await;
    let mut messages = 0;
    for c in &convs {
        messages += host.messages(c["id"].as_str().unwrap(), ALICE).await.len();
    }
    (convs.len(), messages)
}

async fn post_raw(host: &Host, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = host
        .http
        .post(host.url(path))
        .bearer_auth(ALICE)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_refused_with_a_message_and_nothing_is_stored() {
    let host = Host::start(Setup::default());
    let params = inbound_sms("SM20000000000000000000000000000001", "+14155550301", "hi");
    host.post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = inventory(&host).await;

    let form_cases: [&[u8]; 5] = [
        b"Body=%zz&From=%2B1",
        b"From=%2",
        b"Body=\xff\xfe&From=%2B14155550301",
        b"Body=%C3%28",
        b"\x00\x01\x02=\x03",
    ];
    for body in form_cases {
        let (status, answer) = post_raw(
            &host,
            "/webhooks/sms",
            "application/x-www-form-urlencoded",
            body.to_vec(),
        )
        .await;
        assert!(
            status == 400 || status == 403,
            "{:?}: {status} {answer}",
            String::from_utf8_lossy(body)
        );
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }

    let reply = format!("/api/v1/conversations/{id}/messages");
    let json_cases: [(&str, &[u8]); 8] = [
        (reply.as_str(), b"{\"text\": "),
        (reply.as_str(), b"[1,2,3]"),
        (reply.as_str(), b"{\"text\": \"\xff\xfe\"}"),
        (reply.as_str(), b"\xef\xbb\xbf\x00"),
        (reply.as_str(), b"{\"text\": 12}"),
        ("/api/v1/contacts", b"{\"name\": \"Ann\""),
        ("/api/v1/conversations", b"{\"to\": [\"+1\"]}"),
        ("/api/v1/agents/me/presence", b"nope"),
    ];
    for (path, body) in json_cases {
        let req = if path.ends_with("presence") {
            host.http.put(host.url(path))
        } else {
            host.http.post(host.url(path))
        };
        let resp = req
            .bearer_auth(ALICE)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            status,
            400,
            "{path} {:?}: {answer}",
            String::from_utf8_lossy(body)
        );
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    assert_eq!(inventory(&host).await, before, "nothing was stored");
    healthy(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_flood_is_refused_and_the_host_still_serves() {
    let host = Host::start(Setup::default());
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..2000 {
        request.push_str(&format!("X-Flood-{i}: {}\r\n", "v".repeat(20)));
    }
    request.push_str("Connection: close\r\n\r\n");
    let answer = host.raw(request.as_bytes());
    let status = status_of(&answer);
    assert!(status == 431 || status == 400, "{answer}");

    // One huge header: over the head size limit.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let status = status_of(&host.raw(huge.as_bytes()));
    assert!(status == 431 || status == 400, "{status}");
    healthy(&host).await;
    println!(
        "2,000 headers: {}; a 100 KiB header: {status}",
        status_of(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_cut_off_and_the_host_still_serves() {
    let host = Host::start(Setup {
        env: vec![(
            "PLUGBOARD_HEADER_READ_TIMEOUT_MS".to_owned(),
            "1000".to_owned(),
        )],
        ..Setup::default()
    });
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n\r\n";
    let chunks: Vec<&[u8]> = request.chunks(1).collect();
    // One byte every 100 ms: the whole head would take about 6.5 s.
    let (answer, took) =
        tokio::task::block_in_place(|| host.raw_slowly(&chunks, Duration::from_millis(100)));
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(took < Duration::from_secs(4), "cut off after {took:?}");
    healthy(&host).await;
    println!(
        "slow client cut off after {took:?}: {:?}",
        answer.lines().next()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_in_channel_names_are_not_found() {
    let host = Host::start(Setup::default());
    let long = "a".repeat(4000);
    let paths = [
        "/webhooks/..%2Fsms".to_owned(),
        "/webhooks/%2e%2e/sms".to_owned(),
        "/webhooks/sms%00".to_owned(),
        "/webhooks/sms%2F".to_owned(),
        "/webhooks/SMS".to_owned(),
        "/webhooks/sms/extra".to_owned(),
        "/webhooks/%F0%9F%98%80".to_owned(),
        "/webhooks/%ff".to_owned(),
        format!("/webhooks/{long}"),
    ];
    for path in &paths {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=b"
        );
        let answer = host.raw(request.as_bytes());
        let status = status_of(&answer);
        // A name that does not decode to UTF-8 cannot even be looked up: 400.
        let expected: &[u16] = if path.ends_with("%ff") {
            &[400, 404]
        } else {
            &[404]
        };
        assert!(
            expected.contains(&status),
            "{}: {answer}",
            &path[..path.len().min(60)]
        );
    }
    healthy(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_then_recover() {
    let host = Host::start(Setup {
        env: vec![
            ("PLUGBOARD_API_RATE".to_owned(), "5".to_owned()),
            ("PLUGBOARD_WEBHOOK_RATE".to_owned(), "5".to_owned()),
        ],
        ..Setup::default()
    });
    // API: burst 10, then 429 for alice's token only.
    let mut limited = None;
    for i in 0..40 {
        let resp = host
            .http
            .get(host.url("/api/v1/conversations"))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            let after: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("retry"), "{body}");
            limited = Some((i, after));
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let (at, after) = limited.expect("alice's token was rate limited");
    assert!((1..=2).contains(&after), "Retry-After {after}");
    assert!(at >= 9, "the burst was honoured: limited at request {at}");
    let (status, _) = host.get_json("/api/v1/conversations", BOB).await;
    assert_eq!(status, 200, "another token has its own bucket");
    tokio::time::sleep(Duration::from_secs(after)).await;
    let (status, _) = host.get_json("/api/v1/conversations", ALICE).await;
    assert_eq!(status, 200, "recovered after Retry-After");

    // Webhooks: per channel.
    let params = inbound_sms("SM20000000000000000000000000000002", "+14155550302", "x");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let resp = host
            .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
            .await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200, "recovered");
    healthy(&host).await;
    println!("API limited at request {at} (Retry-After {after}); webhook statuses {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_api_body_is_413() {
    let host = Host::start(Setup::default());
    // Declared too large: refused before the body is read.
    let request = format!(
        "POST /api/v1/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n{{\"name\": \""
    );
    let answer = host.raw(request.as_bytes());
    assert_eq!(status_of(&answer), 413, "{answer}");
    // Chunked, no length: cut at the limit while reading.
    let mut chunked = format!(
        "POST /api/v1/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend_from_slice(&[b' '; 64 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = tokio::task::block_in_place(|| host.raw(&chunked));
    assert_eq!(status_of(&answer), 413, "{answer}");
    let (status, contacts) = host.get_json("/api/v1/contacts", ALICE).await;
    assert_eq!(status, 200);
    assert_eq!(
        contacts["contacts"].as_array().map(Vec::len),
        Some(0),
        "{contacts}"
    );
    healthy(&host).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sdk_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = plugboard_sdk::form::parse(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = plugboard_sdk::E164::parse(&text);
    }
}

#[test]
fn arbitrary_bytes_at_the_webhook_never_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // No limits: every case must reach the plugin, not a 429 for the refused ones before it.
    let host = Host::start(Setup {
        env: vec![
            ("PLUGBOARD_WEBHOOK_RATE".to_owned(), "0".to_owned()),
            ("PLUGBOARD_AUTH_FAILURE_RATE".to_owned(), "0".to_owned()),
        ],
        ..Setup::default()
    });
    let started = Instant::now();
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    });
    // Raw bytes, and well-formed forms of arbitrary names and values (which reach the
    // signature check and the parser's later stages).
    let forms =
        proptest::collection::vec((any::<String>(), any::<String>()), 0..12).prop_map(|pairs| {
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            form(&pairs).into_bytes()
        });
    let strategy = (
        prop_oneof![proptest::collection::vec(any::<u8>(), 0..2048), forms],
        prop_oneof![
            Just("application/x-www-form-urlencoded"),
            Just("application/json"),
            Just("text/plain"),
        ],
        any::<bool>(),
    );
    runner
        .run(&strategy, |(body, content_type, signed)| {
            let status = rt.block_on(async {
                let url = host.url("/webhooks/sms");
                let mut req = host
                    .http
                    .post(&url)
                    .header("content-type", content_type)
                    .body(body.clone());
                if signed {
                    req = req.header(
                        "x-twilio-signature",
                        twilio_signature(AUTH_TOKEN, &url, &[]),
                    );
                }
                req.send().await.unwrap().status().as_u16()
            });
            *seen.lock().unwrap().entry(status).or_default() += 1;
            // 503 is documented: a plugin deadline or storage not durable in time.
            prop_assert!(
                status < 500 || status == 503,
                "status {} for {:?}",
                status,
                body
            );
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        healthy(&host).await;
        let (status, _) = host.get_json("/api/v1/conversations", ALICE).await;
        assert_eq!(status, 200);
    });
    println!(
        "256 arbitrary webhook bodies in {:?}: statuses {:?}",
        started.elapsed(),
        seen.lock().unwrap()
    );
}

/// A client whose connections come from `ip` (any 127.x.y.z is loopback on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_junk_from_one_address_does_not_lock_out_signed_webhooks() {
    // A channel budget of 5/s (burst 10): before, 10 junk calls spent it for everyone. Failed
    // authentication: 1/s (burst 2) per address.
    let host = Host::start(Setup {
        env: vec![
            ("PLUGBOARD_WEBHOOK_RATE".to_owned(), "5".to_owned()),
            ("PLUGBOARD_AUTH_FAILURE_RATE".to_owned(), "1".to_owned()),
        ],
        ..Setup::default()
    });
    let attacker = client_from("127.0.0.2");
    let url = host.url("/webhooks/sms");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood = {
        let (url, sent) = (url.clone(), sent.clone());
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for i in 0..300 {
                let params = inbound_sms(&format!("SMjunk{i:030}"), "+14155550666", "junk");
                let resp = attacker
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")
                    .body(form(&pairs(&params)))
                    .send()
                    .await
                    .unwrap();
                *statuses.entry(resp.status().as_u16()).or_default() += 1;
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            statuses
        })
    };
    eventually("the junk flood to be under way", || {
        let n = sent.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 40).then_some(()) }
    })
    .await;
    let mut genuine = Vec::new();
    for i in 0..8 {
        let params = inbound_sms(
            &format!("SM3000000000000000000000000000000{i}"),
            "+14155550303",
            &format!("genuine {i}"),
        );
        let resp = host
            .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
            .await;
        genuine.push(resp.status().as_u16());
    }
    let junk = flood.await.unwrap();
    assert!(genuine.iter().all(|s| *s == 200), "genuine: {genuine:?}");
    assert!(
        junk.keys().all(|s| *s == 403 || *s == 429),
        "junk answers: {junk:?}"
    );
    assert!(
        junk.get(&429).copied().unwrap_or(0) > 150,
        "the junk address was limited: {junk:?}"
    );
    let (convs, messages) = inventory(&host).await;
    assert_eq!(
        (convs, messages),
        (1, 8),
        "the genuine messages, and only they"
    );
    println!("genuine statuses {genuine:?} during a flood from 127.0.0.2 answered {junk:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_normalized_and_guessing_is_limited_per_address() {
    let host = Host::start(Setup {
        env: vec![
            ("PLUGBOARD_API_RATE".to_owned(), "5".to_owned()),
            ("PLUGBOARD_AUTH_FAILURE_RATE".to_owned(), "2".to_owned()),
        ],
        ..Setup::default()
    });
    let get = |client: reqwest::Client, auth: String| {
        let url = host.url("/api/v1/conversations");
        async move {
            let resp = client
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").is_some();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, retry, body)
        }
    };

    // The scheme is case-insensitive.
    let (status, _, body) = get(host.http.clone(), format!("bearer {ALICE}")).await;
    assert_eq!(status, 200, "lower-case scheme: {body}");
    let (status, _, _) = get(host.http.clone(), format!("BEARER \t {BOB}")).await;
    assert_eq!(status, 200, "upper-case scheme, tab and spaces");

    // Every spacing of one token is one bucket (burst 10).
    let mut statuses = Vec::new();
    for spaces in 1..=30 {
        let (status, retry, _) = get(
            host.http.clone(),
            format!("Bearer{}{ALICE}", " ".repeat(spaces)),
        )
        .await;
        statuses.push(status);
        if status == 429 {
            assert!(retry, "429 carries Retry-After");
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.len() <= 11,
        "limited within the burst: {statuses:?}"
    );

    // Guessing different tokens from one address: 401 until the failure burst (4) is spent,
    // then 429, even for a right token from that address; other addresses are unaffected.
    let guesser = client_from("127.0.0.3");
    let mut guesses = Vec::new();
    for i in 0..20 {
        let (status, _, body) = get(guesser.clone(), format!("Bearer guess-{i:08}")).await;
        guesses.push(status);
        if status == 429 {
            assert!(body["error"].as_str().unwrap().contains("retry"), "{body}");
            break;
        }
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(guesses.last(), Some(&429), "{guesses:?}");
    assert!(guesses.len() <= 6, "limited after the burst: {guesses:?}");
    let (status, _, _) = get(guesser.clone(), format!("Bearer {BOB}")).await;
    assert_eq!(status, 429, "the guessing address waits, whatever it sends");
    let (status, _, _) = get(client_from("127.0.0.4"), format!("Bearer {BOB}")).await;
    assert_eq!(status, 200, "another address is unaffected");
    healthy(&host).await;
    println!("spacing variants {statuses:?}; guesses {guesses:?}");
}
