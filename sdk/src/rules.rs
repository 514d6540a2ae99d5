//! The channel rules a manifest declares (`rules` in [`crate::types::Manifest`]) for the usual
//! kinds of channel, so a plugin states them in one line: what the host enforces comes from
//! here, never from the channel's `kind`.

use crate::types::{AddressForm, ChannelRules};

/// An SMS channel: E.164 numbers, 1,600 characters (what Twilio accepts), SMS segments shown to
/// agents, the STOP/START keywords, no reply window.
pub fn sms() -> ChannelRules {
    ChannelRules {
        address: AddressForm::E164(String::new()),
        max_text: 1600,
        segments: true,
        opt_out_keywords: true,
        reply_window_hours: None,
    }
}

/// A WhatsApp channel: `whatsapp:` E.164 addresses, 1,600 characters, the STOP/START keywords,
/// and the 24-hour customer-service window after which only approved templates go out.
pub fn whatsapp() -> ChannelRules {
    ChannelRules {
        address: AddressForm::E164("whatsapp:".into()),
        max_text: 1600,
        segments: false,
        opt_out_keywords: true,
        reply_window_hours: Some(24),
    }
}

/// A channel with opaque addresses (a user id, an email address) and texts of at most
/// `max_text` characters; no segments, keywords or window.
pub fn opaque(max_text: u32) -> ChannelRules {
    ChannelRules {
        address: AddressForm::Opaque,
        max_text,
        segments: false,
        opt_out_keywords: false,
        reply_window_hours: None,
    }
}
