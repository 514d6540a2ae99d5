//! Plugboard's WebAssembly artifacts: the bundled plugins and the test guests, built for
//! `wasm32-wasip2` by this crate's build script.
//!
//! * [`BUNDLED`] embeds the bundled plugins (the `twilio-sms`, `twilio-whatsapp`,
//!   `telesign-sms`, `line`, `messenger`, `lineworks`, `mailgun-email` and `webchat` channels,
//!   the routers `ring-all`, `longest-idle`, `round-robin`, `random`, `least-busy` and `skills`,
//!   the bot `faq` and the CRM integration `bitrix24`); the same files are in [`bundled_dir`]
//!   as `<name>.wasm`.
//! * [`test_plugin`] gives the path of a test guest (`trap`, `infinite-loop`, `memory-bomb`,
//!   `old-contract`, `huge-output`, ..., the bot `bot-probe` and the classifier
//!   `classifier-probe`; see [`TEST_PLUGINS`], sorted by name).
//!
//! Which crates are which is declared in each crate's `[package.metadata.plugboard]`; see the
//! build script.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The directory holding the bundled plugins as `<name>.wasm` (`<target dir>/plugins`).
pub fn bundled_dir() -> &'static Path {
    Path::new(BUNDLED_DIR)
}

/// The path of test guest `name` (`<target dir>/test-plugins/<name>.wasm`), e.g.
/// `test_plugin("trap")`. The name is not checked; see [`TEST_PLUGINS`] for the ones built.
pub fn test_plugin(name: &str) -> PathBuf {
    Path::new(TEST_PLUGINS_DIR).join(format!("{name}.wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT_MAGIC: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn bundled_plugins_are_components() {
        let names: Vec<&str> = BUNDLED.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "twilio-sms",
                "twilio-whatsapp",
                "telesign-sms",
                "line",
                "messenger",
                "lineworks",
                "mailgun-email",
                "webchat",
                "ring-all",
                "longest-idle",
                "round-robin",
                "random",
                "least-busy",
                "skills",
                "faq",
                "bitrix24"
            ]
        );
        for (name, bytes) in BUNDLED {
            assert!(bytes.starts_with(COMPONENT_MAGIC), "{name}");
            let on_disk = std::fs::read(bundled_dir().join(format!("{name}.wasm"))).unwrap();
            assert_eq!(&on_disk, bytes, "{name}");
        }
    }

    #[test]
    fn test_plugins_exist() {
        assert_eq!(
            TEST_PLUGINS,
            [
                "aliased-output",
                "bot-probe",
                "broken-json",
                "changed-json",
                "classifier-probe",
                "contract-0-2",
                "describe-panics",
                "describe-sleeps",
                "example-json",
                "huge-output",
                "infinite-loop",
                "memory-bomb",
                "old-contract",
                "outbound-probe",
                "pager",
                "router-0-2",
                "sleeps",
                "trap",
                "wasi-probe"
            ]
        );
        for name in TEST_PLUGINS {
            let bytes = std::fs::read(test_plugin(name)).unwrap();
            assert!(bytes.starts_with(COMPONENT_MAGIC), "{name}");
        }
    }
}
