//! The integration's settings: what the manifest declares, and reading and checking them once
//! per call (so `check-settings` refuses at load exactly what the calls would refuse).

use plugboard_sdk::Settings;
use plugboard_sdk::types::SettingSpec;

/// The lead source (`SOURCE_ID`) of created leads unless `source_id` is set.
pub const DEFAULT_SOURCE_ID: &str = "OTHER";

/// Hosts a plain-`http` `webhook_url` may name: a fake portal on this machine, for tests.
const LOOPBACK_HOSTS: &[&str] = &["127.0.0.1", "localhost", "[::1]"];

/// Everything the integration reads from its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The inbound webhook's base URL, ending in `/`: a method call is `{webhook_url}{method}.json`.
    pub webhook_url: String,
    /// The token Bitrix24 sends as `auth[application_token]` when it calls the host.
    pub application_token: String,
    /// Plugboard agent id to Bitrix24 user id, in the order configured.
    pub user_map: Vec<(String, u64)>,
    /// `SOURCE_ID` of the leads the integration creates.
    pub source_id: String,
    /// The channel a CRM call starts a conversation on when it names none.
    pub default_channel: Option<String>,
}

impl Config {
    /// The Bitrix24 user id of Plugboard agent `agent`, if `user_map` maps it.
    pub fn bitrix_user(&self, agent: &str) -> Option<u64> {
        self.user_map
            .iter()
            .find(|(name, _)| name == agent)
            .map(|(_, id)| *id)
    }
}

/// The settings the integration reads, for its manifest.
pub fn setting_specs() -> Vec<SettingSpec> {
    vec![
        // The URL holds the webhook's secret code, which grants API access: never show it.
        SettingSpec::new(
            "webhook_url",
            true,
            true,
            "The portal's inbound webhook, `https://PORTAL/rest/USER_ID/CODE/` (ending in `/`), \
             with the crm scope; plain http only for 127.0.0.1/localhost (tests).",
        ),
        SettingSpec::new(
            "application_token",
            true,
            true,
            "The token of the portal's outbound webhook: Bitrix24's calls to the host carry it \
             as `auth[application_token]`.",
        ),
        SettingSpec::new(
            "user_map",
            false,
            false,
            "Plugboard agents to Bitrix24 user ids, `alice=5,bob=7`: an assignment to a mapped \
             agent makes that user responsible for the lead or contact.",
        ),
        SettingSpec::new(
            "source_id",
            false,
            false,
            "SOURCE_ID of the leads created for unknown customers (default `OTHER`).",
        ),
        SettingSpec::new(
            "default_channel",
            false,
            false,
            "The channel a conversation the CRM starts goes out on when its call names no \
             `channel`.",
        ),
    ]
}

/// Reads and checks the settings.
///
/// # Errors
///
/// A message naming the setting that can never work: a required one missing, a `webhook_url`
/// that is not an https base URL ending in `/`, a malformed `user_map` entry.
pub fn parse(settings: &[(String, String)]) -> Result<Config, String> {
    let s = Settings::new(settings);
    let webhook_url = s.require("webhook_url")?.trim().to_string();
    check_webhook_url(&webhook_url)?;
    let application_token = s.require("application_token")?.to_string();
    let user_map = parse_user_map(s.get("user_map").unwrap_or_default())?;
    let source_id = s.get_or("source_id", DEFAULT_SOURCE_ID).trim().to_string();
    let default_channel = s
        .get("default_channel")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Ok(Config {
        webhook_url,
        application_token,
        user_map,
        source_id,
        default_channel,
    })
}

/// Checks that `url` is an inbound webhook's base: `https://host[:port]/path/` without a query,
/// fragment or credentials; `http` only for a loopback host. Messages never repeat the URL, which
/// holds the webhook's secret code.
fn check_webhook_url(url: &str) -> Result<(), String> {
    let scheme_end = url.find("://").ok_or_else(|| {
        "setting `webhook_url` is not a URL (want https://PORTAL/rest/USER_ID/CODE/)".to_string()
    })?;
    let scheme = url[..scheme_end].to_ascii_lowercase();
    let rest = &url[scheme_end + 3..];
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "setting `webhook_url` must use https, not {scheme}"
        ));
    }
    if url.contains(['?', '#']) {
        return Err("setting `webhook_url` must not have a query or fragment".into());
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() || authority.contains('@') {
        return Err("setting `webhook_url` must name a host (and no user or password)".into());
    }
    if path.is_empty() {
        return Err(
            "setting `webhook_url` has no webhook path (want https://PORTAL/rest/USER_ID/CODE/)"
                .into(),
        );
    }
    if !url.ends_with('/') {
        return Err(
            "setting `webhook_url` must end in `/`: the webhook's base, without a method name"
                .into(),
        );
    }
    let host = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            let port = &authority[colon + 1..];
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err("setting `webhook_url` has an invalid port".into());
            }
            &authority[..colon]
        }
        _ => authority,
    };
    if scheme == "http"
        && !LOOPBACK_HOSTS
            .iter()
            .any(|loopback| host.eq_ignore_ascii_case(loopback))
    {
        return Err(
            "setting `webhook_url` must use https (plain http is allowed only for \
             127.0.0.1/localhost, for tests)"
                .into(),
        );
    }
    Ok(())
}

/// Parses `agent=bitrix_user_id` entries separated by commas or new lines.
fn parse_user_map(text: &str) -> Result<Vec<(String, u64)>, String> {
    let mut map: Vec<(String, u64)> = Vec::new();
    for entry in text.split([',', '\n']).map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let (agent, id) = entry
            .split_once('=')
            .map(|(a, i)| (a.trim(), i.trim()))
            .filter(|(a, _)| !a.is_empty())
            .ok_or_else(|| {
                format!("setting `user_map`: `{entry}` is not `agent=bitrix_user_id`")
            })?;
        let id = id.parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            format!("setting `user_map`: `{id}` (for {agent}) is not a Bitrix24 user id")
        })?;
        if map.iter().any(|(known, _)| known == agent) {
            return Err(format!("setting `user_map` maps {agent} twice"));
        }
        map.push((agent.to_string(), id));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::pairs;

    const URL: &str = "https://example.bitrix24.com/rest/1/abc123/";

    fn parsed(extra: &[(&str, &str)]) -> Result<Config, String> {
        let mut settings = pairs(&[("webhook_url", URL), ("application_token", "tok")]);
        settings.extend(pairs(extra));
        parse(&settings)
    }

    #[test]
    fn defaults_and_values() {
        let c = parsed(&[]).unwrap();
        assert_eq!(c.webhook_url, URL);
        assert_eq!(c.application_token, "tok");
        assert!(c.user_map.is_empty());
        assert_eq!(c.source_id, "OTHER");
        assert_eq!(c.default_channel, None);
        let c = parsed(&[
            ("user_map", " alice=5, bob = 7\ncarol=12,"),
            ("source_id", "WEB"),
            ("default_channel", "sms"),
        ])
        .unwrap();
        assert_eq!(c.bitrix_user("bob"), Some(7));
        assert_eq!(c.bitrix_user("carol"), Some(12));
        assert_eq!(c.bitrix_user("dave"), None);
        assert_eq!(c.source_id, "WEB");
        assert_eq!(c.default_channel.as_deref(), Some("sms"));
    }

    #[test]
    fn webhook_urls_that_can_never_work_are_refused() {
        for ok in [
            URL,
            "http://127.0.0.1:18998/rest/1/abc123/",
            "http://localhost/rest/1/abc/",
            "https://crm.example.com:8443/rest/3/x/",
        ] {
            assert_eq!(check_webhook_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("example.bitrix24.com/rest/1/abc/", "not a URL"),
            ("ftp://example.bitrix24.com/rest/1/abc/", "https"),
            ("http://example.bitrix24.com/rest/1/abc/", "127.0.0.1"),
            ("https://example.bitrix24.com/rest/1/abc", "end in `/`"),
            (
                "https://example.bitrix24.com/rest/1/abc/profile.json",
                "end in `/`",
            ),
            ("https://example.bitrix24.com/", "no webhook path"),
            ("https://example.bitrix24.com/rest/1/abc/?x=1", "query"),
            ("https://u:p@example.bitrix24.com/rest/1/abc/", "host"),
            ("https://example.bitrix24.com:x/rest/1/abc/", "port"),
        ] {
            let err = check_webhook_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("abc"), "the secret code leaked: {err}");
        }
    }

    #[test]
    fn settings_that_can_never_work_are_refused() {
        let err = parse(&pairs(&[("webhook_url", URL)])).unwrap_err();
        assert!(err.contains("`application_token`"), "{err}");
        let err = parse(&pairs(&[("application_token", "t")])).unwrap_err();
        assert!(err.contains("`webhook_url`"), "{err}");
        for (map, why) in [
            ("alice", "not `agent=bitrix_user_id`"),
            ("=5", "not `agent=bitrix_user_id`"),
            ("alice=x", "not a Bitrix24 user id"),
            ("alice=0", "not a Bitrix24 user id"),
            ("alice=5,alice=6", "twice"),
        ] {
            let err = parsed(&[("user_map", map)]).unwrap_err();
            assert!(err.contains(why), "{map}: {err}");
        }
    }
}
