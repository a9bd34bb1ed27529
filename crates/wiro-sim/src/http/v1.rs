//! `/v1/<Path>`: faults first, then authentication, then the endpoint.

use std::time::Duration;

use bytes::Bytes;
use hyper::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{
    DropConnection, HttpResult, auth, json_response, parse_json, text_response, wiro_error,
};
use crate::faults::FaultPlan;
use crate::simulator::Simulator;
use crate::world::instances::{self, str_field, uint_field};
use crate::world::{SimError, SimResult, World, billing, messages, oauth};

/// Answers one call to `endpoint` (the path after `/v1/`).
pub(super) async fn handle(
    sim: &Simulator,
    endpoint: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> HttpResult {
    let _in_flight = sim.call_begins();
    let plan = sim.faults().plan(endpoint);
    if plan.latency_ms > 0 {
        crate::latency::wait(Duration::from_millis(plan.latency_ms)).await;
    }
    sim.count_call(endpoint);
    if let Some(delay) = plan.late_apply_ms {
        // The caller hears nothing; the work happens later, as if Wiro had queued it.
        let (sim, endpoint, headers, body) = (
            sim.clone(),
            endpoint.to_owned(),
            headers.clone(),
            body.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let _ = apply(&sim, &endpoint, &headers, &body, &FaultPlan::default());
        });
        return Err(DropConnection);
    }
    let outcome = {
        if let Some(status) = plan.error_status {
            // Like a gateway in front of Wiro: an error page, and the call never reached Wiro.
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Ok(text_response(status, "simulated upstream failure"));
        }
        apply(sim, endpoint, headers, body, &plan)
    };
    if plan.stall_after_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.stall_after_ms)).await;
    }
    if plan.drop_response {
        // The work is done and recorded; the caller never hears about it.
        return Err(DropConnection);
    }
    Ok(match outcome {
        Ok(Value::Object(mut fields)) => {
            fields.insert("result".into(), json!(true));
            fields.insert("errors".into(), json!([]));
            json_response(StatusCode::OK, &Value::Object(fields))
        }
        Ok(other) => json_response(StatusCode::OK, &other),
        Err(e) => wiro_error(
            StatusCode::from_u16(e.http).unwrap_or(StatusCode::OK),
            e.code,
            &e.message,
        ),
    })
}

/// Runs the call against the world.
fn apply(
    sim: &Simulator,
    endpoint: &str,
    headers: &HeaderMap,
    body: &Bytes,
    plan: &FaultPlan,
) -> SimResult {
    let now = sim.now();
    let request = parse_json(body).map_err(|message| SimError {
        http: 400,
        code: 0,
        message,
    })?;
    if READS.contains(&endpoint) {
        read(&sim.world_read(), endpoint, headers, &request, now, plan)
    } else if ONE_INSTANCE_WRITES.contains(&endpoint) {
        let mut world = sim.world_for_one();
        let outcome = dispatch(&mut world, endpoint, headers, &request, now);
        // Deploy's instance is in its answer; the others name theirs in the body.
        let guid = match (&outcome, endpoint) {
            (Ok(answer), "UserAgent/Deploy") => answer.pointer("/useragents/0/guid"),
            (Err(_), "UserAgent/Deploy") => None,
            (_, "UserAgent/CreateExtraCreditCheckout") => request.get("useragentGuid"),
            _ => request.get("guid"),
        };
        if let Some(guid) = guid.and_then(Value::as_str) {
            world.wrote(guid);
        }
        outcome
    } else {
        dispatch(&mut sim.world(), endpoint, headers, &request, now)
    }
}

/// The endpoints that change one instance alone (its status, timers, configuration,
/// subscription or packs; Deploy creates it), besides charging the caller's wallet: the next
/// call's settle re-indexes that instance instead of walking every one.
const ONE_INSTANCE_WRITES: [&str; 8] = [
    "UserAgent/Deploy",
    "UserAgent/Update",
    "UserAgent/Start",
    "UserAgent/Stop",
    "UserAgent/CreateExtraCreditCheckout",
    "UserAgent/CancelSubscription",
    "UserAgent/UpgradePlan",
    "UserAgent/RenewSubscription",
];

/// The endpoints that change nothing: they read the world without marking it changed, so the
/// next call's settle can skip its pass over every instance.
const READS: [&str; 7] = [
    "Agent/List",
    "Agent/Detail",
    "UserAgent/MyAgents",
    "UserAgent/Detail",
    "UserAgent/Message/Detail",
    "UserAgent/Message/History",
    "UserAgent/Message/Sessions",
];

/// Answers one of [`READS`].
fn read(
    world: &World,
    endpoint: &str,
    headers: &HeaderMap,
    body: &Value,
    now: crate::SimTime,
    plan: &FaultPlan,
) -> SimResult {
    match endpoint {
        "Agent/List" => return agent_list(world, body),
        "Agent/Detail" => return agent_detail(world, body),
        _ => {}
    }
    let caller = auth::authenticate(world, headers)?;
    match endpoint {
        "UserAgent/MyAgents" => instances::my_agents(
            world,
            &caller,
            body,
            now,
            Duration::from_millis(plan.list_lag_ms),
        ),
        "UserAgent/Detail" => instances::detail(world, &caller, body, now),
        "UserAgent/Message/Detail" => messages::detail(world, &caller, body),
        "UserAgent/Message/History" => messages::history(world, &caller, body),
        "UserAgent/Message/Sessions" => messages::sessions(world, &caller, body),
        _ => unreachable!("READS lists only the endpoints answered here"),
    }
}

fn dispatch(
    world: &mut World,
    endpoint: &str,
    headers: &HeaderMap,
    body: &Value,
    now: crate::SimTime,
) -> SimResult {
    let caller = auth::authenticate(world, headers)?;
    if let Some(call) = endpoint.strip_prefix("UserAgentOAuth/") {
        return oauth_call(world, &caller, call, headers, body, now);
    }
    match endpoint {
        "UserAgent/Deploy" => instances::deploy(world, &caller, body, now),
        "UserAgent/Update" => instances::update(world, &caller, body, now),
        "UserAgent/Start" => instances::start(world, &caller, body, now),
        "UserAgent/Stop" => instances::stop(world, &caller, body, now),
        "UserAgent/CreateExtraCreditCheckout" => billing::extra_credits(world, &caller, body, now),
        "UserAgent/CancelSubscription" => billing::cancel(world, &caller, body, now),
        "UserAgent/UpgradePlan" => billing::upgrade(world, &caller, body, now),
        "UserAgent/RenewSubscription" => billing::renew(world, &caller, body, now),
        "UserAgent/Message/Send" => messages::send(world, &caller, body, now),
        "UserAgent/Message/Cancel" => messages::cancel(world, &caller, body),
        "UserAgent/Message/DeleteSession" => messages::delete_session(world, &caller, body),
        _ => Err(SimError {
            http: 404,
            code: 0,
            message: "Error parsing url.".to_owned(),
        }),
    }
}

/// `Agent/List`: active templates, filtered, sorted and paged.
fn agent_list(world: &World, body: &Value) -> SimResult {
    let search = str_field(body, "search").map(str::to_lowercase);
    let category = str_field(body, "category");
    let column = str_field(body, "sort").unwrap_or("id");
    let ascending = str_field(body, "order").is_some_and(|o| o.eq_ignore_ascii_case("asc"));
    let limit = uint_field(body, "limit").unwrap_or(20).clamp(1, 1000) as usize;
    let start = uint_field(body, "start").unwrap_or(0) as usize;
    let mut rows: Vec<_> = world
        .catalog
        .templates
        .iter()
        .filter(|t| t.is_active())
        .filter(|t| category.is_none_or(|c| t.categories.iter().any(|x| x == c)))
        .filter(|t| {
            search.as_ref().is_none_or(|q| {
                let description = t
                    .rest
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                t.title.to_lowercase().contains(q) || description.to_lowercase().contains(q)
            })
        })
        .collect();
    rows.sort_by_key(|t| t.sort_key(column));
    if !ascending {
        rows.reverse();
    }
    let total = rows.len();
    let agents: Vec<Value> = rows
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|t| t.list_json())
        .collect();
    Ok(json!({"total": total, "agents": agents}))
}

/// `Agent/Detail`: by slug (wins) or guid; trimmed unless `type: "full"`.
fn agent_detail(world: &World, body: &Value) -> SimResult {
    let template = match (str_field(body, "slug"), str_field(body, "guid")) {
        (Some(slug), _) => world.catalog.by_slug(slug),
        (None, Some(guid)) => world.catalog.by_guid(guid),
        (None, None) => None,
    }
    .ok_or_else(|| SimError::refuse("Agent not found"))?;
    if !template.is_active() {
        return Err(SimError::refuse("Agent not found or inactive"));
    }
    let full = str_field(body, "type") == Some("full");
    Ok(json!({"agents": [template.detail_json(full)]}))
}

/// `UserAgentOAuth/<call>`: `{P}Connect`, `{P}Status`, `{P}Disconnect`, `TokenRefresh` and the
/// finalize calls.
fn oauth_call(
    world: &mut World,
    caller: &instances::Caller,
    call: &str,
    headers: &HeaderMap,
    body: &Value,
    now: crate::SimTime,
) -> SimResult {
    if call == "TokenRefresh" {
        return oauth::token_refresh(world, caller, body, now);
    }
    if let Some(result) = oauth::finalize(world, caller, call, body, now) {
        return result;
    }
    let split = ["Connect", "Status", "Disconnect"]
        .iter()
        .find_map(|verb| call.strip_suffix(verb).map(|code| (code, *verb)))
        .and_then(|(code, verb)| oauth::by_code(code).map(|p| (p, verb)));
    let not_found = || SimError {
        http: 404,
        code: 0,
        message: "Error parsing url.".to_owned(),
    };
    let (provider, verb) = split.ok_or_else(not_found)?;
    match verb {
        "Connect" => {
            // The consent page is served by the simulator, at the address the caller used.
            let host = headers
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            oauth::connect(
                world,
                caller,
                provider,
                body,
                &format!("http://{host}"),
                now,
            )
        }
        "Status" => oauth::status(world, caller, provider, body),
        _ => oauth::disconnect(world, caller, provider, body, now),
    }
}
