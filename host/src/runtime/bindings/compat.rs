//! Older contract versions the host still serves, and the conversions between their types and
//! the current ones.
//!
//! A plugin built against `plugboard:plugin@0.2.0` is loaded with the frozen 0.2.0 bindings
//! ([`super::v0_2`]) and every call converts: arguments from the current types to 0.2.0,
//! results from 0.2.0 to the current types. What 0.3.0 added reads as "not given" for such a
//! plugin: an opt-out without a provider id (the host then deduplicates it by the message it
//! came with), no `check-settings` (the settings are only checked for required names), and
//! the channel rules 0.2.0 hosts applied by `kind` (see `legacy_rules`).

use super::v0_2::wit as old;
use super::wit as new;

/// The contract versions the host serves, oldest first; the last is its own.
pub const SERVED: &[&str] = &["0.2.0", "0.3.0"];

impl From<new::HttpRequest> for old::HttpRequest {
    fn from(r: new::HttpRequest) -> Self {
        old::HttpRequest {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<old::HttpRequest> for new::HttpRequest {
    fn from(r: old::HttpRequest) -> Self {
        new::HttpRequest {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<new::HttpResponse> for old::HttpResponse {
    fn from(r: new::HttpResponse) -> Self {
        old::HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<old::HttpResponse> for new::HttpResponse {
    fn from(r: old::HttpResponse) -> Self {
        new::HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<new::Attachment> for old::Attachment {
    fn from(a: new::Attachment) -> Self {
        old::Attachment {
            url: a.url,
            content_type: a.content_type,
        }
    }
}

impl From<old::Attachment> for new::Attachment {
    fn from(a: old::Attachment) -> Self {
        new::Attachment {
            url: a.url,
            content_type: a.content_type,
        }
    }
}

impl From<new::OutboundMessage> for old::OutboundMessage {
    fn from(m: new::OutboundMessage) -> Self {
        old::OutboundMessage {
            id: m.id,
            to: m.to,
            text: m.text,
            attachments: m.attachments.into_iter().map(Into::into).collect(),
            thread: m.thread,
            since_last_inbound: m.since_last_inbound,
            token: m.token,
        }
    }
}

impl From<old::InboundMessage> for new::InboundMessage {
    fn from(m: old::InboundMessage) -> Self {
        new::InboundMessage {
            provider_id: m.provider_id,
            from: m.from,
            to: m.to,
            text: m.text,
            attachments: m.attachments.into_iter().map(Into::into).collect(),
            contact_name: m.contact_name,
            thread: m.thread,
        }
    }
}

impl From<old::DeliveryState> for new::DeliveryState {
    fn from(s: old::DeliveryState) -> Self {
        match s {
            old::DeliveryState::Queued => new::DeliveryState::Queued,
            old::DeliveryState::Sent => new::DeliveryState::Sent,
            old::DeliveryState::Delivered => new::DeliveryState::Delivered,
            old::DeliveryState::Read => new::DeliveryState::Read,
            old::DeliveryState::Failed => new::DeliveryState::Failed,
        }
    }
}

impl From<old::Event> for new::Event {
    fn from(e: old::Event) -> Self {
        let change = |address| new::OptChange {
            address,
            provider_id: None,
        };
        match e {
            old::Event::Message(m) => new::Event::Message(m.into()),
            old::Event::Status(s) => new::Event::Status(new::DeliveryStatus {
                provider_id: s.provider_id,
                state: s.state.into(),
                error_code: s.error_code,
                error_message: s.error_message,
            }),
            old::Event::OptOut(address) => new::Event::OptOut(change(address)),
            old::Event::OptIn(address) => new::Event::OptIn(change(address)),
        }
    }
}

impl From<old::WebhookOutcome> for new::WebhookOutcome {
    fn from(o: old::WebhookOutcome) -> Self {
        new::WebhookOutcome {
            events: o.events.into_iter().map(Into::into).collect(),
            response: o.response.into(),
        }
    }
}

impl From<old::WebhookError> for new::WebhookError {
    fn from(e: old::WebhookError) -> Self {
        match e {
            old::WebhookError::Unauthorized(m) => new::WebhookError::Unauthorized(m),
            old::WebhookError::BadRequest(m) => new::WebhookError::BadRequest(m),
            old::WebhookError::Misconfigured(m) => new::WebhookError::Misconfigured(m),
        }
    }
}

impl From<old::SendError> for new::SendError {
    fn from(e: old::SendError) -> Self {
        match e {
            old::SendError::Invalid(m) => new::SendError::Invalid(m),
            old::SendError::OptedOut(m) => new::SendError::OptedOut(m),
            old::SendError::Unauthorized(m) => new::SendError::Unauthorized(m),
            old::SendError::RateLimited(s) => new::SendError::RateLimited(s),
            old::SendError::Unavailable(m) => new::SendError::Unavailable(m),
            old::SendError::Misconfigured(m) => new::SendError::Misconfigured(m),
        }
    }
}

impl From<old::TokenGrant> for new::TokenGrant {
    fn from(t: old::TokenGrant) -> Self {
        new::TokenGrant {
            token: t.token,
            expires_in: t.expires_in,
        }
    }
}

impl From<old::Manifest> for new::Manifest {
    fn from(m: old::Manifest) -> Self {
        let mut capabilities = new::Capabilities::empty();
        for (was, is) in [
            (
                old::Capabilities::ATTACHMENTS,
                new::Capabilities::ATTACHMENTS,
            ),
            (old::Capabilities::TEMPLATES, new::Capabilities::TEMPLATES),
            (
                old::Capabilities::DELIVERY_RECEIPTS,
                new::Capabilities::DELIVERY_RECEIPTS,
            ),
        ] {
            if m.capabilities.contains(was) {
                capabilities |= is;
            }
        }
        if m.kind == "webchat" {
            capabilities |= new::Capabilities::HOSTED_CHAT;
        }
        let rules = legacy_rules(&m.kind);
        new::Manifest {
            name: m.name,
            version: m.version,
            kind: m.kind,
            settings: m
                .settings
                .into_iter()
                .map(|s| new::SettingSpec {
                    name: s.name,
                    required: s.required,
                    secret: s.secret,
                    description: s.description,
                })
                .collect(),
            api_hosts: m.api_hosts,
            capabilities,
            rules,
        }
    }
}

/// The rules the host applied by `kind` before plugins declared them (0.2.0): phone numbers,
/// 1,600 characters and the STOP keywords on `sms` and `whatsapp`, SMS segments on `sms`,
/// WhatsApp's 24-hour window; anything else opaque addresses and 5,000 characters.
fn legacy_rules(kind: &str) -> new::ChannelRules {
    let phone = |prefix: &str, segments: bool, window: Option<u32>| new::ChannelRules {
        address: new::AddressForm::E164(prefix.to_owned()),
        max_text: 1600,
        segments,
        opt_out_keywords: true,
        reply_window_hours: window,
    };
    match kind {
        "sms" => phone("", true, None),
        "whatsapp" => phone("whatsapp:", false, Some(24)),
        _ => new::ChannelRules {
            address: new::AddressForm::Opaque,
            max_text: 5000,
            segments: false,
            opt_out_keywords: false,
            reply_window_hours: None,
        },
    }
}

impl From<new::WaitingWork> for old::WaitingWork {
    fn from(w: new::WaitingWork) -> Self {
        old::WaitingWork {
            conversation: w.conversation,
            queue: w.queue,
            channel: w.channel,
            skills: w.skills,
            waiting_since: w.waiting_since,
            now: w.now,
        }
    }
}

impl From<&new::AgentState> for old::AgentState {
    fn from(a: &new::AgentState) -> Self {
        old::AgentState {
            index: a.index,
            presence: match a.presence {
                new::Presence::Online => old::Presence::Online,
                new::Presence::Away => old::Presence::Away,
                new::Presence::Offline => old::Presence::Offline,
            },
            active: a.active,
            capacity: a.capacity,
            idle_since: a.idle_since,
            last_offered: a.last_offered,
            last_assigned: a.last_assigned,
            skills: a.skills,
            tried: a.tried,
        }
    }
}

impl From<old::Decision> for new::Decision {
    fn from(d: old::Decision) -> Self {
        match d {
            old::Decision::Offer(agents) => new::Decision::Offer(agents),
            old::Decision::Wait => new::Decision::Wait,
            old::Decision::Overflow => new::Decision::Overflow,
        }
    }
}

/// Maps an optional request and its error through the conversions above.
pub fn optional(
    r: Result<Option<old::HttpRequest>, old::SendError>,
) -> Result<Option<new::HttpRequest>, new::SendError> {
    r.map(|o| o.map(Into::into)).map_err(Into::into)
}

/// Maps a call's nested result through the conversions above.
pub fn lift<T, E, U, F>(r: Result<T, E>) -> Result<U, F>
where
    U: From<T>,
    F: From<E>,
{
    r.map(U::from).map_err(F::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_opt_out_has_no_provider_id() {
        let e: new::Event = old::Event::OptOut("+1".into()).into();
        assert!(matches!(e, new::Event::OptOut(c) if c.address == "+1" && c.provider_id.is_none()));
    }

    #[test]
    fn the_host_serves_its_own_version_last() {
        assert_eq!(SERVED.last(), Some(&super::super::CONTRACT_VERSION));
    }
}
