//! Performs the provider API requests plugins build, for every channel: pooled HTTP clients,
//! one timeout, one cap on response size, and each channel's [`AllowList`] of origins.
//!
//! # What a channel may reach
//!
//! A request goes out only to
//!
//! * a host its plugin's manifest declares (`api-hosts`), over `https` on port 443, and only
//!   when the name resolves to public addresses (a manifest host that is, or resolves to, a
//!   loopback, private, link-local or otherwise local address is refused), or
//! * exactly the scheme, host and port of a URL setting the operator configured for that channel
//!   instance (`api_base = "http://127.0.0.1:18700"` allows `http://127.0.0.1:18700` and nothing
//!   else on that host); whatever such a name resolves to is the operator's choice.
//!
//! The address check runs in the DNS resolver of the client used for manifest hosts, so the
//! address connected to is the address checked (no second lookup to rebind).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::bindings::wit;

/// The largest provider response body read, in bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a provider request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The plugin built a request the host will not send.
    #[error("refused to send: {0}")]
    Refused(String),
    /// The provider could not be reached or did not answer in time.
    #[error("provider unreachable: {0}")]
    Unreachable(String),
}

/// One origin a channel may reach: scheme, host (as the URL parser writes it: lower-case names,
/// bracketed IPv6) and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host.
    pub host: String,
    /// The port (the scheme's default when the URL names none).
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute `http`/`https` URL with a host.
    pub fn of(url: &url::Url) -> Option<Origin> {
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        Some(Origin {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Which client a request that passed the [`AllowList`] goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A manifest host: its name must resolve to public addresses.
    Manifest,
    /// An origin the operator configured: sent as configured.
    Configured,
}

/// Where one channel instance may send requests (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Manifest host names reachable as `https://{host}:443`.
    manifest_hosts: BTreeSet<String>,
    /// Origins of the operator's URL settings, reachable exactly.
    configured: BTreeSet<Origin>,
}

impl AllowList {
    /// The allow-list of a channel whose plugin declares `manifest_hosts` and whose operator
    /// settings have the values `settings` (every value that is an `http`/`https` URL counts).
    /// Manifest hosts that are not plain public host names (`localhost`, a loopback or private
    /// address, anything with a scheme or port) are left out with a warning naming `channel`.
    pub fn new<'a>(
        channel: &str,
        manifest_hosts: &[String],
        settings: impl IntoIterator<Item = &'a str>,
    ) -> AllowList {
        let mut list = AllowList::default();
        for declared in manifest_hosts {
            match manifest_host(declared) {
                Ok(host) => {
                    list.manifest_hosts.insert(host);
                }
                Err(reason) => tracing::warn!(
                    channel,
                    host = %declared,
                    "manifest API host ignored: {reason}; configure a URL setting to reach it"
                ),
            }
        }
        for value in settings {
            if let Ok(url) = url::Url::parse(value.trim())
                && let Some(origin) = Origin::of(&url)
            {
                list.configured.insert(origin);
            }
        }
        list
    }

    /// Whether `url` may be requested, and through which [`Route`].
    ///
    /// # Errors
    ///
    /// [`TransportError::Refused`] naming what is allowed.
    pub fn check(&self, url: &url::Url) -> Result<Route, TransportError> {
        let Some(origin) = Origin::of(url) else {
            return Err(TransportError::Refused(format!(
                "URL {url} is not an http or https URL with a host"
            )));
        };
        if self.configured.contains(&origin) {
            return Ok(Route::Configured);
        }
        if origin.scheme == "https"
            && origin.port == 443
            && self.manifest_hosts.contains(&origin.host)
        {
            return Ok(Route::Manifest);
        }
        Err(TransportError::Refused(format!(
            "{origin} is not among the channel's allowed origins ({}); set the plugin's API base \
             URL setting to reach another origin",
            self.describe()
        )))
    }

    /// The allowed origins, for error messages: `https://api.twilio.com:443,
    /// http://127.0.0.1:18700`.
    pub fn describe(&self) -> String {
        let mut all: Vec<String> = self
            .manifest_hosts
            .iter()
            .map(|h| format!("https://{h}:443"))
            .collect();
        all.extend(self.configured.iter().map(Origin::to_string));
        if all.is_empty() {
            "none".to_owned()
        } else {
            all.join(", ")
        }
    }
}

/// A manifest's `api-hosts` entry as a host to compare with, or why it is not honoured.
fn manifest_host(declared: &str) -> Result<String, String> {
    let declared = declared.trim();
    let host = url::Host::parse(declared).map_err(|e| format!("not a host name ({e})"))?;
    match &host {
        url::Host::Domain(name) if is_local_name(name) => {
            Err("a local name is reachable only through the operator's settings".to_owned())
        }
        url::Host::Ipv4(ip) if is_local_ip(IpAddr::V4(*ip)) => {
            Err("a local address is reachable only through the operator's settings".to_owned())
        }
        url::Host::Ipv6(ip) if is_local_ip(IpAddr::V6(*ip)) => {
            Err("a local address is reachable only through the operator's settings".to_owned())
        }
        url::Host::Domain(name) => Ok(name.to_ascii_lowercase()),
        // As `Url::host_str` writes them, so they compare equal.
        url::Host::Ipv4(ip) => Ok(ip.to_string()),
        url::Host::Ipv6(ip) => Ok(format!("[{ip}]")),
    }
}

/// `localhost` and names under it (RFC 6761), which resolve to the machine itself.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether `ip` is not a public internet address: unspecified, loopback, private (10/8,
/// 172.16/12, 192.168/16, fc00::/7), shared (100.64/10), link-local (169.254/16, fe80::/10),
/// broadcast or multicast, including IPv4 addresses embedded in IPv6 (mapped, NAT64).
pub fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_local_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_v4(v4);
            }
            let seg = v6.segments();
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = seg[6].to_be_bytes();
                let [c, d] = seg[7].to_be_bytes();
                return is_local_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
        }
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || (a == 100 && (64..128).contains(&b))
}

/// A resolved name pointed only at local addresses while public ones were required.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves only to local addresses ({addresses}); a manifest host must be public")]
pub struct LocalAddress {
    name: String,
    addresses: String,
}

/// The DNS resolver of the manifest-host client: the system resolver, keeping only public
/// addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !is_local_ip(a.ip()))
                .collect();
            if public.is_empty() {
                let addresses = all
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(LocalAddress { name, addresses }) as _);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The host's HTTP clients for provider APIs: one for manifest hosts (public addresses only)
/// and one for the origins operators configured.
#[derive(Clone)]
pub struct ProviderClient {
    public: reqwest::Client,
    configured: reqwest::Client,
}

impl ProviderClient {
    /// Clients with connection reuse and the given per-request timeout.
    pub fn new(timeout: Duration) -> anyhow::Result<ProviderClient> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .pool_max_idle_per_host(64)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("plugboard/", env!("CARGO_PKG_VERSION")))
        };
        Ok(ProviderClient {
            public: builder().dns_resolver(Arc::new(PublicOnly)).build()?,
            configured: builder().build()?,
        })
    }

    /// Sends `req` if `allowed` lets it through, and reads the answer (up to 1 MiB).
    ///
    /// # Errors
    ///
    /// [`TransportError::Refused`] when the URL is not allowed or a manifest host resolves to
    /// local addresses only; [`TransportError::Unreachable`] when the provider did not answer.
    pub async fn perform(
        &self,
        allowed: &AllowList,
        req: wit::HttpRequest,
    ) -> Result<wit::HttpResponse, TransportError> {
        let url = url::Url::parse(&req.url)
            .map_err(|e| TransportError::Refused(format!("bad URL {:?}: {e}", req.url)))?;
        let client = match allowed.check(&url)? {
            Route::Manifest => &self.public,
            Route::Configured => &self.configured,
        };
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| TransportError::Refused(format!("bad method {:?}", req.method)))?;
        let mut builder = client.request(method, url);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut resp = builder
            .body(req.body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TransportError::Unreachable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TransportError::Unreachable(format!(
                    "response body exceeds {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(wit::HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// A failed send: refused when the resolver refused the name, else unreachable.
fn transport_error(e: &reqwest::Error) -> TransportError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = source {
        if let Some(local) = inner.downcast_ref::<LocalAddress>() {
            return TransportError::Refused(local.to_string());
        }
        source = inner.source();
    }
    TransportError::Unreachable(error_chain(e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(manifest: &[&str], settings: &[&str]) -> AllowList {
        let manifest: Vec<String> = manifest.iter().map(|s| s.to_string()).collect();
        AllowList::new("test", &manifest, settings.iter().copied())
    }

    fn check(list: &AllowList, url: &str) -> Result<Route, TransportError> {
        list.check(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn manifest_hosts_are_https_on_443_only() {
        let l = list(&["API.twilio.com"], &[]);
        assert_eq!(
            check(&l, "https://api.twilio.com/x").unwrap(),
            Route::Manifest
        );
        assert_eq!(
            check(&l, "https://api.twilio.com:443/x").unwrap(),
            Route::Manifest
        );
        for url in [
            "http://api.twilio.com/x",
            "https://api.twilio.com:8443/x",
            "https://api.twilio.com:22/x",
            "https://evil.example/x",
            "ftp://api.twilio.com/x",
        ] {
            assert!(
                matches!(check(&l, url), Err(TransportError::Refused(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn configured_origins_are_exact() {
        let l = list(
            &["api.twilio.com"],
            &[
                "http://127.0.0.1:18700",
                "+15005550006",
                "not a url",
                "https://[::1]/v1",
            ],
        );
        assert_eq!(
            check(&l, "http://127.0.0.1:18700/2010-04-01/x").unwrap(),
            Route::Configured
        );
        assert_eq!(check(&l, "https://[::1]:443/x").unwrap(), Route::Configured);
        for url in [
            "http://127.0.0.1:19555/",
            "http://127.0.0.1:22/",
            "https://127.0.0.1:18700/",
            "http://127.0.0.1/",
            "http://localhost:18700/",
            "http://[::1]:443/",
        ] {
            let Err(TransportError::Refused(reason)) = check(&l, url) else {
                panic!("{url} allowed")
            };
            assert!(reason.contains("http://127.0.0.1:18700"), "{reason}");
        }
    }

    #[test]
    fn local_manifest_hosts_are_not_honoured() {
        let l = list(
            &[
                "localhost",
                "LOCALHOST.",
                "api.localhost",
                "127.0.0.1",
                "10.1.2.3",
                "172.20.0.1",
                "192.168.1.1",
                "169.254.169.254",
                "0.0.0.0",
                "[::1]",
                "[fd00::1]",
                "[fe80::1]",
                "[::ffff:127.0.0.1]",
                "api.example.com:8080",
                "https://api.example.com",
            ],
            &[],
        );
        assert_eq!(l.describe(), "none");
        assert!(check(&l, "https://localhost/").is_err());
        assert!(check(&l, "https://127.0.0.1/").is_err());
        let l = list(&["8.8.8.8", "[2001:4860:4860::8888]"], &[]);
        assert_eq!(check(&l, "https://8.8.8.8/").unwrap(), Route::Manifest);
        assert_eq!(
            check(&l, "https://[2001:4860:4860::8888]/").unwrap(),
            Route::Manifest
        );
    }

    #[test]
    fn local_addresses() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fdff::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(is_local_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:4860:4860::8888",
        ] {
            assert!(!is_local_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    /// A manifest host whose name resolves to loopback is refused by the resolver (before any
    /// connection), and the refusal is permanent, not "unreachable".
    #[tokio::test]
    async fn a_manifest_name_resolving_to_loopback_is_refused() {
        let mut l = AllowList::default();
        // Built by hand: `AllowList::new` already drops `localhost` by name.
        l.manifest_hosts.insert("localhost".to_owned());
        let client = ProviderClient::new(Duration::from_secs(5)).unwrap();
        let req = wit::HttpRequest {
            method: "GET".into(),
            url: "https://localhost/".into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        match client.perform(&l, req).await {
            Err(TransportError::Refused(reason)) => {
                assert!(
                    reason.contains("resolves only to local addresses"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
