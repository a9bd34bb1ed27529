//! `/admin`: clock, faults, wallets, ledger and instance controls. JSON, no auth; never mixed
//! with `/v1`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{json_response, parse_json};
use crate::clock::DAY_MS;
use crate::faults::FaultSpec;
use crate::simulator::Simulator;

#[derive(Deserialize)]
struct Advance {
    days: Option<f64>,
    seconds: Option<f64>,
}

#[derive(Deserialize)]
struct Wallet {
    balance: f64,
}

#[derive(Deserialize)]
struct ForceStatus {
    status: i64,
}

#[derive(Deserialize)]
struct Checkout {
    plan: Option<String>,
}

#[derive(Deserialize)]
struct Consume {
    credits: i64,
}

/// An admin failure: status and message.
struct AdminError(StatusCode, String);

fn bad_request(message: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, message.into())
}

fn not_found(message: impl Into<String>) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, message.into())
}

fn ok(body: &Value) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, body)
}

fn body_as<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, AdminError> {
    let value = parse_json(body).map_err(bad_request)?;
    serde_path_to_error::deserialize(value)
        .map_err(|e| bad_request(format!("invalid body at `{}`: {}", e.path(), e.inner())))
}

/// Answers `method` on `/admin{path}`.
pub(super) fn handle(
    sim: &Simulator,
    method: &Method,
    path: &str,
    body: &Bytes,
) -> Response<Full<Bytes>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (method, segments.as_slice()) {
        (&Method::POST, ["faults"]) => body_as::<FaultSpec>(body).and_then(|spec| {
            sim.add_fault(spec)
                .map(|id| ok(&json!({"id": id})))
                .map_err(bad_request)
        }),
        (&Method::GET, ["faults"]) => Ok(ok(&json!(sim.fault_rules()))),
        (&Method::DELETE, ["faults"]) => {
            sim.clear_faults();
            Ok(ok(&json!({"cleared": true})))
        }
        (&Method::POST, ["clock", "advance"]) => body_as::<Advance>(body).and_then(|a| {
            let ms = a.days.unwrap_or(0.0) * DAY_MS as f64 + a.seconds.unwrap_or(0.0) * 1000.0;
            if !ms.is_finite() || ms < 0.0 {
                return Err(bad_request("days and seconds must be non-negative numbers"));
            }
            let now = sim.advance_ms(ms as i64);
            Ok(ok(&json!({"now": now / 1000})))
        }),
        (&Method::GET, ["clock"]) => Ok(ok(&json!({"now": sim.now() / 1000}))),
        (&Method::POST, ["clock", "freeze"]) => Ok(ok(&json!({"now": sim.freeze_clock() / 1000}))),
        (&Method::POST, ["clock", "resume"]) => Ok(ok(&json!({"now": sim.resume_clock() / 1000}))),
        (&Method::GET, ["ledger"]) => Ok(ok(&json!(sim.ledger()))),
        (&Method::GET, ["accounts"]) => Ok(ok(&json!(sim.accounts()))),
        (&Method::POST, ["accounts", key, "wallet"]) => body_as::<Wallet>(body).and_then(|w| {
            sim.set_wallet(key, w.balance).map_err(|e| {
                if e.starts_with("no account") {
                    not_found(e)
                } else {
                    bad_request(e)
                }
            })?;
            Ok(ok(&json!({"api_key": key, "wallet": w.balance})))
        }),
        (&Method::GET, ["agents"]) => Ok(ok(&json!(sim.instances()))),
        (&Method::POST, ["agents", guid, "status"]) => body_as::<ForceStatus>(body).and_then(|s| {
            sim.force_status(guid, s.status).map_err(bad_request)?;
            Ok(ok(&json!({"guid": guid, "status": s.status})))
        }),
        (&Method::POST, ["agents", guid, "consume"]) => body_as::<Consume>(body).and_then(|c| {
            sim.consume_credits(guid, c.credits).map_err(bad_request)?;
            Ok(ok(&json!({"guid": guid, "consumed": c.credits})))
        }),
        (&Method::POST, ["agents", guid, "checkout"]) => body_as::<Checkout>(body).and_then(|c| {
            let plan = c.plan.unwrap_or_else(|| "starter".to_owned());
            sim.complete_checkout(guid, &plan).map_err(bad_request)?;
            Ok(ok(&json!({"guid": guid, "plan": plan})))
        }),
        (&Method::DELETE, ["agents", guid]) => sim
            .delete_instance(guid)
            .map(|()| ok(&json!({"deleted": guid})))
            .map_err(not_found),
        (&Method::GET, ["calls"]) => Ok(ok(&json!(sim.call_counts()))),
        _ => Err(not_found(format!("no admin route {method} /admin{path}"))),
    };
    result.unwrap_or_else(|AdminError(status, message)| {
        json_response(status, &json!({"error": message}))
    })
}
