//! `GET /metrics` against the real binary, parsed with a Prometheus text parser: off without
//! configuration, behind its own token on the main listener, open on `metrics_listen`; every
//! family named in the README present with its type; the families moving with a scripted run
//! of traffic (webhooks, a provider retry, an unknown channel, offers, a take, a reply, a
//! delivery callback, a dead letter); label values bounded (route templates, never ids).

mod support;

use std::collections::BTreeSet;

use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use serde_json::json;
use support::*;

const METRICS_TOKEN: &str = "metrics-token-1234";

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// Every family and its type, as the README lists them.
const FAMILIES: &[(&str, PrometheusType)] = &[
    ("plugboard_plugin_calls_total", PrometheusType::Counter),
    ("plugboard_plugin_call_seconds", PrometheusType::Histogram),
    (
        "plugboard_plugin_instantiations_total",
        PrometheusType::Counter,
    ),
    ("plugboard_plugin_memory_bytes", PrometheusType::Gauge),
    ("plugboard_channel_quarantined", PrometheusType::Gauge),
    ("plugboard_webhooks_total", PrometheusType::Counter),
    ("plugboard_messages_total", PrometheusType::Counter),
    ("plugboard_delivery_total", PrometheusType::Counter),
    ("plugboard_outbox_pending", PrometheusType::Gauge),
    ("plugboard_outbox_attempts_total", PrometheusType::Counter),
    ("plugboard_dead_letters_total", PrometheusType::Counter),
    ("plugboard_ingest_batch_size", PrometheusType::Histogram),
    ("plugboard_ingest_flush_seconds", PrometheusType::Histogram),
    ("plugboard_waiting_conversations", PrometheusType::Gauge),
    ("plugboard_offers_total", PrometheusType::Counter),
    ("plugboard_agents", PrometheusType::Gauge),
    ("plugboard_sse_clients", PrometheusType::Gauge),
    ("plugboard_http_requests_total", PrometheusType::Counter),
    ("plugboard_http_request_seconds", PrometheusType::Histogram),
];

/// Every family present has the type the README gives it.
fn assert_types(e: &Exposition) {
    for (name, family) in &e.families {
        let (_, kind) = FAMILIES
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("family {name} is not in the README's list"));
        assert_eq!(&family.family_type, kind, "{name}");
    }
}

/// `GET /metrics` with `token`: status, content type, body.
async fn scrape_with(host: &Host, token: Option<&str>) -> (u16, String, String) {
    let mut req = host.http.get(host.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, resp.text().await.unwrap())
}

/// A scrape with the token, parsed.
async fn scrape(host: &Host) -> Exposition {
    let (status, _, body) = scrape_with(host, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

fn parse(text: &str) -> Exposition {
    openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text ({e:?}):\n{text}"))
}

/// The samples of `family` whose labels include every pair of `want`, as (labels, value);
/// a histogram's value is its count.
fn samples(
    e: &Exposition,
    family: &str,
    want: &[(&str, &str)],
) -> Vec<(Vec<(String, String)>, f64)> {
    // A labelled family shows once it has a series: none yet is an empty list.
    let Some(f) = e.families.get(family) else {
        return Vec::new();
    };
    f.iter_samples()
        .filter_map(|s| {
            let labels: Vec<(String, String)> = s
                .get_labelset()
                .ok()?
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let matches = want
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v));
            let value = match &s.value {
                PrometheusValue::Counter(c) => c.value.as_f64(),
                PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
                PrometheusValue::Histogram(h) => h.count.unwrap_or(0) as f64,
                PrometheusValue::Summary(_) => return None,
            };
            matches.then_some((labels, value))
        })
        .collect()
}

/// The sum of `family`'s samples matching `want` (0 when there is none).
fn value(e: &Exposition, family: &str, want: &[(&str, &str)]) -> f64 {
    samples(e, family, want).iter().map(|(_, v)| v).sum()
}

/// Every value label `label` takes in `family`.
fn label_values(e: &Exposition, family: &str, label: &str) -> BTreeSet<String> {
    samples(e, family, &[])
        .into_iter()
        .flat_map(|(labels, _)| labels)
        .filter(|(k, _)| k == label)
        .map(|(_, v)| v)
        .collect()
}

/// Scrapes until `check` holds (a metric updated just after the answer that caused it).
async fn until(host: &Host, what: &str, check: impl Fn(&Exposition) -> bool) -> Exposition {
    eventually(what, || async {
        let e = scrape(host).await;
        check(&e).then_some(e)
    })
    .await
}

fn setup(api_base: Option<&str>, server: String) -> Setup {
    Setup {
        twilio_api_base: api_base.map(str::to_owned),
        server,
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_by_default_behind_their_token_and_open_on_their_own_listener() {
    let off = Host::start(Setup::default());
    let (status, _, body) = scrape_with(&off, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 404);
    assert!(body.contains("server.metrics_token"), "{body}");
    drop(off);

    let private = free_port();
    let host = Host::start(setup(
        None,
        format!("metrics_token = \"{METRICS_TOKEN}\"\nmetrics_listen = \"127.0.0.1:{private}\""),
    ));
    for token in [None, Some("wrong-token-xyz"), Some(ALICE), Some(ADMIN)] {
        let (status, _, body) = scrape_with(&host, token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(body.contains("metrics_token"), "{body}");
    }
    let (status, content_type, body) = scrape_with(&host, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let e = parse(&body);
    // A labelled family shows once it has a series; those without labels show at once.
    for name in [
        "plugboard_outbox_pending",
        "plugboard_sse_clients",
        "plugboard_ingest_flush_seconds",
    ] {
        assert!(e.families.contains_key(name), "{name} missing:\n{body}");
    }
    assert_types(&e);
    // The private listener answers without a token, and only /metrics.
    let url = format!("http://127.0.0.1:{private}");
    let open = host
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    parse(&open.text().await.unwrap());
    let other = host
        .http
        .get(format!("{url}/api/v1/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_move_with_traffic_and_labels_stay_bounded() {
    let twilio = FakeProvider::start(vec![(
        201,
        twilio_created("SMout000000000000000000000000001"),
    )])
    .await;
    let host = Host::start(Setup {
        env: vec![
            ("PLUGBOARD_OUTBOX_MAX_ATTEMPTS".into(), "2".into()),
            ("PLUGBOARD_OUTBOX_BASE_MS".into(), "50".into()),
        ],
        ..setup(
            Some(&twilio.base),
            format!("metrics_token = \"{METRICS_TOKEN}\""),
        )
    });
    host.presence(ALICE, "online").await;
    let stream = SseStream::open(&host, ALICE, None).await;
    let e = scrape(&host).await;
    assert_eq!(value(&e, "plugboard_sse_clients", &[]), 1.0);
    let agents = |queue, presence| {
        value(
            &e,
            "plugboard_agents",
            &[("queue", queue), ("presence", presence)],
        )
    };
    assert_eq!(agents("support", "online"), 1.0);
    assert_eq!(agents("support", "offline"), 0.0);
    assert_eq!(agents("sales", "offline"), 1.0, "bob");

    // Three customers write; one webhook is a provider's retry; one names no channel.
    for (i, from) in ["+14155550101", "+14155550102", "+14155550103"]
        .iter()
        .enumerate()
    {
        let sid = format!("SMm{i:031}");
        let resp = host
            .post_twilio(
                "sms",
                &pairs(&inbound_sms(&sid, from, "hello")),
                Some(AUTH_TOKEN),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
    let retry = host
        .post_twilio(
            "sms",
            &pairs(&inbound_sms(
                &format!("SMm{:031}", 0),
                "+14155550101",
                "hello",
            )),
            Some(AUTH_TOKEN),
        )
        .await;
    assert_eq!(retry.status(), 200);
    let unknown = host
        .post_twilio(
            "no-such-channel",
            &pairs(&inbound_sms("SMx", "+1", "x")),
            Some(AUTH_TOKEN),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let e = until(&host, "webhooks and offers counted", |e| {
        value(
            e,
            "plugboard_offers_total",
            &[("queue", "support"), ("outcome", "made")],
        ) == 3.0
    })
    .await;
    assert_eq!(
        value(
            &e,
            "plugboard_webhooks_total",
            &[("channel", "sms"), ("status", "200")]
        ),
        4.0
    );
    assert_eq!(
        value(
            &e,
            "plugboard_webhooks_total",
            &[("channel", "(unknown)"), ("status", "404")]
        ),
        1.0,
        "a made-up channel is one bounded label"
    );
    assert!(!label_values(&e, "plugboard_webhooks_total", "channel").contains("no-such-channel"));
    assert_eq!(
        value(
            &e,
            "plugboard_messages_total",
            &[("channel", "sms"), ("direction", "inbound")]
        ),
        3.0,
        "the provider's retry stored nothing new"
    );
    let handle = [("plugin", "twilio-sms"), ("function", "handle-webhook")];
    assert!(
        value(
            &e,
            "plugboard_plugin_calls_total",
            &[handle[0], handle[1], ("outcome", "ok")]
        ) >= 4.0
    );
    assert!(
        value(&e, "plugboard_plugin_call_seconds", &handle) >= 4.0,
        "observed per call"
    );
    assert!(
        value(
            &e,
            "plugboard_plugin_instantiations_total",
            &[("plugin", "twilio-sms")]
        ) >= 1.0
    );
    assert!(
        value(
            &e,
            "plugboard_plugin_memory_bytes",
            &[("plugin", "twilio-sms")]
        ) > 0.0
    );
    assert!(value(&e, "plugboard_ingest_batch_size", &[]) >= 1.0);
    assert!(value(&e, "plugboard_ingest_flush_seconds", &[]) >= 1.0);
    assert_eq!(
        value(
            &e,
            "plugboard_waiting_conversations",
            &[("queue", "support")]
        ),
        3.0
    );
    assert_eq!(
        value(&e, "plugboard_channel_quarantined", &[("channel", "sms")]),
        0.0
    );

    // Alice takes one and replies; the provider reports it delivered.
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = host.act(&id, "take", ALICE, json!({})).await;
    assert_eq!(status, 200);
    let (status, sent) = host
        .act(&id, "messages", ALICE, json!({"text": "on it"}))
        .await;
    assert_eq!(status, 201, "{sent}");
    let (status, _) = host
        .get_json(&format!("/api/v1/conversations/{id}"), ALICE)
        .await;
    assert_eq!(status, 200);
    let sid = sent["provider_id"].as_str().unwrap().to_owned();
    let resp = host
        .post_twilio(
            "sms",
            &pairs(&status_callback(&sid, "delivered", None)),
            Some(AUTH_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let e = until(&host, "the delivery counted", |e| {
        value(
            e,
            "plugboard_delivery_total",
            &[("channel", "sms"), ("state", "delivered")],
        ) == 1.0
    })
    .await;
    assert_eq!(
        value(
            &e,
            "plugboard_offers_total",
            &[("queue", "support"), ("outcome", "taken")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &e,
            "plugboard_waiting_conversations",
            &[("queue", "support")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &e,
            "plugboard_messages_total",
            &[("channel", "sms"), ("direction", "outbound")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &e,
            "plugboard_outbox_attempts_total",
            &[("channel", "sms"), ("outcome", "sent")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &e,
            "plugboard_delivery_total",
            &[("channel", "sms"), ("state", "queued")]
        ),
        1.0
    );
    assert_eq!(value(&e, "plugboard_outbox_pending", &[]), 0.0);
    let routes = label_values(&e, "plugboard_http_requests_total", "route");
    for template in [
        "/api/v1/conversations/{id}",
        "/api/v1/conversations/{id}/messages",
        "/webhooks/{channel}",
        "/api/v1/events",
    ] {
        assert!(
            routes.contains(template),
            "{template} missing from {routes:?}"
        );
    }
    assert!(
        routes
            .iter()
            .all(|r| !r.contains(&format!("/{id}")) && !r.contains("no-such-channel")),
        "routes are templates, never paths: {routes:?}"
    );
    assert!(
        value(
            &e,
            "plugboard_http_request_seconds",
            &[("route", "/api/v1/conversations/{id}/take")]
        ) >= 1.0
    );

    // The provider fails for good: two attempts, one retry, one dead letter.
    twilio.answer(vec![(500, json!({"message": "boom"}))]);
    let (status, _) = host
        .act(&id, "messages", ALICE, json!({"text": "again"}))
        .await;
    assert!(status == 201 || status == 202, "{status}");
    let e = until(&host, "the dead letter counted", |e| {
        value(e, "plugboard_dead_letters_total", &[("channel", "sms")]) == 1.0
    })
    .await;
    assert_eq!(
        value(
            &e,
            "plugboard_outbox_attempts_total",
            &[("channel", "sms"), ("outcome", "retry")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &e,
            "plugboard_outbox_attempts_total",
            &[("channel", "sms"), ("outcome", "dead_lettered")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &e,
            "plugboard_delivery_total",
            &[("channel", "sms"), ("state", "failed")]
        ),
        1.0
    );
    // By now every family has a series, each of the README's type.
    assert_types(&e);
    for (name, _) in FAMILIES {
        assert!(
            e.families.contains_key(*name),
            "{name} missing after the traffic"
        );
    }

    // The stream closes: the gauge follows once the host writes to it again (a new offer).
    drop(stream);
    let resp = host
        .post_twilio(
            "sms",
            &pairs(&inbound_sms("SMm9", "+14155550109", "hi")),
            Some(AUTH_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
    until(&host, "the stream counted closed", |e| {
        value(e, "plugboard_sse_clients", &[]) == 0.0
    })
    .await;
}
