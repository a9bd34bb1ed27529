//! Bearer JWTs: one algorithm pinned by config (HS256 secret, or an RS256/ES256/EdDSA public
//! key; the keys used before a rotation verify until their tokens expire); `exp`, `iss`, `aud`
//! and `sub` required, `nbf` checked, lifetimes capped. `sub` is the customer's external id.
//! Ops tokens are their own kind: `role: "ops"` *and* the ops audience (`auth.ops_audience`); a
//! customer-audience token claiming the role is refused. The extractors resolve the caller once
//! per request, and every customer-scoped query takes the customer from here — never from the
//! request.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use domain::Settings;
use domain::db::customers::{self, Customer};
use domain::model::CustomerStatus;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::request_id::RequestId;
use crate::state::AppState;

/// The claims we read (and mint).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Customer external id, or the ops user's name.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    #[serde(default)]
    pub iat: Option<i64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// `ops` for the ops role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Verifies tokens with the configured key.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    /// Keys used before (`auth.previous_hs256_secrets`, `auth.previous_public_key_pem`): tried
    /// only when `key` finds the signature invalid, so a current token costs nothing more.
    previous: Vec<DecodingKey>,
    validation: Validation,
    customer_audience: String,
    ops_audience: String,
    max_lifetime: i64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

fn algorithm(name: &str) -> anyhow::Result<Algorithm> {
    Ok(match name {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => anyhow::bail!("auth.algorithm {other:?} is not supported"),
    })
}

/// An asymmetric algorithm's public key from PEM.
fn public_key(alg: Algorithm, pem: &[u8]) -> jsonwebtoken::errors::Result<DecodingKey> {
    match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
        _ => DecodingKey::from_ed_pem(pem),
    }
}

impl JwtVerifier {
    /// From `[auth]`.
    ///
    /// # Errors
    /// No HS256 secret, or a published one (the message names the variable to set); a key that
    /// does not parse for the algorithm.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        settings.require_signing_secret()?;
        let auth = &settings.auth;
        let alg = algorithm(&auth.algorithm)?;
        let pem = auth.public_key_pem.as_bytes();
        let key = match alg {
            Algorithm::HS256 => {
                DecodingKey::from_secret(auth.hs256_secret.expose_secret().as_bytes())
            }
            _ => public_key(alg, pem),
        }
        .map_err(|e| anyhow::anyhow!("auth key for {} is invalid: {e}", auth.algorithm))?;
        let previous = match alg {
            Algorithm::HS256 => settings
                .previous_hs256_secrets()
                .into_iter()
                .map(|secret| DecodingKey::from_secret(secret.as_bytes()))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("auth.previous_hs256_secrets: {e}"))?,
            _ if auth.previous_public_key_pem.trim().is_empty() => Vec::new(),
            _ => vec![
                public_key(alg, auth.previous_public_key_pem.as_bytes()).map_err(|e| {
                    anyhow::anyhow!(
                        "auth.previous_public_key_pem is not a {} public key: {e}",
                        auth.algorithm
                    )
                })?,
            ],
        };
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&auth.issuer]);
        validation.set_audience(&[&auth.audience, &auth.ops_audience]);
        validation.validate_nbf = true;
        validation.leeway = auth.leeway.as_secs();
        Ok(Self {
            key,
            previous,
            validation,
            customer_audience: auth.audience.clone(),
            ops_audience: auth.ops_audience.clone(),
            max_lifetime: auth.max_token_lifetime.as_secs() as i64,
        })
    }

    /// Verifies `token`.
    ///
    /// # Errors
    /// 401 naming what is wrong (expired, wrong audience...).
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        use jsonwebtoken::errors::ErrorKind as K;
        let claims = self.decode(token).map_err(|e| {
            let why = match e.kind() {
                K::ExpiredSignature => "the token has expired".to_owned(),
                K::InvalidAudience => "the token's audience is not this API".to_owned(),
                K::InvalidIssuer => "the token's issuer is not trusted".to_owned(),
                K::InvalidSignature => "the token's signature is invalid".to_owned(),
                K::InvalidAlgorithm | K::InvalidAlgorithmName => {
                    "the token's algorithm is not accepted".to_owned()
                }
                K::MissingRequiredClaim(claim) => {
                    format!("the token lacks the `{claim}` claim")
                }
                K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => {
                    "the token is malformed".to_owned()
                }
                K::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
                other => format!("the token is not valid ({other:?})"),
            };
            ApiError::unauthorized(why)
        })?;
        let issued = claims.iat.unwrap_or_else(|| chrono::Utc::now().timestamp());
        if claims.exp - issued > self.max_lifetime {
            return Err(ApiError::unauthorized(format!(
                "the token lives longer than this API accepts ({}s)",
                self.max_lifetime
            )));
        }
        let ops = claims.role.as_deref() == Some("ops");
        let audience = if ops {
            &self.ops_audience
        } else {
            &self.customer_audience
        };
        if &claims.aud != audience {
            return Err(ApiError::unauthorized(if ops {
                "an ops token must carry the ops audience"
            } else {
                "the token's audience is not this API"
            }));
        }
        Ok(claims)
    }

    /// The token's claims under the current key, or, when that finds the signature invalid,
    /// under the first previous key that verifies it (the current key's error otherwise).
    fn decode(&self, token: &str) -> jsonwebtoken::errors::Result<Claims> {
        let current = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation);
        match current {
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => self
                .previous
                .iter()
                .find_map(|key| jsonwebtoken::decode::<Claims>(token, key, &self.validation).ok())
                .map(|data| data.claims)
                .ok_or(e),
            other => other.map(|data| data.claims),
        }
    }
}

/// Mints an HS256 token (the `reseller token` command, `up`, and tests), living
/// `auth.token_ttl`.
///
/// # Errors
/// When HS256 is not the configured algorithm or the secret is unusable.
pub fn mint(settings: &Settings, sub: &str, role: Option<&str>) -> anyhow::Result<String> {
    mint_for(settings, sub, role, settings.auth.token_ttl).map(|(token, _)| token)
}

/// Mints an HS256 token living `ttl`; returns it with its expiry (Unix seconds). Ops tokens
/// carry the ops audience.
///
/// # Errors
/// When HS256 is not the configured algorithm, the secret is missing or published, or `ttl`
/// exceeds `auth.max_token_lifetime`.
pub fn mint_for(
    settings: &Settings,
    sub: &str,
    role: Option<&str>,
    ttl: std::time::Duration,
) -> anyhow::Result<(String, i64)> {
    if settings.auth.algorithm != "HS256" {
        anyhow::bail!(
            "tokens can only be minted with auth.algorithm = HS256 (the SaaS mints its own otherwise)"
        );
    }
    settings.require_signing_secret()?;
    if ttl.is_zero() || ttl > settings.auth.max_token_lifetime {
        anyhow::bail!(
            "the token lifetime must be greater than zero and at most auth.max_token_lifetime ({}s)",
            settings.auth.max_token_lifetime.as_secs()
        );
    }
    let now = chrono::Utc::now().timestamp();
    let ops = role == Some("ops");
    let claims = Claims {
        sub: sub.to_owned(),
        iss: settings.auth.issuer.clone(),
        aud: if ops {
            settings.auth.ops_audience.clone()
        } else {
            settings.auth.audience.clone()
        },
        exp: now + ttl.as_secs() as i64,
        iat: Some(now),
        nbf: None,
        role: role.map(str::to_owned),
    };
    let key = EncodingKey::from_secret(settings.auth.hs256_secret.expose_secret().as_bytes())?;
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)?;
    Ok((token, claims.exp))
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    Ok(token.to_owned())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState is not registered")))
}

fn claims(req: &HttpRequest) -> Result<Claims, ApiError> {
    let token = bearer(req)?;
    state(req)?.jwt.verify(&token)
}

fn request_id(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

/// A customer: token without the ops role; the row is created on first use.
#[derive(Clone, Debug)]
pub struct CustomerAuth {
    /// The customer.
    pub customer: Customer,
    /// The request id.
    pub request_id: Option<String>,
}

impl CustomerAuth {
    /// `customer:<external id>`, for audit and idempotency.
    pub fn actor(&self) -> String {
        format!("customer:{}", self.customer.external_id)
    }
}

impl FromRequest for CustomerAuth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let claims = claims(req);
        let state = state(req);
        let request_id = request_id(req);
        let mutating = !matches!(
            *req.method(),
            actix_web::http::Method::GET | actix_web::http::Method::HEAD
        );
        Box::pin(async move {
            let claims = claims?;
            let state = state?;
            if claims.role.as_deref() == Some("ops") {
                return Err(ApiError::forbidden(
                    "customer_token_required",
                    "this endpoint acts for a customer; use a customer token",
                ));
            }
            let customer = match customers::by_external_id(&state.pool, &claims.sub).await? {
                Some(c) => c,
                None => customers::upsert(&state.pool, &claims.sub, None).await?,
            };
            if let Some(refusal) = refused(customer.status) {
                return Err(refusal);
            }
            if mutating {
                state.rate_limits.mutation(customer.id)?;
            }
            Ok(CustomerAuth {
                customer,
                request_id,
            })
        })
    }
}

/// Why a customer in `status` may not call customer routes (`None`: active).
pub fn refused(status: CustomerStatus) -> Option<ApiError> {
    match status {
        CustomerStatus::Active => None,
        CustomerStatus::Suspended => Some(ApiError::forbidden(
            "customer_suspended",
            "this account is suspended; contact the service's support",
        )),
        CustomerStatus::Closed => Some(ApiError::forbidden(
            "customer_closed",
            "this account is closed",
        )),
    }
}

/// A verified customer token, without reading the database: for a read that finds the
/// customer in its own query (one round trip per request). The handler applies [`refused`]
/// to the status it reads.
#[derive(Clone, Debug)]
pub struct CustomerToken {
    /// The customer's external id (`sub`).
    pub sub: String,
}

impl FromRequest for CustomerToken {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(claims(req).and_then(|claims| {
            if claims.role.as_deref() == Some("ops") {
                return Err(ApiError::forbidden(
                    "customer_token_required",
                    "this endpoint acts for a customer; use a customer token",
                ));
            }
            Ok(CustomerToken { sub: claims.sub })
        }))
    }
}

/// An ops user: token with `role: "ops"`.
#[derive(Clone, Debug)]
pub struct OpsAuth {
    /// The ops user's `sub`.
    pub sub: String,
    /// The request id.
    pub request_id: Option<String>,
}

impl OpsAuth {
    /// `ops:<sub>`.
    pub fn actor(&self) -> String {
        format!("ops:{}", self.sub)
    }
}

impl FromRequest for OpsAuth {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let result = claims(req).and_then(|claims| {
            if claims.role.as_deref() == Some("ops") {
                Ok(OpsAuth {
                    sub: claims.sub,
                    request_id: request_id(req),
                })
            } else {
                Err(ApiError::forbidden(
                    "ops_role_required",
                    "this endpoint needs the ops role",
                ))
            }
        });
        std::future::ready(result)
    }
}

/// Any valid token (catalog endpoints).
#[derive(Clone, Debug)]
pub struct AnyAuth {
    /// The verified claims.
    pub claims: Claims,
}

impl FromRequest for AnyAuth {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(claims(req).map(|claims| AnyAuth { claims }))
    }
}
