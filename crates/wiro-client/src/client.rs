//! The client and its single request path: auth headers, envelope decoding, error
//! classification, retries and one tracing span per call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, field};

use crate::config::{Auth, ClientConfig};
use crate::endpoint::Endpoint;
use crate::error::{ConfigError, Error};
use crate::signature;
use crate::wiro_error::WiroError;

/// How much of an unexpected body we keep in errors and logs.
const BODY_SNIPPET: usize = 512;

/// An async client for the Wiro Agents API. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    /// No request is begun at or after this instant, and none outlives it (see [`Client::until`]).
    deadline: Option<tokio::time::Instant>,
    /// Calls in flight at once, shared with every client derived from this one (see
    /// [`Client::limited`]).
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
}

impl Client {
    /// Builds a client from `config`.
    ///
    /// # Errors
    /// [`ConfigError::Http`] when the TLS backend cannot be initialised.
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // Never follow redirects with our key attached.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wiro-reseller/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            config,
            deadline: None,
            in_flight: None,
        })
    }

    /// A client (sharing connections with this one) that begins no request at or after
    /// `deadline` — such a call fails with [`Error::NotSent`] — and gives every request at most
    /// the time left until then.
    ///
    /// This is how a caller holding a lease makes sure it cannot send after the lease ran out:
    /// derive `deadline` from the lease. A process frozen and woken after the deadline finds the
    /// check below (before the request is built) or reqwest's own timeout (checked first on every
    /// poll of the request) already expired. What remains is a process frozen inside the one poll
    /// that writes the request, after both checks: microseconds, stated in
    /// `docs/ARCHITECTURE.md`.
    pub fn until(&self, deadline: tokio::time::Instant) -> Self {
        Self {
            deadline: Some(self.deadline.map_or(deadline, |d| d.min(deadline))),
            ..self.clone()
        }
    }

    /// A client (sharing connections with this one) whose calls, with those of every client
    /// derived from it ([`Client::until`] included), are at most `calls` in flight at once. A
    /// call waits for its turn before the deadline check, so one that waited past its caller's
    /// deadline is not sent.
    ///
    /// This is how a lane bounds the upstream calls it makes while running more work than that
    /// at once: its database work overlaps other work's calls.
    pub fn limited(&self, calls: usize) -> Self {
        Self {
            in_flight: Some(Arc::new(tokio::sync::Semaphore::new(calls.max(1)))),
            ..self.clone()
        }
    }

    /// Builds a client from `WIRO_*` environment variables (see [`ClientConfig::from_env`]).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable that is wrong.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(ClientConfig::from_env()?)
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Calls `endpoint` with `body`, retrying as the endpoint's [`crate::Safety`] allows.
    pub(crate) async fn call<Req, Resp>(
        &self,
        endpoint: Endpoint,
        body: &Req,
    ) -> Result<Resp, Error>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_path(endpoint, endpoint.path(), body).await
    }

    /// Like [`Client::call`] with an explicit path (OAuth paths carry the provider).
    pub(crate) async fn call_path<Req, Resp>(
        &self,
        endpoint: Endpoint,
        path: &str,
        body: &Req,
    ) -> Result<Resp, Error>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let payload = serde_json::to_vec(body).map_err(|e| Error::NotSent {
            endpoint,
            reason: format!("could not encode the request: {e}"),
        })?;
        let url = format!(
            "{}/{path}",
            self.config.base_url.as_str().trim_end_matches('/')
        );
        let mut attempt = 1;
        loop {
            let span = tracing::info_span!(
                "wiro.call",
                endpoint = %endpoint,
                attempt,
                http.status = field::Empty,
                latency_ms = field::Empty,
                outcome = field::Empty,
            );
            // The semaphore is never closed: acquiring it cannot fail.
            let turn = match &self.in_flight {
                Some(in_flight) => in_flight.acquire().instrument(span.clone()).await.ok(),
                None => None,
            };
            let permit = match &self.config.throttle {
                Some(throttle) => Some(throttle.acquire().instrument(span.clone()).await),
                None => None,
            };
            let started = Instant::now();
            let result = self
                .attempt::<Resp>(endpoint, &url, &payload)
                .instrument(span.clone())
                .await;
            if let Some(permit) = permit {
                permit.finish(matches!(result, Err(Error::RateLimited { .. })));
            }
            drop(turn);
            let latency = started.elapsed();
            let label = result.as_ref().map_or_else(Error::kind_label, |_| "ok");
            span.record("latency_ms", latency.as_millis() as u64);
            span.record("outcome", label);
            if let Some(observer) = &self.config.observer {
                observer.on_attempt(endpoint, label, latency);
            }
            match result {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let retry = self
                        .config
                        .retry
                        .should_retry(endpoint.safety(), &error, attempt);
                    span.in_scope(|| {
                        tracing::warn!(error = %error, retry, "wiro call failed");
                    });
                    if !retry {
                        return Err(error);
                    }
                    tokio::time::sleep(self.config.retry.delay(&error, attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt<Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        url: &str,
        payload: &[u8],
    ) -> Result<Resp, Error> {
        let headers = self.headers(endpoint)?;
        let mut request = self.http.post(url).headers(headers).body(payload.to_vec());
        let mut timeout = self.config.timeout;
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(Error::NotSent {
                    endpoint,
                    reason: "the caller's deadline passed before the request was sent".to_owned(),
                });
            }
            timeout = timeout.min(left);
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(endpoint, e, timeout))?;
        let status = response.status().as_u16();
        tracing::Span::current().record("http.status", status);
        let retry_after = parse_retry_after(response.headers());
        let body = self
            .read_capped(endpoint, status, response, timeout)
            .await?;
        decode(endpoint, status, retry_after, &body)
    }

    /// The answer's body, refused (as undecodable: the call may have taken effect) once it
    /// passes `max_response_bytes`, so a broken or hostile upstream cannot fill our memory.
    async fn read_capped(
        &self,
        endpoint: Endpoint,
        status: u16,
        mut response: reqwest::Response,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let cap = self.config.max_response_bytes;
        let too_large = |size: String| Error::Decode {
            endpoint,
            status,
            reason: format!("the answer ({size}) is larger than the {cap}-byte limit"),
            body: String::new(),
        };
        if let Some(length) = response.content_length()
            && length > cap as u64
        {
            return Err(too_large(format!("{length} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(endpoint, e, timeout))?
        {
            if body.len() + chunk.len() > cap {
                return Err(too_large("more bytes".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn headers(&self, endpoint: Endpoint) -> Result<HeaderMap, Error> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let auth = match (&self.config.auth, endpoint.is_public()) {
            (Some(auth), _) => auth,
            (None, true) => return Ok(headers),
            (None, false) => {
                return Err(Error::NotSent {
                    endpoint,
                    reason: "no Wiro API key is configured (set WIRO_API_KEY)".to_owned(),
                });
            }
        };
        let invalid = |what: &str| Error::NotSent {
            endpoint,
            reason: format!("the configured {what} is not a valid HTTP header value"),
        };
        match auth {
            Auth::ApiKey(key) => {
                let mut value =
                    HeaderValue::from_str(key.expose_secret()).map_err(|_| invalid("API key"))?;
                value.set_sensitive(true);
                headers.insert("x-api-key", value);
            }
            Auth::Bearer(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                    .map_err(|_| invalid("API key"))?;
                value.set_sensitive(true);
                headers.insert("authorization", value);
            }
            Auth::Signature {
                api_key,
                api_secret,
            } => {
                let nonce = signature::nonce();
                let sig =
                    signature::sign(api_key.expose_secret(), api_secret.expose_secret(), &nonce);
                let mut key = HeaderValue::from_str(api_key.expose_secret())
                    .map_err(|_| invalid("API key"))?;
                key.set_sensitive(true);
                headers.insert("x-api-key", key);
                headers.insert(
                    "x-nonce",
                    HeaderValue::from_str(&nonce).map_err(|_| invalid("nonce"))?,
                );
                headers.insert(
                    "x-signature",
                    HeaderValue::from_str(&sig).map_err(|_| invalid("signature"))?,
                );
            }
        }
        if let Some(team) = &self.config.team_guid {
            headers.insert(
                "teamGUID",
                HeaderValue::from_str(team).map_err(|_| invalid("team GUID"))?,
            );
        }
        Ok(headers)
    }

    fn transport_error(
        &self,
        endpoint: Endpoint,
        error: reqwest::Error,
        timeout: Duration,
    ) -> Error {
        if error.is_connect() {
            Error::Connect {
                endpoint,
                source: error,
            }
        } else if error.is_timeout() {
            Error::Timeout { endpoint, timeout }
        } else {
            Error::Transport {
                endpoint,
                source: error,
            }
        }
    }
}

/// The fields every Wiro answer carries.
#[derive(serde::Deserialize)]
struct Envelope {
    result: Option<bool>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

/// Wiro documents `{code, message}` objects; tolerate bare strings too.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ErrorItem {
    Object {
        code: Option<serde_json::Value>,
        message: String,
    },
    Text(String),
}

impl ErrorItem {
    fn into_wiro(self) -> WiroError {
        match self {
            ErrorItem::Object { code, message } => {
                let code = code.and_then(|c| {
                    c.as_i64()
                        .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
                });
                WiroError::parse(code, &message)
            }
            ErrorItem::Text(message) => WiroError::parse(None, &message),
        }
    }
}

fn decode<Resp: DeserializeOwned>(
    endpoint: Endpoint,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Resp, Error> {
    if status == 429 {
        return Err(Error::RateLimited {
            endpoint,
            retry_after,
        });
    }
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    if let Some(Envelope {
        result: Some(false),
        errors,
    }) = envelope
    {
        let mut errors = errors.into_iter().map(ErrorItem::into_wiro);
        let error = errors.next().unwrap_or(WiroError::Other {
            code: None,
            message: "result:false without an error message".to_owned(),
        });
        return Err(Error::Api {
            endpoint,
            status,
            error,
            others: errors.collect(),
        });
    }
    if !(200..300).contains(&status) {
        return Err(Error::Http {
            endpoint,
            status,
            body: snippet(body),
        });
    }
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        endpoint,
        status,
        reason: e.to_string(),
        body: snippet(body),
    })
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(BODY_SNIPPET) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Ok {
        value: i64,
    }

    #[test]
    fn a_result_false_envelope_becomes_a_typed_refusal_whatever_the_status() {
        let body = br#"{"result":false,"errors":[{"code":0,"message":"Agent not found"},"Categories cannot be empty"]}"#;
        for status in [200, 400, 401] {
            let err = decode::<Ok>(Endpoint::Deploy, status, None, body).unwrap_err();
            match err {
                Error::Api { error, others, .. } => {
                    assert_eq!(error, WiroError::AgentNotFound);
                    assert_eq!(others, vec![WiroError::CategoriesEmpty]);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_gateway_page_is_an_http_error_with_its_body() {
        let err =
            decode::<Ok>(Endpoint::Detail, 502, None, b"<html>bad gateway</html>").unwrap_err();
        assert!(
            matches!(err, Error::Http { status: 502, ref body, .. } if body.contains("bad gateway"))
        );
    }

    #[test]
    fn a_2xx_body_of_the_wrong_shape_is_a_decode_error_keeping_the_body() {
        let err = decode::<Ok>(
            Endpoint::Detail,
            200,
            None,
            br#"{"result":true,"value":"x"}"#,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Decode { ref body, .. } if body.contains("\"x\"")));
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let ok: Ok = decode(
            Endpoint::Detail,
            200,
            None,
            br#"{"result":true,"errors":[],"value":3,"brand_new":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(ok.value, 3);
    }

    #[test]
    fn a_429_is_rate_limited_with_its_retry_after() {
        let err =
            decode::<Ok>(Endpoint::AgentList, 429, Some(Duration::from_secs(2)), b"").unwrap_err();
        assert!(matches!(
            err,
            Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = "x".repeat(5000);
        assert!(snippet(long.as_bytes()).chars().count() <= BODY_SNIPPET + 1);
    }
}
