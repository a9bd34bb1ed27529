//! Rotating the HS256 secret without logging every caller out: tokens signed with a secret in
//! `auth.previous_hs256_secrets` keep verifying, tokens are minted only with the current one,
//! and a secret no longer listed verifies nothing. A weak or misplaced previous secret is a
//! configuration error naming the setting.

use api::auth::{JwtVerifier, mint};
use secrecy::SecretString;

const OLD: &str = "an-old-secret-of-more-than-32-bytes-0001";
const NEW: &str = "a-new-secret-of-more-than-32-bytes-00002";

fn settings(current: &str, previous: &str) -> domain::Settings {
    let mut s = domain::Settings::defaults().unwrap();
    s.auth.hs256_secret = SecretString::from(current.to_owned());
    s.auth.previous_hs256_secrets = SecretString::from(previous.to_owned());
    s.validate().unwrap();
    s
}

#[test]
fn a_token_signed_with_a_previous_secret_verifies_while_it_is_listed() {
    let before = settings(OLD, "");
    let issued_before = mint(&before, "customer-1", None).unwrap();
    let ops_before = mint(&before, "alice", Some("ops")).unwrap();

    let rotating = settings(NEW, &format!("  {OLD} , "));
    let verifier = JwtVerifier::new(&rotating).unwrap();
    assert_eq!(verifier.verify(&issued_before).unwrap().sub, "customer-1");
    let ops = verifier.verify(&ops_before).unwrap();
    assert_eq!(
        ops.role.as_deref(),
        Some("ops"),
        "the role rules are the same"
    );
    let issued_now = mint(&rotating, "customer-2", None).unwrap();
    assert_eq!(verifier.verify(&issued_now).unwrap().sub, "customer-2");
    assert!(
        JwtVerifier::new(&settings(NEW, ""))
            .unwrap()
            .verify(&issued_now)
            .is_ok(),
        "new tokens are signed with the current secret alone"
    );

    let rotated = JwtVerifier::new(&settings(NEW, "")).unwrap();
    let refused = rotated.verify(&issued_before).unwrap_err();
    assert!(
        refused.to_string().contains("signature is invalid"),
        "{refused}"
    );
}

#[test]
fn weak_or_misplaced_previous_secrets_are_refused_naming_the_setting() {
    let mut short = domain::Settings::defaults().unwrap();
    short.auth.hs256_secret = SecretString::from(NEW.to_owned());
    short.auth.previous_hs256_secrets = SecretString::from(format!("{OLD},too-short"));
    let e = short.validate().unwrap_err().to_string();
    assert!(
        e.contains("auth.previous_hs256_secrets") && e.contains("secret 2"),
        "{e}"
    );

    let mut asymmetric = domain::Settings::defaults().unwrap();
    asymmetric.auth.algorithm = "EdDSA".into();
    asymmetric.auth.previous_hs256_secrets = SecretString::from(OLD.to_owned());
    let e = asymmetric.validate().unwrap_err().to_string();
    assert!(
        e.contains("auth.previous_hs256_secrets") && e.contains("HS256"),
        "{e}"
    );
}
