//! Credentials at rest. Between the order (or a customer's PATCH) and the moment Wiro has them,
//! credential values wait in `instances.pending_config`, sealed with AES-256-GCM. The instance id
//! is the associated data, so a sealed value copied to another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wiro_client::models::{CredentialValues, CustomSkillValue};

use crate::error::{Error, Result};
use crate::ids::InstanceId;

/// Format version written as the first byte (2: with a key id).
const VERSION: u8 = 2;
/// The first format: no key id.
const VERSION_1: u8 = 1;
const NONCE_LEN: usize = 12;
const KEY_ID_LEN: usize = 8;

/// What an instance still has to send to Wiro with Update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingConfig {
    /// Credential values by group and field (never logged: `Debug` redacts them).
    #[serde(default)]
    pub credentials: CredentialValues,
    /// Custom skill changes.
    #[serde(default)]
    pub custom_skills: Vec<CustomSkillValue>,
}

impl PendingConfig {
    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty() && self.custom_skills.is_empty()
    }

    /// Adds `other` on top of `self` (later values win, per group and field).
    pub fn merge(&mut self, other: PendingConfig) {
        for (group, fields) in other.credentials.0 {
            self.credentials.0.entry(group).or_default().extend(fields);
        }
        for skill in other.custom_skills {
            self.custom_skills.retain(|s| s.key != skill.key);
            self.custom_skills.push(skill);
        }
    }
}

/// Seals with the current key and opens with it or any previous one, so the key can be
/// rotated: deploy the new key with the old ones in `security.previous_credentials_keys`, run
/// `reseller reseal`, then drop the old keys.
///
/// Format 2: `[2][key id: 8 bytes][nonce: 12][ciphertext]`, the key id being the first 8 bytes
/// of the key's SHA-256 (it names the key without revealing it). Format 1 (no key id) still
/// opens: every key is tried.
#[derive(Clone)]
pub struct Sealer {
    current: KeyEntry,
    previous: Vec<KeyEntry>,
}

#[derive(Clone)]
struct KeyEntry {
    id: [u8; KEY_ID_LEN],
    cipher: Aes256Gcm,
    /// A subkey for request fingerprints, derived from the key (HMAC of a fixed label), so
    /// fingerprints rotate with the key without a secret of their own.
    fingerprint: [u8; 32],
}

/// Labels the fingerprint subkey (changing it invalidates every stored fingerprint).
const FINGERPRINT_LABEL: &[u8] = b"wiro-reseller/request-fingerprint/v1";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

fn key_entry(key: &str, setting: &str) -> Result<KeyEntry> {
    let bytes = STANDARD
        .decode(key.trim())
        .map_err(|e| Error::Invalid(format!("{setting} is not base64: {e}")))?;
    if bytes.len() != 32 {
        return Err(Error::Invalid(format!(
            "{setting} must decode to 32 bytes, got {}",
            bytes.len()
        )));
    }
    let digest = Sha256::digest(&bytes);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    Ok(KeyEntry {
        id,
        cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        fingerprint: hmac(&bytes, FINGERPRINT_LABEL)
            .finalize()
            .into_bytes()
            .into(),
    })
}

impl Sealer {
    /// From a base64-encoded 32-byte key (no previous keys).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the text is not base64 of exactly 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self> {
        Self::with_previous(key, "")
    }

    /// The current key and the previous ones (comma-separated base64; empty for none).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting whose key is not base64 of exactly 32 bytes.
    pub fn with_previous(current: &str, previous: &str) -> Result<Self> {
        let current = key_entry(current, "security.credentials_key")?;
        let previous = previous
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
            .map(|(i, k)| key_entry(k, &format!("security.previous_credentials_keys[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { current, previous })
    }

    /// A fresh random key, base64-encoded (for `reseller up` and tests).
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    /// Seals `config` for `instance` with the current key.
    ///
    /// # Errors
    /// Only if serialisation fails (it does not for these types).
    pub fn seal(&self, instance: InstanceId, config: &PendingConfig) -> Result<Vec<u8>> {
        let plain = serde_json::to_vec(config).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: instance.0.as_bytes(),
                },
            )
            .map_err(|_| Error::Corrupt("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Seals a secret (a webhook endpoint's `whsec_…`) for `owner` with the current key, in
    /// the same format as credentials.
    ///
    /// # Errors
    /// Only if sealing fails (it does not).
    pub fn seal_secret(&self, owner: uuid::Uuid, secret: &str) -> Result<Vec<u8>> {
        let config = PendingConfig {
            credentials: CredentialValues(std::collections::BTreeMap::from([(
                "secret".to_owned(),
                std::collections::BTreeMap::from([(
                    "value".to_owned(),
                    serde_json::Value::String(secret.to_owned()),
                )]),
            )])),
            custom_skills: Vec::new(),
        };
        self.seal(InstanceId(owner), &config)
    }

    /// Opens what [`Sealer::seal_secret`] sealed for `owner`.
    ///
    /// # Errors
    /// As [`Sealer::open`]; [`Error::Corrupt`] when it holds no secret.
    pub fn open_secret(&self, owner: uuid::Uuid, sealed: &[u8]) -> Result<String> {
        self.open(InstanceId(owner), sealed)?
            .credentials
            .0
            .get("secret")
            .and_then(|fields| fields.get("value"))
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| Error::Corrupt(format!("the sealed secret of {owner} holds no secret")))
    }

    /// True when `sealed` was sealed with the current key (nothing to re-seal).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.first() == Some(&VERSION) && sealed.get(1..=KEY_ID_LEN) == Some(&self.current.id)
    }

    /// Opens what [`Sealer::seal`] produced for the same instance, with whichever known key
    /// sealed it.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for an unknown key, another instance or tampered bytes.
    pub fn open(&self, instance: InstanceId, sealed: &[u8]) -> Result<PendingConfig> {
        let corrupt = || {
            Error::Corrupt(format!(
                "pending credentials of {instance} do not open with the configured keys \
                 (security.credentials_key, security.previous_credentials_keys)"
            ))
        };
        let keys = || std::iter::once(&self.current).chain(&self.previous);
        let (candidates, nonce, body): (Vec<&KeyEntry>, &[u8], &[u8]) = match sealed.first() {
            Some(&VERSION) if sealed.len() > 1 + KEY_ID_LEN + NONCE_LEN => {
                let (id, rest) = sealed[1..].split_at(KEY_ID_LEN);
                let (nonce, body) = rest.split_at(NONCE_LEN);
                (keys().filter(|k| k.id == id).collect(), nonce, body)
            }
            Some(&VERSION_1) if sealed.len() > 1 + NONCE_LEN => {
                let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
                (keys().collect(), nonce, body)
            }
            _ => return Err(corrupt()),
        };
        let plain = candidates
            .into_iter()
            .find_map(|key| {
                key.cipher
                    .decrypt(
                        Nonce::from_slice(nonce),
                        Payload {
                            msg: body,
                            aad: instance.0.as_bytes(),
                        },
                    )
                    .ok()
            })
            .ok_or_else(corrupt)?;
        serde_json::from_slice(&plain).map_err(|e| Error::Corrupt(e.to_string()))
    }

    /// A keyed fingerprint of `data` (HMAC-SHA256 under a subkey of the current key): what the
    /// database keeps to recognise a repeated request, without a bare hash of bodies that carry
    /// credentials (a bare SHA-256 of a short secret can be brute-forced from a dump).
    pub fn fingerprint(&self, data: &[u8]) -> Vec<u8> {
        hmac(&self.current.fingerprint, data)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// True when `stored` is the fingerprint of `data` under the current or a previous key (a
    /// key rotation does not turn a client's retry into "another request"). Constant-time.
    pub fn fingerprint_matches(&self, data: &[u8], stored: &[u8]) -> bool {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|key| hmac(&key.fingerprint, data).verify_slice(stored).is_ok())
    }

    /// `sealed` re-sealed with the current key, or `None` when it already is.
    ///
    /// # Errors
    /// As [`Sealer::open`].
    pub fn reseal(&self, instance: InstanceId, sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.is_current(sealed) {
            return Ok(None);
        }
        let config = self.open(instance, sealed)?;
        self.seal(instance, &config).map(Some)
    }

    /// What [`Sealer::seal_secret`] sealed for `owner`, re-sealed with the current key, or
    /// `None` when it already is.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the webhook endpoint when no configured key opens it.
    pub fn reseal_secret(&self, owner: uuid::Uuid, sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        self.reseal(InstanceId(owner), sealed).map_err(|_| {
            Error::Corrupt(format!(
                "the secret of webhook endpoint {owner} does not open with the configured keys \
                 (security.credentials_key, security.previous_credentials_keys)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> PendingConfig {
        let fields = BTreeMap::from([("apiKey".to_owned(), serde_json::json!("sk-secret"))]);
        PendingConfig {
            credentials: CredentialValues(BTreeMap::from([("brevo".to_owned(), fields)])),
            custom_skills: vec![],
        }
    }

    #[test]
    fn sealed_config_opens_for_its_instance_only() {
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let a = InstanceId::new();
        let sealed = sealer.seal(a, &config()).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("sk-secret"));
        assert_eq!(sealer.open(a, &sealed).unwrap(), config());
        assert!(sealer.open(InstanceId::new(), &sealed).is_err());
        let other = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert!(other.open(a, &sealed).is_err());
    }

    /// A value in the first format (no key id), as stored before key ids existed.
    fn seal_v1(key: &str, instance: InstanceId, config: &PendingConfig) -> Vec<u8> {
        let bytes = STANDARD.decode(key).unwrap();
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
        let nonce = [7u8; NONCE_LEN];
        let plain = serde_json::to_vec(config).unwrap();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: instance.0.as_bytes(),
                },
            )
            .unwrap();
        [vec![VERSION_1], nonce.to_vec(), sealed].concat()
    }

    #[test]
    fn a_rotated_key_still_opens_old_values_and_reseal_moves_them_to_the_new_key() {
        let (old, new) = (Sealer::generate_key(), Sealer::generate_key());
        let a = InstanceId::new();
        let sealed_old = Sealer::from_base64(&old)
            .unwrap()
            .seal(a, &config())
            .unwrap();
        let legacy = seal_v1(&old, a, &config());

        let rotated = Sealer::with_previous(&new, &format!(" {old} ,")).unwrap();
        assert_eq!(rotated.open(a, &sealed_old).unwrap(), config());
        assert_eq!(rotated.open(a, &legacy).unwrap(), config());
        assert!(!rotated.is_current(&sealed_old));

        let resealed = rotated.reseal(a, &sealed_old).unwrap().unwrap();
        assert!(rotated.is_current(&resealed));
        assert_eq!(
            rotated.reseal(a, &resealed).unwrap(),
            None,
            "already current"
        );
        let new_only = Sealer::from_base64(&new).unwrap();
        assert_eq!(new_only.open(a, &resealed).unwrap(), config());
        assert!(
            new_only.open(a, &sealed_old).is_err(),
            "without the old key, old values do not open"
        );
    }

    #[test]
    fn a_fingerprint_is_keyed_and_survives_a_rotation() {
        let (old, new) = (Sealer::generate_key(), Sealer::generate_key());
        let body = br#"POST /v1/agents\n{"credentials":{"brevo":{"apiKey":"sk-1"}}}"#;
        let before = Sealer::from_base64(&old).unwrap();
        let print = before.fingerprint(body);
        assert_ne!(print, Sha256::digest(body).to_vec(), "not a bare hash");
        assert_ne!(
            print,
            Sealer::from_base64(&new).unwrap().fingerprint(body),
            "another key, another fingerprint"
        );
        assert!(before.fingerprint_matches(body, &print));
        assert!(!before.fingerprint_matches(b"another body", &print));

        let rotated = Sealer::with_previous(&new, &old).unwrap();
        assert!(
            rotated.fingerprint_matches(body, &print),
            "old key still recognised"
        );
        assert!(rotated.fingerprint_matches(body, &rotated.fingerprint(body)));
        assert!(
            !Sealer::from_base64(&new)
                .unwrap()
                .fingerprint_matches(body, &print)
        );
    }

    #[test]
    fn a_bad_previous_key_is_refused_with_its_position() {
        let err = Sealer::with_previous(&Sealer::generate_key(), "c2hvcnQ=").unwrap_err();
        assert!(
            err.to_string()
                .contains("security.previous_credentials_keys[0]"),
            "{err}"
        );
    }

    #[test]
    fn a_short_key_is_refused_with_the_setting_named() {
        let err = Sealer::from_base64("c2hvcnQ=").unwrap_err();
        assert!(
            err.to_string().contains("security.credentials_key"),
            "{err}"
        );
    }

    #[test]
    fn merging_overrides_fields_and_keeps_others() {
        let mut base = config();
        let mut more = config();
        more.credentials
            .0
            .get_mut("brevo")
            .unwrap()
            .insert("apiKey".into(), "new".into());
        more.credentials.0.insert("x".into(), BTreeMap::new());
        base.merge(more);
        assert_eq!(base.credentials.0["brevo"]["apiKey"], "new");
        assert!(base.credentials.0.contains_key("x"));
    }
}
