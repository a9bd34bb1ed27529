//! RS256, ES256 and EdDSA: tokens signed with the private key verify with the configured public
//! key; the algorithm is pinned (another algorithm or key is refused).

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
