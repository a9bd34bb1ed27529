//! RS256, ES256 and EdDSA: tokens signed with the private key verify with the configured public
//! key; the algorithm is pinned (another algorithm or key is refused); the public key used
//! before a rotation (`auth.previous_public_key_pem`) verifies its tokens while it is listed.

use api::auth::{Claims, JwtVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn key(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}")).unwrap()
}

fn settings(algorithm: &str, public: &str) -> domain::Settings {
    let mut s = domain::Settings::defaults().unwrap();
    s.auth.algorithm = algorithm.to_owned();
    s.auth.public_key_pem = public.to_owned();
    s.auth.hs256_secret = SecretString::from(String::new());
    s.validate().unwrap();
    s
}

fn claims(s: &domain::Settings) -> Claims {
    Claims {
        sub: "customer-9".into(),
        iss: s.auth.issuer.clone(),
        aud: s.auth.audience.clone(),
        exp: chrono::Utc::now().timestamp() + 300,
        iat: None,
        nbf: None,
        role: None,
    }
}

#[test]
fn tokens_signed_with_the_private_key_verify_with_the_configured_public_key() {
    type Load = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;
    let cases: [(&str, Algorithm, &str, Load); 3] = [
        ("RS256", Algorithm::RS256, "rsa", EncodingKey::from_rsa_pem),
        ("ES256", Algorithm::ES256, "ec", EncodingKey::from_ec_pem),
        ("EdDSA", Algorithm::EdDSA, "ed", EncodingKey::from_ed_pem),
    ];
    for (name, alg, file, encoding) in cases {
        let s = settings(name, &key(&format!("{file}.pub")));
        let verifier = JwtVerifier::new(&s).unwrap();
        let private = encoding(key(&format!("{file}.pem")).as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&Header::new(alg), &claims(&s), &private).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().sub, "customer-9", "{name}");
        // The same claims signed by another algorithm's key are refused.
        let (other_file, other_load, other_alg): (&str, Load, Algorithm) = if file == "ed" {
            ("ec", EncodingKey::from_ec_pem, Algorithm::ES256)
        } else {
            ("ed", EncodingKey::from_ed_pem, Algorithm::EdDSA)
        };
        let other_key = other_load(key(&format!("{other_file}.pem")).as_bytes()).unwrap();
        let foreign =
            jsonwebtoken::encode(&Header::new(other_alg), &claims(&s), &other_key).unwrap();
        assert!(
            verifier.verify(&foreign).is_err(),
            "{name} accepted a token of another algorithm"
        );
    }
}

#[test]
fn an_asymmetric_algorithm_without_a_public_key_is_a_config_error_naming_the_key() {
    let mut s = domain::Settings::defaults().unwrap();
    s.auth.algorithm = "ES256".into();
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("auth.public_key_pem"), "{err}");
    s.auth.public_key_pem = "not a pem".into();
    let err = JwtVerifier::new(&s).unwrap_err().to_string();
    assert!(err.contains("ES256"), "{err}");
}

#[test]
fn the_previous_public_key_verifies_its_tokens_while_it_is_listed() {
    let old_private = EncodingKey::from_ed_pem(key("ed-previous.pem").as_bytes()).unwrap();
    let new_private = EncodingKey::from_ed_pem(key("ed.pem").as_bytes()).unwrap();
    let mut rotating = settings("EdDSA", &key("ed.pub"));
    rotating.auth.previous_public_key_pem = key("ed-previous.pub");
    rotating.validate().unwrap();
    let issued_before = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims(&rotating),
        &old_private,
    )
    .unwrap();
    let issued_now = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims(&rotating),
        &new_private,
    )
    .unwrap();

    let verifier = JwtVerifier::new(&rotating).unwrap();
    assert_eq!(verifier.verify(&issued_before).unwrap().sub, "customer-9");
    assert_eq!(verifier.verify(&issued_now).unwrap().sub, "customer-9");

    let rotated = JwtVerifier::new(&settings("EdDSA", &key("ed.pub"))).unwrap();
    assert!(rotated.verify(&issued_now).is_ok());
    let refused = rotated.verify(&issued_before).unwrap_err().to_string();
    assert!(refused.contains("signature is invalid"), "{refused}");
}

#[test]
fn a_previous_public_key_that_does_not_parse_or_goes_with_hs256_is_a_config_error() {
    let mut s = settings("EdDSA", &key("ed.pub"));
    s.auth.previous_public_key_pem = key("rsa.pub");
    let err = JwtVerifier::new(&s).unwrap_err().to_string();
    assert!(
        err.contains("auth.previous_public_key_pem") && err.contains("EdDSA"),
        "{err}"
    );

    let mut hs = domain::Settings::defaults().unwrap();
    hs.auth.previous_public_key_pem = key("ed-previous.pub");
    let err = hs.validate().unwrap_err().to_string();
    assert!(err.contains("auth.previous_public_key_pem"), "{err}");
}
