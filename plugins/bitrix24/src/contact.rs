//! What the portal can know a customer by: the phone number or e-mail address their channel
//! address is, and the name a lead is given.

use plugboard_sdk::crm::ConversationFacts;

/// Channel kinds whose addresses are the provider's own user ids, never phone numbers, even
/// when they are all digits (a Messenger page-scoped id).
const ID_KINDS: &[&str] = &["messenger", "line", "lineworks", "webchat"];

/// A customer's communication, as Bitrix24's multi-fields and duplicate search name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comm {
    /// A phone number (`PHONE`).
    Phone(String),
    /// An e-mail address (`EMAIL`).
    Email(String),
}

impl Comm {
    /// The communication's type for `crm.duplicate.findbycomm` and the field of `crm.lead.add`.
    pub fn kind(&self) -> &'static str {
        match self {
            Comm::Phone(_) => "PHONE",
            Comm::Email(_) => "EMAIL",
        }
    }

    /// The number or address.
    pub fn value(&self) -> &str {
        match self {
            Comm::Phone(v) | Comm::Email(v) => v,
        }
    }
}

/// The communication a channel address is: an e-mail address if it has an `@`, a phone number
/// if it starts with `+` or a digit (after a `whatsapp:` prefix) on a channel of phone numbers;
/// none for the provider ids of chat channels.
pub fn comm_of(address: &str, kind: &str) -> Option<Comm> {
    let address = address.trim();
    let address = match address.get(..9) {
        Some(prefix) if prefix.eq_ignore_ascii_case("whatsapp:") => &address[9..],
        _ => address,
    };
    if address.contains('@') {
        return Some(Comm::Email(address.to_string()));
    }
    let phone_like = address.starts_with('+') || address.starts_with(|c: char| c.is_ascii_digit());
    if phone_like && (address.starts_with('+') || !ID_KINDS.contains(&kind)) {
        return Some(Comm::Phone(address.to_string()));
    }
    None
}

/// How the customer is shown: their name when the provider sent one, else their address.
pub fn display_name(facts: &ConversationFacts) -> &str {
    facts
        .contact_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&facts.contact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_phones_or_emails() {
        let phone = |v: &str| Some(Comm::Phone(v.to_string()));
        assert_eq!(comm_of("+14155550100", "sms"), phone("+14155550100"));
        assert_eq!(
            comm_of("whatsapp:+14155550100", "whatsapp"),
            phone("+14155550100")
        );
        assert_eq!(comm_of("WhatsApp:+1415", "whatsapp"), phone("+1415"));
        assert_eq!(comm_of("14155550100", "sms"), phone("14155550100"));
        assert_eq!(
            comm_of("ann@example.com", "email"),
            Some(Comm::Email("ann@example.com".into()))
        );
        assert_eq!(comm_of("1234567890123456", "messenger"), None);
        assert_eq!(comm_of("U4af4980629", "line"), None);
        assert_eq!(comm_of("visitor-1", "webchat"), None);
        assert_eq!(Comm::Email("a@b".into()).kind(), "EMAIL");
        assert_eq!(Comm::Phone("+1".into()).value(), "+1");
    }
}
