//! Test guest classifier: a contact listed in setting `vip` (comma-separated addresses) goes to
//! the queue of setting `queue` with skill `vip` and priority 50; a message containing
//! `classifier-error` fails; everyone else is left to the next rule.

use plugboard_sdk::conversation::{Classification, ConversationFacts};
use plugboard_sdk::types::Settings;

/// The priority given to VIP contacts.
pub const VIP_PRIORITY: i32 = 50;

/// The probe classifier.
pub struct ClassifierProbe;

impl plugboard_sdk::Classifier for ClassifierProbe {
    fn classify(
        facts: ConversationFacts,
        text: Option<String>,
        settings: Settings,
    ) -> Result<Option<Classification>, String> {
        if text
            .as_deref()
            .unwrap_or_default()
            .contains("classifier-error")
        {
            return Err("asked to fail".to_string());
        }
        let settings = plugboard_sdk::Settings::new(&settings);
        let vip = settings
            .get_or("vip", "")
            .split(',')
            .any(|address| address.trim() == facts.contact);
        if !vip {
            return Ok(None);
        }
        Ok(Some(Classification {
            queue: settings.get("queue").map(str::to_string),
            skills: vec!["vip".to_string()],
            priority: VIP_PRIORITY,
        }))
    }
}

plugboard_sdk::export_classifier!(ClassifierProbe);
