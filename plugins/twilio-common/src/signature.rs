//! The pure parts of Twilio's `X-Twilio-Signature` check (providers.md 1.3): the string to sign
//! and the URL variants Twilio may have signed. The HMAC itself is passed in as a function so
//! that everything here runs in native unit tests.

use plugboard_sdk::{base64, ct_eq};

/// The string Twilio signs: the full URL, then every POST parameter sorted by name in byte order,
/// each name immediately followed by its value. A repeated name contributes its distinct values
/// in byte order (duplicates dropped), as the current Twilio SDKs do. For GET, pass no params.
pub fn string_to_sign(url: &str, params: &[(String, String)]) -> String {
    let mut out = String::from(url);
    out.push_str(&signed_params(params));
    out
}

/// The parameter part of [`string_to_sign`] (the same for every URL variant).
fn signed_params(params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::with_capacity(sorted.iter().map(|(n, v)| n.len() + v.len()).sum());
    for (name, value) in sorted {
        out.push_str(name);
        out.push_str(value);
    }
    out
}

/// The scheme's default port (`443` for https, `80` for http), if it has one.
fn default_port(scheme: &str) -> Option<&'static str> {
    if scheme.eq_ignore_ascii_case("https") {
        Some("443")
    } else if scheme.eq_ignore_ascii_case("http") {
        Some("80")
    } else {
        None
    }
}

/// The URLs Twilio may have signed for a call to `url`: the URL as given first, then, like the
/// Twilio SDKs, the URL with the port removed when it carries one, or with the scheme's default
/// port (`:443` / `:80`) added when it carries none.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The port is what follows the last ':' after any userinfo and IPv6 brackets.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let port_colon = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'))
        .filter(|&i| host_port[i + 1..].bytes().all(|b| b.is_ascii_digit()));
    let variant = match port_colon {
        Some(i) => format!(
            "{scheme}://{}{}{tail}",
            &authority[..host_start],
            &host_port[..i]
        ),
        None => match default_port(scheme) {
            Some(port) => format!("{scheme}://{authority}:{port}{tail}"),
            None => return variants,
        },
    };
    if variant != url {
        variants.push(variant);
    }
    variants
}

/// Whether `signature` (the `X-Twilio-Signature` header) is Twilio's signature of a call to
/// `url` with `params`, under `auth_token`, for any of the [`url_variants`]. `hmac_sha1(key,
/// data)` computes the MAC; the comparison is constant-time.
pub fn is_valid(
    url: &str,
    params: &[(String, String)],
    auth_token: &str,
    signature: &str,
    hmac_sha1: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> bool {
    let signature = signature.trim();
    let suffix = signed_params(params);
    let matches = |url: &str| {
        let mut data = String::with_capacity(url.len() + suffix.len());
        data.push_str(url);
        data.push_str(&suffix);
        let mac = hmac_sha1(auth_token.as_bytes(), data.as_bytes());
        ct_eq(base64::encode(&mac).as_bytes(), signature.as_bytes())
    };
    // The URL as configured is what Twilio signs in practice; the port variants are built and
    // tried only when it fails. Which variant matched follows from the public URL alone, so
    // stopping early tells nothing about the secret; each comparison is constant-time.
    matches(url) || url_variants(url).iter().skip(1).any(|v| matches(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::{hmac_sha1, pairs};
    /// The example of Twilio's SDK documentation and tests (twilio-node / twilio-python).
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn sdk_params() -> Vec<(String, String)> {
        pairs(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("Caller", "+14158675309"),
        ])
    }

    #[test]
    fn string_to_sign_sorts_by_byte_order() {
        assert_eq!(
            string_to_sign(URL, &sdk_params()),
            "https://mycompany.com/myapp.php?foo=1&bar=2\
             CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212"
        );
    }

    #[test]
    fn repeated_names_sort_values_and_drop_duplicates() {
        let params = pairs(&[("b", "2"), ("a", "z"), ("a", "y"), ("a", "z"), ("B", "1")]);
        assert_eq!(string_to_sign("u", &params), "uB1ayazb2");
    }

    #[test]
    fn sdk_test_vector() {
        let sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        let mac = hmac_sha1(b"12345", string_to_sign(URL, &sdk_params()).as_bytes());
        assert_eq!(base64::encode(&mac), sig);
        assert!(is_valid(URL, &sdk_params(), "12345", sig, hmac_sha1));
        assert!(!is_valid(URL, &sdk_params(), "12346", sig, hmac_sha1));
        assert!(!is_valid(URL, &[], "12345", sig, hmac_sha1));
        // Twilio may have signed the URL with the default port, or we may be given it with one.
        assert!(is_valid(
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &sdk_params(),
            "12345",
            sig,
            hmac_sha1
        ));
        let with_port = base64::encode(&hmac_sha1(
            b"12345",
            string_to_sign(
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &sdk_params(),
            )
            .as_bytes(),
        ));
        assert!(is_valid(URL, &sdk_params(), "12345", &with_port, hmac_sha1));
    }

    #[test]
    fn url_port_variants() {
        assert_eq!(
            url_variants("https://example.com/sms?x=1"),
            [
                "https://example.com/sms?x=1",
                "https://example.com:443/sms?x=1"
            ]
        );
        assert_eq!(
            url_variants("http://example.com"),
            ["http://example.com", "http://example.com:80"]
        );
        assert_eq!(
            url_variants("https://example.com:443/sms"),
            ["https://example.com:443/sms", "https://example.com/sms"]
        );
        assert_eq!(
            url_variants("http://127.0.0.1:8080/hook"),
            ["http://127.0.0.1:8080/hook", "http://127.0.0.1/hook"]
        );
        assert_eq!(
            url_variants("https://[::1]/hook"),
            ["https://[::1]/hook", "https://[::1]:443/hook"]
        );
        assert_eq!(
            url_variants("https://user:pw@example.com/a"),
            [
                "https://user:pw@example.com/a",
                "https://user:pw@example.com:443/a"
            ]
        );
        assert_eq!(url_variants("not a url"), ["not a url"]);
    }
}
