//! No shipped secret outside the demo: `api`, `token` and `provision` refuse to run with no
//! HS256 secret or with the published one, and say which variable to set.

use std::process::Command;

fn run(args: &[&str], secret: Option<&str>) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("reseller-secrets-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_reseller"));
    command
        .args(args)
        .current_dir(&dir)
        .env_remove("RESELLER_CONFIG")
        .env_remove("RESELLER_AUTH__HS256_SECRET")
        .env("RESELLER_API__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    if let Some(secret) = secret {
        command.env("RESELLER_AUTH__HS256_SECRET", secret);
    }
    command.output().unwrap()
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn refused_naming_the_variable(output: &std::process::Output) {
    assert!(!output.status.success(), "it ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RESELLER_AUTH__HS256_SECRET"), "{stderr}");
}

#[test]
fn the_api_refuses_to_start_without_a_secret_or_with_the_published_one() {
    refused_naming_the_variable(&run(&["api"], None));
    let published = domain::config::PUBLISHED_HS256_SECRETS[0];
    refused_naming_the_variable(&run(&["api"], Some(published)));
}

#[test]
fn token_and_provision_refuse_to_sign_without_a_secret() {
    refused_naming_the_variable(&run(&["token", "--sub", "x", "--role", "ops"], None));
    let published = domain::config::PUBLISHED_HS256_SECRETS[0];
    refused_naming_the_variable(&run(&["token", "--sub", "x"], Some(published)));
    let csv = std::env::temp_dir().join(format!("secrets-{}.csv", uuid_like()));
    std::fs::write(
        &csv,
        "customer,template,plan,title\na,instagram-manager,starter,A\n",
    )
    .unwrap();
    refused_naming_the_variable(&run(
        &[
            "provision",
            "--file",
            csv.to_str().unwrap(),
            "--api",
            "http://127.0.0.1:9",
        ],
        None,
    ));
}

#[test]
fn an_explicit_secret_signs_a_token_with_the_asked_lifetime() {
    let secret = "an-operator-secret-of-at-least-32-bytes!";
    let output = run(&["token", "--sub", "alice", "--ttl", "15m"], Some(secret));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["wiro-reseller"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 15 * 60);
    // Longer than auth.max_token_lifetime: refused.
    let too_long = run(&["token", "--sub", "alice", "--ttl", "48h"], Some(secret));
    assert!(!too_long.status.success());
}
