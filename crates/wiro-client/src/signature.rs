//! Wiro's request signature for "signature based" projects.
//!
//! The API key is the HMAC key and the secret starts the message (secret + nonce). It looks
//! inverted, but it is what Wiro's docs and both official clients do. The method, path and body
//! are not signed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Lowercase hex HMAC-SHA256 with `api_key` as key over `api_secret + nonce`.
pub fn sign(api_key: &str, api_secret: &str, nonce: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(api_secret.as_bytes());
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh nonce: the current Unix time in milliseconds, as the official MCP client sends it.
pub fn nonce() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    millis.to_string()
}

/// Checks a signature in constant time (used by the simulator).
pub fn verify(api_key: &str, api_secret: &str, nonce: &str, signature: &str) -> bool {
    let Ok(expected) = hex::decode(signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(api_secret.as_bytes());
    mac.update(nonce.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The two vectors from the research notes (shared/seed/wiro-api-notes.md §2.2).
    #[test]
    fn matches_the_documented_vector_with_a_seconds_nonce() {
        assert_eq!(
            sign("your-api-key", "your-api-secret", "1700000000"),
            "0423e18763e7c2267d612c136eea54f7cd881c580fb67cee68b992c387bc4051"
        );
    }

    #[test]
    fn matches_the_documented_vector_with_a_milliseconds_nonce() {
        assert_eq!(
            sign("test-api-key", "test-api-secret", "1712345678901"),
            "61189c17500b91e3ec1c141d9ab2980b04203f68f2275bfed8070d1b6028a1af"
        );
    }

    #[test]
    fn verify_accepts_the_right_signature_and_rejects_others() {
        let sig = sign("k", "s", "1");
        assert!(verify("k", "s", "1", &sig));
        assert!(!verify("k", "s", "2", &sig));
        assert!(!verify("k", "other", "1", &sig));
        assert!(!verify("k", "s", "1", "not-hex"));
    }

    #[test]
    fn nonce_is_milliseconds() {
        assert!(nonce().len() >= 13);
    }
}
