//! Rotating the credentials key: values sealed with the old key keep opening while it is listed
//! in `security.previous_credentials_keys`; `reseller reseal` moves them — instances' pending
//! credentials and webhook endpoints' secrets — to the new key, after which the old key can go.
//! Without the old key, the command refuses and names the instance or endpoint.

use std::process::{Command, Output};

use domain::orders::Actor;
use domain::sealed::Sealer;
use domain::webhooks::NewEndpoint;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use testkit::harness::{Harness, harness, instagram, order};

fn reseal(pool: &PgPool, key: &str, previous: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reseller"))
        .arg("reseal")
        .env_remove("RESELLER_CONFIG")
        .env("DATABASE_URL", testkit::process::database_url(pool))
        .env("RESELLER_SECURITY__CREDENTIALS_KEY", key)
        .env("RESELLER_SECURITY__PREVIOUS_CREDENTIALS_KEYS", previous)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The credentials key the harness sealed with (the one about to become previous).
fn current_key(h: &Harness) -> String {
    h.ctx
        .settings
        .security
        .credentials_key
        .expose_secret()
        .to_owned()
}

async fn stored(pool: &PgPool) -> Vec<u8> {
    sqlx::query_scalar("SELECT pending_config FROM instances")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn reseal_moves_stored_credentials_to_the_new_key(pool: PgPool) {
    let h = harness(pool.clone()).await;
    let old = current_key(&h);
    let instance = order(&h, "rotating", "instagram-manager", instagram()).await;
    let new = Sealer::generate_key();

    let refused = reseal(&pool, &new, "");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&instance.id.to_string()) && stderr.contains("previous_credentials_keys"),
        "{stderr}"
    );

    let done = reseal(&pool, &new, &old);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        String::from_utf8_lossy(&done.stdout).starts_with("re-sealed 1 stored credential(s)"),
        "{}",
        String::from_utf8_lossy(&done.stdout)
    );
    let new_only = Sealer::from_base64(&new).unwrap();
    assert_eq!(
        new_only.open(instance.id, &stored(&pool).await).unwrap(),
        instagram(),
        "the new key alone opens it"
    );

    let again = reseal(&pool, &new, "");
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("re-sealed 0 stored credential(s) with the current key; 1 already used it"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

async fn stored_secrets(pool: &PgPool) -> (Vec<u8>, Option<Vec<u8>>) {
    sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn reseal_moves_webhook_secrets_to_the_new_key(pool: PgPool) {
    let h = harness(pool.clone()).await;
    let old = current_key(&h);
    let mut webhooks = h.ctx.settings.webhooks.clone();
    webhooks.allow_private_targets = true;
    let ops = Actor {
        name: "ops:rotation",
        request_id: None,
    };
    let new_endpoint = NewEndpoint {
        url: "http://127.0.0.1:9/hook".into(),
        event_types: None,
        description: None,
    };
    let (endpoint, first) =
        domain::webhooks::create_endpoint(&pool, &h.ctx.sealer, &webhooks, new_endpoint, ops)
            .await
            .unwrap();
    // Mid-rotation of its own: the previous secret still signs, so it is re-sealed too.
    let (_, second) =
        domain::webhooks::rotate_secret(&pool, &h.ctx.sealer, &webhooks, endpoint.id, ops)
            .await
            .unwrap();
    let new = Sealer::generate_key();

    let refused = reseal(&pool, &new, "");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("webhook endpoint {}", endpoint.id))
            && stderr.contains("previous_credentials_keys"),
        "{stderr}"
    );

    let done = reseal(&pool, &new, &old);
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        stdout.contains("re-sealed 2 webhook secret(s) with the current key; 0 already used it"),
        "{stdout}"
    );
    let new_only = Sealer::from_base64(&new).unwrap();
    let (secret, previous) = stored_secrets(&pool).await;
    assert_eq!(
        new_only.open_secret(endpoint.id, &secret).unwrap(),
        second,
        "the new key alone opens the current secret"
    );
    assert_eq!(
        new_only
            .open_secret(endpoint.id, &previous.expect("still in its grace period"))
            .unwrap(),
        first,
        "and the previous one"
    );

    let again = reseal(&pool, &new, "");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        stdout.contains("re-sealed 0 webhook secret(s) with the current key; 2 already used it"),
        "{stdout}"
    );
}
