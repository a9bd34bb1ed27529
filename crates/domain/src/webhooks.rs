//! Outbound webhooks as the Standard Webhooks specification has them: `whsec_<base64>`
//! secrets, `webhook-id` / `webhook-timestamp` / `webhook-signature` headers, and a signature
//! `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per active secret. Also the rules for a
//! target URL (no private, loopback or link-local address unless the operator allows it).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use serde_json::json;

use crate::config::WebhookSettings;
use crate::db::audit;
use crate::db::webhooks::{self as db, Endpoint, EndpointChange};
use crate::error::{Error, Result};
use crate::orders::Actor;
use crate::sealed::Sealer;

/// How long resolving a target's host may take.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Every event type we emit (the `type` of a payload; a breaking change gets a new one).
pub const EVENT_TYPES: [&str; 16] = [
    "agent.state_changed",
    "agent.running",
    "agent.failed",
    "agent.awaiting_credentials",
    "agent.awaiting_connection",
    "subscription.renewed",
    "subscription.renewal_parked",
    "subscription.cancelled",
    "subscription.expired",
    "credits.low",
    "credits.topped_up",
    "credits.exhausted",
    "message.completed",
    "message.failed",
    "alert.raised",
    "batch.completed",
];

/// A fresh secret in its text form: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a `whsec_…` secret.
///
/// # Errors
/// [`Error::Invalid`] when it is not `whsec_` followed by base64.
pub fn secret_key(secret: &str) -> Result<Vec<u8>> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| Error::Invalid("a webhook secret starts with whsec_".into()))?;
    STANDARD
        .decode(encoded)
        .map_err(|_| Error::Invalid("a webhook secret is whsec_ followed by base64".into()))
}

/// The `webhook-id` of an event.
pub fn message_id(event: uuid::Uuid) -> String {
    format!("msg_{}", event.simple())
}

/// The `webhook-signature` header: one `v1,<signature>` per secret, space-separated.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| format!("v1,{}", sign(key, id, timestamp, body)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// base64 of HMAC-SHA256(`key`, "`id`.`timestamp`.`body`").
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a target URL's form: `https` (or `http` where private targets are allowed, for local
/// receivers), a host, no credentials in it.
///
/// # Errors
/// [`Error::Invalid`] saying what is wrong.
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url> {
    let url = url::Url::parse(raw).map_err(|e| Error::Invalid(format!("url: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            return Err(Error::Invalid(
                "url: must be https (http only where webhooks.allow_private_targets is set)".into(),
            ));
        }
        other => {
            return Err(Error::Invalid(format!(
                "url: scheme {other} is not http(s)"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::Invalid("url: no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Invalid("url: must not carry credentials".into()));
    }
    Ok(url)
}

/// Checks the host of `url` when it is an address (a name is checked where it is resolved:
/// [`check_target`], and the dispatcher's resolver).
///
/// # Errors
/// As [`check_addresses`].
pub fn check_literal_address(url: &url::Url, allow_private: bool) -> Result<()> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    check_addresses(&[ip], allow_private)
}

/// Refuses a target whose host resolved to an address that is not public (loopback, private,
/// link-local, CGNAT, unspecified, multicast...), unless `allow_private`: a webhook must not
/// become a way to reach our own network (SSRF). Every address counts, not the first.
///
/// # Errors
/// [`Error::Invalid`] naming the address.
pub fn check_addresses(addresses: &[IpAddr], allow_private: bool) -> Result<()> {
    if addresses.is_empty() {
        return Err(Error::Invalid(
            "url: the host resolves to no address".into(),
        ));
    }
    if allow_private {
        return Ok(());
    }
    match addresses.iter().find(|ip| !is_public(**ip)) {
        Some(ip) => Err(Error::Invalid(format!(
            "url: the host resolves to {ip}, a private, loopback or link-local address \
             (allowed only with webhooks.allow_private_targets)"
        ))),
        None => Ok(()),
    }
}

/// True for an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// Checks a target URL's form, then resolves its host and checks every address.
///
/// # Errors
/// [`Error::Invalid`] saying what is wrong.
pub async fn check_target(raw: &str, allow_private: bool) -> Result<url::Url> {
    let url = check_url(raw, allow_private)?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let addresses: Vec<IpAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| Error::Invalid(format!("url: resolving {host} timed out")))?
        .map_err(|e| Error::Invalid(format!("url: cannot resolve {host}: {e}")))?
        .map(|a| a.ip())
        .collect();
    check_addresses(&addresses, allow_private)?;
    Ok(url)
}

/// Checks a subscription: known event types, no repeats.
///
/// # Errors
/// [`Error::Invalid`] naming the first unknown type.
pub fn check_event_types(types: &[String]) -> Result<()> {
    if types.is_empty() {
        return Err(Error::Invalid(
            "event_types: must name at least one type (leave it out for every type)".into(),
        ));
    }
    if let Some(unknown) = types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        return Err(Error::Invalid(format!(
            "event_types: {unknown:?} is not an event type (one of {})",
            EVENT_TYPES.join(", ")
        )));
    }
    Ok(())
}

/// What ops ask for when they add an endpoint.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    /// Where to POST.
    pub url: String,
    /// Subscribed types (`None`: all).
    pub event_types: Option<Vec<String>>,
    /// A note.
    pub description: Option<String>,
}

fn check_description(description: Option<&str>) -> Result<()> {
    if description.is_some_and(|d| d.chars().count() > 500) {
        return Err(Error::Invalid("description: at most 500 characters".into()));
    }
    Ok(())
}

/// Adds an endpoint with a fresh secret, audited. Returns it and the secret (shown only now).
///
/// # Errors
/// [`Error::Invalid`] for a bad URL, target or subscription; database errors.
pub async fn create_endpoint(
    pool: &sqlx::PgPool,
    sealer: &Sealer,
    settings: &WebhookSettings,
    new: NewEndpoint,
    actor: Actor<'_>,
) -> Result<(Endpoint, String)> {
    let url = check_target(&new.url, settings.allow_private_targets).await?;
    if let Some(types) = &new.event_types {
        check_event_types(types)?;
    }
    check_description(new.description.as_deref())?;
    let id = uuid::Uuid::now_v7();
    let secret = new_secret();
    let sealed = sealer.seal_secret(id, &secret)?;
    let mut tx = pool.begin().await?;
    let endpoint = db::create_endpoint(
        &mut *tx,
        id,
        url.as_str(),
        new.description.as_deref(),
        new.event_types.as_deref(),
        &sealed,
    )
    .await?;
    audit::record(
        &mut *tx,
        actor.audit(
            "webhook_endpoint.create",
            endpoint_target(id),
            json!({"url": url.as_str(), "event_types": new.event_types}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok((endpoint, secret))
}

/// Changes an endpoint, audited.
///
/// # Errors
/// [`Error::NotFound`]; [`Error::Invalid`] as for [`create_endpoint`]; database errors.
pub async fn update_endpoint(
    pool: &sqlx::PgPool,
    settings: &WebhookSettings,
    id: uuid::Uuid,
    change: EndpointChange,
    actor: Actor<'_>,
) -> Result<Endpoint> {
    if let Some(url) = &change.url {
        check_target(url, settings.allow_private_targets).await?;
    }
    if let Some(Some(types)) = &change.event_types {
        check_event_types(types)?;
    }
    if let Some(description) = &change.description {
        check_description(description.as_deref())?;
    }
    let detail =
        json!({"url": change.url, "event_types": change.event_types, "enabled": change.enabled});
    let mut tx = pool.begin().await?;
    let endpoint = db::update_endpoint(&mut *tx, id, change)
        .await?
        .ok_or(Error::NotFound("webhook endpoint"))?;
    audit::record(
        &mut *tx,
        actor.audit("webhook_endpoint.update", endpoint_target(id), detail),
    )
    .await?;
    tx.commit().await?;
    Ok(endpoint)
}

/// Deletes an endpoint (its deliveries and their log with it), audited.
///
/// # Errors
/// [`Error::NotFound`]; database errors.
pub async fn delete_endpoint(pool: &sqlx::PgPool, id: uuid::Uuid, actor: Actor<'_>) -> Result<()> {
    let mut tx = pool.begin().await?;
    if !db::delete_endpoint(&mut *tx, id).await? {
        return Err(Error::NotFound("webhook endpoint"));
    }
    audit::record(
        &mut *tx,
        actor.audit("webhook_endpoint.delete", endpoint_target(id), json!({})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Gives an endpoint a new secret; the old one keeps signing for `webhooks.rotation_grace`.
/// Returns the endpoint and the new secret (shown only now).
///
/// # Errors
/// [`Error::NotFound`]; database errors.
pub async fn rotate_secret(
    pool: &sqlx::PgPool,
    sealer: &Sealer,
    settings: &WebhookSettings,
    id: uuid::Uuid,
    actor: Actor<'_>,
) -> Result<(Endpoint, String)> {
    let secret = new_secret();
    let sealed = sealer.seal_secret(id, &secret)?;
    let grace = chrono::Duration::from_std(settings.rotation_grace)
        .map_err(|e| Error::Invalid(format!("webhooks.rotation_grace: {e}")))?;
    let mut tx = pool.begin().await?;
    let endpoint = db::rotate_secret(&mut *tx, id, &sealed, chrono::Utc::now() + grace)
        .await?
        .ok_or(Error::NotFound("webhook endpoint"))?;
    audit::record(
        &mut *tx,
        actor.audit(
            "webhook_endpoint.rotate_secret",
            endpoint_target(id),
            json!({"previous_secret_until": endpoint.previous_secret_until}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok((endpoint, secret))
}

/// Sends an event again to every enabled endpoint subscribed to its type now (same
/// `webhook-id`, fresh schedule), audited. Returns the deliveries queued.
///
/// # Errors
/// [`Error::NotFound`]; database errors.
pub async fn replay_event(pool: &sqlx::PgPool, event: uuid::Uuid, actor: Actor<'_>) -> Result<u64> {
    let mut tx = pool.begin().await?;
    if db::event(&mut *tx, event).await?.is_none() {
        return Err(Error::NotFound("webhook event"));
    }
    let queued = db::replay(&mut *tx, event).await?;
    let target = format!("webhook_event:{}", message_id(event));
    audit::record(
        &mut *tx,
        actor.audit("webhook_event.replay", target, json!({"queued": queued})),
    )
    .await?;
    tx.commit().await?;
    Ok(queued)
}

fn endpoint_target(id: uuid::Uuid) -> String {
    format!("webhook_endpoint:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_specifications_example() {
        // The example of the Standard Webhooks specification (its reference libraries' tests).
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_signs_during_a_rotation() {
        let keys = [
            secret_key(&new_secret()).unwrap(),
            secret_key(&new_secret()).unwrap(),
        ];
        let header = signature_header(&keys, "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
    }

    #[test]
    fn secrets_are_whsec_base64() {
        let secret = new_secret();
        assert_eq!(secret_key(&secret).unwrap().len(), 32);
        assert!(secret_key("MfKQ9r8GKYqr").is_err());
        assert!(secret_key("whsec_not base64!").is_err());
    }

    #[test]
    fn only_public_addresses_pass_unless_private_targets_are_allowed() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!is_public(ip), "{private}");
            assert!(check_addresses(&[ip], false).is_err(), "{private}");
            assert!(check_addresses(&[ip], true).is_ok(), "{private}");
        }
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let private: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(check_addresses(&[public], false).is_ok());
        assert!(
            check_addresses(&[public, private], false).is_err(),
            "every address counts"
        );
    }

    #[test]
    fn urls_must_be_https_without_credentials() {
        assert!(check_url("https://hooks.example.com/in", false).is_ok());
        assert!(check_url("http://hooks.example.com/in", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/in", true).is_ok());
        assert!(check_url("ftp://example.com", true).is_err());
        assert!(check_url("https://user:pw@example.com", false).is_err());
        assert!(check_url("not a url", false).is_err());
    }

    #[test]
    fn an_address_in_the_url_is_checked_and_a_name_left_to_its_resolver() {
        let url = |raw: &str| url::Url::parse(raw).unwrap();
        assert!(check_literal_address(&url("https://10.0.0.7/in"), false).is_err());
        assert!(check_literal_address(&url("https://[::1]:8443/in"), false).is_err());
        assert!(check_literal_address(&url("https://10.0.0.7/in"), true).is_ok());
        assert!(check_literal_address(&url("https://93.184.215.14/in"), false).is_ok());
        assert!(check_literal_address(&url("https://localhost/in"), false).is_ok());
    }
}
