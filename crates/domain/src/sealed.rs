//! Credentials at rest. Between the order (or a customer's PATCH) and the moment Wiro has them,
//! credential values wait in `instances.pending_config`, sealed with AES-256-GCM. The instance id
//! is the associated data, so a sealed value copied to another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use wiro_client::models::{CredentialValues, CustomSkillValue};

use crate::error::{Error, Result};
use crate::ids::InstanceId;

/// Format version written as the first byte.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

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

/// Seals and opens [`PendingConfig`] with one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// From a base64-encoded 32-byte key.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the text is not base64 of exactly 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|e| Error::Invalid(format!("security.credentials_key is not base64: {e}")))?;
        if bytes.len() != 32 {
            return Err(Error::Invalid(format!(
                "security.credentials_key must decode to 32 bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// A fresh random key, base64-encoded (for `reseller up` and tests).
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    /// Seals `config` for `instance`.
    ///
    /// # Errors
    /// Only if serialisation fails (it does not for these types).
    pub fn seal(&self, instance: InstanceId, config: &PendingConfig) -> Result<Vec<u8>> {
        let plain = serde_json::to_vec(config).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: instance.0.as_bytes(),
                },
            )
            .map_err(|_| Error::Corrupt("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] produced for the same instance.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for another key, another instance or tampered bytes.
    pub fn open(&self, instance: InstanceId, sealed: &[u8]) -> Result<PendingConfig> {
        let corrupt = || {
            Error::Corrupt(format!(
                "pending credentials of {instance} do not open with this key"
            ))
        };
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(corrupt());
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: instance.0.as_bytes(),
                },
            )
            .map_err(|_| corrupt())?;
        serde_json::from_slice(&plain).map_err(|e| Error::Corrupt(e.to_string()))
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
