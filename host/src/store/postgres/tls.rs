//! How the backend reaches the database: in the clear, or over TLS when the URL asks for it
//! (`sslmode=require`, or libpq's `verify-ca` and `verify-full`, which name the same here).
//! Over TLS the server's certificate is always verified, its name included, against the
//! public authorities and those of `[storage] ca_file` (a managed database's own CA); an
//! encrypted connection to a server nobody vouches for is refused, naming the failure.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// The transport a connection uses.
#[derive(Clone)]
pub(super) enum Transport {
    /// Plain TCP (or a Unix socket).
    Plain,
    /// TLS, verified.
    Tls(MakeRustlsConnect),
}

/// The URL's settings and the transport they ask for. libpq's `verify-ca` and `verify-full`
/// (which tokio-postgres does not parse) are read as `require`: verification is always on.
pub(super) fn configure(
    url: &str,
    ca_file: Option<&Path>,
) -> Result<(tokio_postgres::Config, Transport), StoreError> {
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let config = tokio_postgres::Config::from_str(&url)
        .map_err(|e| StoreError::Backend(format!("storage.url is not a postgres URL: {e}")))?;
    if config.get_ssl_mode() != SslMode::Require {
        return Ok((config, Transport::Plain));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let read = |e: &dyn std::fmt::Display| {
            StoreError::Backend(format!("storage.ca_file {}: {e}", path.display()))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| read(&e))?
            .collect::<Result<_, _>>()
            .map_err(|e| read(&e))?;
        if certs.is_empty() {
            return Err(read(&"no PEM certificate in it"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| read(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, Transport::Tls(MakeRustlsConnect::new(tls))))
}
