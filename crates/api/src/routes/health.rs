//! `/healthz` (the process is alive) and `/readyz` (database reachable, migrations applied,
//! Wiro reachable).

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;
use wiro_client::models::AgentListRequest;

use crate::state::AppState;

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// Each check and its result (`ok` or what failed).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, String>,
}

/// Liveness: answers while the process serves requests.
#[utoipa::path(tag = "health", responses((status = 200, description = "Alive.", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        checks: BTreeMap::new(),
    })
}

/// Readiness: the database answers, every migration is applied, and Wiro answers.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "Not ready; the failing checks are named.", body = Health),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut checks = BTreeMap::new();
    match domain::pending_migrations(&state.pool).await {
        Ok(missing) => {
            checks.insert("database".into(), "ok".into());
            checks.insert(
                "migrations".into(),
                if missing.is_empty() {
                    "ok".into()
                } else {
                    format!("{} not applied; run `reseller migrate`", missing.len())
                },
            );
        }
        Err(e) => {
            checks.insert("database".into(), format!("unreachable: {e}"));
        }
    }
    let request = AgentListRequest {
        limit: Some(1),
        ..Default::default()
    };
    let probe = state.wiro().list_agents(&request);
    let upstream = match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(_) => "unreachable: no answer within 5s".to_owned(),
    };
    checks.insert("upstream".into(), upstream);
    let ready = checks.values().all(|v| v == "ok");
    let body = Health {
        status: if ready { "ready" } else { "not_ready" }.into(),
        checks,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
