//! The LINE WORKS service-account JWT (providers.md 5.3): an RS256 JSON Web Token signed with
//! the app's RSA private key, exchanged at the token endpoint for an access token.
//!
//! Everything here is pure Rust (the `rsa` crate with PKCS#1 v1.5 signatures over SHA-256), so it
//! runs inside the component and in native tests alike. Signing is deterministic: PKCS#1 v1.5
//! needs no randomness, and no blinding randomness is drawn (the plugin has no RNG but the
//! host's, and the private key never leaves the call).

use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use sha2::Sha256;

/// How long a service-account JWT is valid, in seconds (LINE WORKS' maximum).
pub const JWT_LIFETIME_SECS: u64 = 3600;

/// Base64url without padding (RFC 7515 section 2).
pub fn base64url(data: &[u8]) -> String {
    plugboard_sdk::base64::encode(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// Reads the `private_key` setting: a PKCS#8 PEM (`BEGIN PRIVATE KEY`, what the LINE WORKS
/// Developer Console issues) or, leniently, a PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`). Literal
/// `\n` sequences (a PEM squeezed into one environment variable line) are turned into line
/// breaks first.
///
/// # Errors
///
/// A message saying what is wrong with the key, never the key itself.
pub fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, String> {
    let pem = pem
        .replace("\\r", "")
        .replace("\\n", "\n")
        .replace('\r', "");
    let pem = pem.trim();
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        RsaPrivateKey::from_pkcs1_pem(pem)
            .map_err(|e| format!("setting `private_key` is not a readable PKCS#1 RSA key: {e}"))
    } else if pem.contains("BEGIN PRIVATE KEY") {
        RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("setting `private_key` is not a readable PKCS#8 RSA key: {e}"))
    } else {
        Err(
            "setting `private_key` is not a PEM private key (expected -----BEGIN PRIVATE KEY-----)"
                .to_string(),
        )
    }
}

/// Builds the signed JWT: header `{"alg":"RS256","typ":"JWT"}`, claims `iss` = `client_id`,
/// `sub` = `service_account`, `iat` = `now_secs`, `exp` = `iat + 3600`.
pub fn build(key: &RsaPrivateKey, client_id: &str, service_account: &str, now_secs: u64) -> String {
    use plugboard_sdk::serde_json::json;
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let claims = json!({
        "iss": client_id,
        "sub": service_account,
        "iat": now_secs,
        "exp": now_secs + JWT_LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signer = SigningKey::<Sha256>::new(key.clone());
    let signature = signer.sign(signing_input.as_bytes()).to_vec();
    format!("{signing_input}.{}", base64url(&signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::serde_json::Value;
    use rsa::RsaPublicKey;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;

    /// A throw-away 2048-bit key made for these tests only (`openssl genpkey`).
    pub(crate) const TEST_KEY: &str = include_str!("../testdata/test-key.pem");
    const TEST_PUBLIC_KEY: &str = include_str!("../testdata/test-key.pub.pem");

    fn base64url_decode(s: &str) -> Vec<u8> {
        plugboard_sdk::base64::decode_lenient(&s.replace('-', "+").replace('_', "/")).unwrap()
    }

    #[test]
    fn base64url_has_no_padding() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn jwt_verifies_with_the_public_key() {
        let key = parse_private_key(TEST_KEY).unwrap();
        let jwt = build(
            &key,
            "client-abc",
            "sa.serviceaccount@example.com",
            1_735_689_600,
        );
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!jwt.contains('='));
        let header: Value =
            plugboard_sdk::serde_json::from_slice(&base64url_decode(parts[0])).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        let claims: Value =
            plugboard_sdk::serde_json::from_slice(&base64url_decode(parts[1])).unwrap();
        assert_eq!(claims["iss"], "client-abc");
        assert_eq!(claims["sub"], "sa.serviceaccount@example.com");
        assert_eq!(claims["iat"], 1_735_689_600u64);
        assert_eq!(claims["exp"], 1_735_693_200u64);

        let public = RsaPublicKey::from_public_key_pem(TEST_PUBLIC_KEY).unwrap();
        let verifier = VerifyingKey::<Sha256>::new(public);
        let signature = Signature::try_from(base64url_decode(parts[2]).as_slice()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        verifier.verify(input.as_bytes(), &signature).unwrap();
        let tampered = input.replace(parts[1], &base64url(b"{\"iss\":\"x\"}"));
        assert!(verifier.verify(tampered.as_bytes(), &signature).is_err());
        // Deterministic: the same inputs give the same token.
        assert_eq!(
            jwt,
            build(
                &key,
                "client-abc",
                "sa.serviceaccount@example.com",
                1_735_689_600
            )
        );
    }

    #[test]
    fn key_parsing() {
        let one_line = TEST_KEY.trim().replace('\n', "\\n");
        assert!(parse_private_key(&one_line).is_ok());
        let err = parse_private_key("not a key").unwrap_err();
        assert!(err.contains("PEM"), "{err}");
        let err = parse_private_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
            .unwrap_err();
        assert!(err.contains("PKCS#8"), "{err}");
    }
}
