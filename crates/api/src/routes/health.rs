//! `/healthz` (the process is alive) and `/readyz` (this process can serve: database reachable,
//! migrations applied). Wiro's health is not readiness — an upstream outage must not take every
//! pod out of rotation — it shows in the upstream metrics and `reseller doctor`. Neither echoes
//! database or upstream error text (that goes to the logs).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

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

/// Readiness: the database answers and every migration is applied.
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
                    "not all applied".into()
                },
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the database is unreachable");
            checks.insert("database".into(), "unreachable".into());
        }
    }
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
