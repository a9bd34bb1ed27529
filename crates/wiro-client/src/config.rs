//! How a [`crate::Client`] reaches Wiro: base URL, credentials, team and timeouts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::error::ConfigError;
use crate::observer::CallObserver;
use crate::retry::RetryPolicy;

/// The production Wiro API.
pub const DEFAULT_BASE_URL: &str = "https://api.wiro.ai/v1";

/// How each request proves who we are. Wiro projects are either "API key only" or
/// "signature based"; `Authorization: Bearer <key>` is the third documented form.
#[derive(Clone)]
pub enum Auth {
    /// `x-api-key: KEY`.
    ApiKey(SecretString),
    /// `Authorization: Bearer KEY`.
    Bearer(SecretString),
    /// `x-api-key`, `x-nonce` and `x-signature` = hex(HMAC-SHA256(key = API key, secret + nonce)).
    Signature {
        /// The project's API key (also the HMAC key).
        api_key: SecretString,
        /// The project's secret (the start of the signed message).
        api_secret: SecretString,
    },
}

impl fmt::Debug for Auth {
    // Never print key material, not even partially.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match self {
            Auth::ApiKey(_) => "ApiKey",
            Auth::Bearer(_) => "Bearer",
            Auth::Signature { .. } => "Signature",
        };
        write!(f, "Auth::{method}([redacted])")
    }
}

/// Everything a [`crate::Client`] needs. Build it with [`ClientConfig::new`] or
/// [`ClientConfig::from_env`], then adjust the public fields.
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URL including the `/v1` prefix, e.g. `https://api.wiro.ai/v1`.
    pub base_url: Url,
    /// Credentials for authenticated endpoints (catalog endpoints are public).
    pub auth: Option<Auth>,
    /// Sent as the `teamGUID` header on every authenticated call when set.
    pub team_guid: Option<String>,
    /// Whole-request timeout (connect + send + response).
    pub timeout: Duration,
    /// Timeout of the TCP/TLS connect phase alone.
    pub connect_timeout: Duration,
    /// Retries for read-only and idempotent calls. Spending calls are never retried.
    pub retry: RetryPolicy,
    /// Receives one event per attempt (for metrics); optional.
    pub observer: Option<Arc<dyn CallObserver>>,
    /// Largest answer read; a longer one is abandoned (undecodable) instead of filling memory.
    pub max_response_bytes: usize,
    /// Paces every attempt (rate share, adaptive limits on 429); optional.
    pub throttle: Option<Arc<crate::Throttle>>,
}

/// Default [`ClientConfig::max_response_bytes`]: a MyAgents page of 100 full agents or a long
/// session History is well under it.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("auth", &self.auth)
            .field("team_guid", &self.team_guid)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A config for `base_url` with default timeouts and retries.
    ///
    /// # Errors
    /// [`ConfigError::BaseUrl`] when the URL does not parse or is not http(s).
    pub fn new(base_url: &str, auth: Option<Auth>) -> Result<Self, ConfigError> {
        Ok(Self {
            base_url: parse_base_url(base_url)?,
            auth,
            team_guid: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            observer: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            throttle: None,
        })
    }

    /// Reads `WIRO_BASE_URL` (default [`DEFAULT_BASE_URL`]), `WIRO_API_KEY`, `WIRO_API_SECRET`
    /// (switches to signature auth) and `WIRO_TEAM_GUID`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable that is wrong.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ClientConfig::from_env`] but reading variables through `lookup` (for tests and for
    /// layered settings).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable that is wrong.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let base = non_empty("WIRO_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let key = non_empty("WIRO_API_KEY");
        let secret = non_empty("WIRO_API_SECRET");
        let auth = match (key, secret) {
            (Some(key), Some(secret)) => Some(Auth::Signature {
                api_key: key.into(),
                api_secret: secret.into(),
            }),
            (Some(key), None) => Some(Auth::ApiKey(key.into())),
            (None, Some(_)) => return Err(ConfigError::SecretWithoutKey),
            (None, None) => None,
        };
        let mut config = Self::new(&base, auth)?;
        config.team_guid = non_empty("WIRO_TEAM_GUID");
        Ok(config)
    }

    /// Replaces the team sent in the `teamGUID` header.
    #[must_use]
    pub fn with_team(mut self, team_guid: Option<String>) -> Self {
        self.team_guid = team_guid;
        self
    }
}

fn parse_base_url(raw: &str) -> Result<Url, ConfigError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|e| ConfigError::BaseUrl {
        value: raw.to_owned(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::BaseUrl {
            value: raw.to_owned(),
            reason: "the scheme must be http or https".to_owned(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn env_with_key_and_secret_selects_signature_auth() {
        let config = ClientConfig::from_lookup(lookup(&[
            ("WIRO_BASE_URL", "http://127.0.0.1:7700/v1/"),
            ("WIRO_API_KEY", "k"),
            ("WIRO_API_SECRET", "s"),
            ("WIRO_TEAM_GUID", "team-1"),
        ]))
        .unwrap();
        assert_eq!(config.base_url.as_str(), "http://127.0.0.1:7700/v1");
        assert!(matches!(config.auth, Some(Auth::Signature { .. })));
        assert_eq!(config.team_guid.as_deref(), Some("team-1"));
    }

    #[test]
    fn env_without_anything_uses_production_url_and_no_auth() {
        let config = ClientConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(config.base_url.as_str(), DEFAULT_BASE_URL);
        assert!(config.auth.is_none());
    }

    #[test]
    fn a_secret_without_a_key_is_a_config_error() {
        let err = ClientConfig::from_lookup(lookup(&[("WIRO_API_SECRET", "s")])).unwrap_err();
        assert!(err.to_string().contains("WIRO_API_KEY"), "{err}");
    }

    #[test]
    fn a_bad_base_url_names_the_value() {
        let err = ClientConfig::new("ftp://x", None).unwrap_err();
        assert!(err.to_string().contains("ftp://x"), "{err}");
    }

    #[test]
    fn debug_output_never_contains_key_material() {
        let config = ClientConfig::new(
            "http://x/v1",
            Some(Auth::Signature {
                api_key: "super-secret-key".to_owned().into(),
                api_secret: "super-secret-secret".to_owned().into(),
            }),
        )
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("super-secret"), "{printed}");
        assert!(printed.contains("redacted"));
    }
}
