//! The customer's subscription and credits: read, upgrade, cancel, renew, buy a pack. Each
//! action is allowed or refused by the operator's policy (`[billing]`), runs exactly once
//! (intent, call, fenced write) and lands in the ledger and the audit log.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use domain::db::instances::Instance;
use domain::ids::OperationId;
use domain::model::{CancelSource, Pack};
use operations::billing::{self, ActionOutcome, ActionResult, BillingAction, BillingError};
use operations::protocol::Requester;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::agents::load;
use crate::auth::CustomerAuth;
use crate::dto::{AgentView, SubscriptionView};
use crate::error::{ApiError, ApiResult, Problem};
use crate::idempotency::{self, Answer, Claimed};
use crate::openapi::{AuthErrors, UpstreamErrors};
use crate::settled::InDoubt;
use crate::state::AppState;

/// The subscription and what the customer may do with it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionDetails {
    /// The subscription as last observed (absent before the first deploy).
    pub subscription: Option<SubscriptionView>,
    /// Plan ordered: `starter` or `pro`.
    pub plan: String,
    /// Monthly credits left.
    pub monthly_credits: Option<i64>,
    /// Extra credits left.
    pub extra_credits: Option<i64>,
    /// Actions the operator allows: `upgrade`, `cancel`, `downgrade`, `renew`, `credits`.
    pub allowed_actions: Vec<String>,
}

/// The result of a billing action.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingResult {
    /// The upstream operation that did it (absent when nothing had to be sent).
    pub operation_id: Option<Uuid>,
    /// `renewed`, `cancel_undone`, `upgraded`, `credits_added`, `cancelled`,
    /// `downgrade_scheduled` or `downgrade_withdrawn`.
    #[schema(value_type = String, example = "renewed")]
    pub result: ActionResult,
    /// Cents charged to the operator's Wiro wallet for it (wholesale cost): in ops' answers
    /// only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charged_cents: Option<i64>,
    /// When a cancelled subscription ends.
    pub cancels_at: Option<DateTime<Utc>>,
    /// The agent afterwards.
    pub agent: AgentView,
}

impl BillingResult {
    /// From an outcome, its operation and the instance afterwards, for a customer (no
    /// wholesale cost) or for ops.
    pub fn new(
        outcome: &ActionOutcome,
        operation: Option<OperationId>,
        instance: Instance,
        customer: &str,
        ops: bool,
    ) -> Self {
        Self {
            operation_id: operation.map(|o| o.0),
            result: outcome.result,
            charged_cents: ops.then_some(outcome.charged_cents),
            cancels_at: outcome.cancels_at,
            agent: AgentView::new(instance, customer),
        }
    }
}

/// A pack purchase.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"pack": "package1"}))]
pub struct BuyCredits {
    /// `package1`, `package2` or `package3` (see the catalog's `extra_credit_packs`).
    pub pack: String,
}

impl BuyCredits {
    /// The pack asked for.
    ///
    /// # Errors
    /// 422 naming the field when it is not a pack.
    pub(crate) fn pack(self) -> ApiResult<Pack> {
        self.pack
            .parse()
            .map_err(|_| ApiError::validation("pack: must be package1, package2 or package3"))
    }
}

fn allowed(state: &AppState) -> Vec<String> {
    let b = &state.settings.billing;
    [
        ("upgrade", b.allow_upgrade),
        ("cancel", b.allow_cancel),
        ("downgrade", b.allow_downgrade),
        ("renew", b.allow_renew),
        ("credits", b.allow_extra_credits),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name.to_owned())
    .collect()
}

/// Maps a billing failure to the caller's answer (a lost answer is not a failure: see `act`).
pub(crate) fn billing_error(error: BillingError, ops: bool) -> ApiError {
    match error {
        BillingError::NotDeployed => {
            ApiError::conflict("agent_not_deployed", "the agent is not deployed yet")
        }
        BillingError::InFlight(flight) => ApiError::conflict(
            "billing_in_progress",
            format!("another {flight} change of this agent is in progress"),
        ),
        BillingError::Pointless(code, detail) => ApiError::conflict(code, detail),
        BillingError::PackNotOffered(pack, _) => ApiError::validation(format!(
            "pack: {pack} is not offered for this agent's template"
        )),
        BillingError::Refused(e) | BillingError::Upstream(e) => ApiError::upstream(&e, ops),
        BillingError::LimitExceeded { limit, usage } => ApiError::Limit {
            name: "monthly_spend_cents",
            limit,
            usage,
        },
        BillingError::InDoubt(op) => ApiError::Internal(anyhow::anyhow!(
            "operation {op} in doubt reached the error path"
        )),
        BillingError::Internal(e) => ApiError::Internal(e),
    }
}

/// Reads the subscription.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 200, description = "Subscription, credits and allowed actions.", body = SubscriptionDetails),
        (status = 404, description = "No such agent.", body = Problem),
        AuthErrors,
    )
)]
#[get("/agents/{id}/subscription")]
pub async fn get_subscription(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let instance = load(&state, &auth, id.into_inner()).await?;
    let view = AgentView::new(instance, &auth.customer.external_id);
    Ok(HttpResponse::Ok().json(SubscriptionDetails {
        subscription: view.subscription,
        plan: view.plan.as_str().to_owned(),
        monthly_credits: view.credits.monthly,
        extra_credits: view.credits.extra,
        allowed_actions: allowed(&state),
    }))
}

async fn act(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Uuid,
    action: BillingAction,
    allowed: bool,
) -> ApiResult<HttpResponse> {
    if !allowed {
        return Err(ApiError::forbidden(
            "billing_action_disabled",
            "the operator does not allow this billing action",
        ));
    }
    let caller = auth.actor();
    let customer = auth.customer.external_id.clone();
    let who = Requester {
        actor: &caller,
        request_id: auth.request_id.as_deref(),
        capped: true,
    };
    run_action(&state, &req, who, &customer, action, async || {
        Ok((load(&state, &auth, id).await?, customer.clone()))
    })
    .await
}

/// Runs a billing action at most once per Idempotency-Key: `load` finds the agent (and its
/// customer's external id); `who` says who asks (ops are not capped, and see Wiro's text and
/// the wholesale cost). `replay_customer` scopes a settled replay's view.
pub(crate) async fn run_action(
    state: &AppState,
    req: &HttpRequest,
    who: Requester<'_>,
    replay_customer: &str,
    action: BillingAction,
    load: impl AsyncFnOnce() -> ApiResult<(Instance, String)>,
) -> ApiResult<HttpResponse> {
    let ops = !who.capped;
    idempotency::run(
        state,
        who.actor,
        req,
        &action,
        replay_customer,
        async |claim| {
            let (instance, customer) = load().await?;
            let key = claim.as_ref().map(Claimed::as_key);
            match billing::perform(&state.services, &instance, action, who, key).await {
                Ok(done) => {
                    let view = BillingResult::new(
                        &done.outcome,
                        done.operation_id,
                        done.instance,
                        &customer,
                        ops,
                    );
                    Ok(Answer::Done(
                        StatusCode::OK,
                        serde_json::to_value(view).map_err(anyhow::Error::from)?,
                    ))
                }
                Err(BillingError::InDoubt(op)) => Ok(Answer::InDoubt(op)),
                Err(e) => Err(billing_error(e, ops)),
            }
        },
    )
    .await
}

/// Upgrades Starter to Pro (the prorated difference is charged).
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Upgraded.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled (replay the Idempotency-Key).", body = InDoubt),
        (status = 402, description = "The operator's wallet cannot pay for it.", body = Problem),
        (status = 403, description = "The operator does not allow upgrades.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Already Pro (`already_pro`), over the monthly spending limit (`limit_exceeded`; nothing is charged), not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/subscription/upgrade")]
pub async fn upgrade(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let allowed = state.settings.billing.allow_upgrade;
    act(
        auth,
        state,
        req,
        id.into_inner(),
        BillingAction::Upgrade,
        allowed,
    )
    .await
}

/// Cancels at period end: the agent runs until then and is not renewed.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Cancellation scheduled.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled (replay the Idempotency-Key).", body = InDoubt),
        (status = 403, description = "The operator does not allow cancelling.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/subscription/cancel")]
pub async fn cancel(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let allowed = state.settings.billing.allow_cancel;
    act(
        auth,
        state,
        req,
        id.into_inner(),
        BillingAction::Cancel {
            source: CancelSource::Customer,
        },
        allowed,
    )
    .await
}

/// Schedules Pro → Starter at the period end (Wiro has no downgrade: "cancel and re-deploy").
/// The subscription is cancelled now (free); when the period ends the agent — same id — comes
/// back on a new Starter instance (one Starter deploy, charged then) with its title and the
/// credentials Wiro shows, and asks again for its connected accounts. Withdraw it with
/// `DELETE` before the period ends.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Downgrade scheduled (`downgrade_scheduled`, with `cancels_at`).", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled (replay the Idempotency-Key).", body = InDoubt),
        (status = 403, description = "The operator does not allow downgrades.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Not on Pro (`not_pro`), a cancellation already pending (`cancel_pending`), the subscription not active, not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/subscription/downgrade")]
pub async fn downgrade(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let allowed = state.settings.billing.allow_downgrade;
    let action = BillingAction::Downgrade {
        source: CancelSource::Customer,
    };
    act(auth, state, req, id.into_inner(), action, allowed).await
}

/// Withdraws a scheduled downgrade before the period ends: the cancel is taken back (free)
/// and the Pro plan renews as before.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Downgrade withdrawn (`downgrade_withdrawn`).", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled (replay the Idempotency-Key).", body = InDoubt),
        (status = 403, description = "The operator does not allow downgrades.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "No downgrade scheduled (`no_downgrade`), the period already ended (`downgrade_under_way`), not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[delete("/agents/{id}/subscription/downgrade")]
pub async fn withdraw_downgrade(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let allowed = state.settings.billing.allow_downgrade;
    let action = BillingAction::WithdrawDowngrade;
    act(auth, state, req, id.into_inner(), action, allowed).await
}

/// Renews an expired subscription (charged), or takes back a pending cancellation (free).
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Renewed, or the cancellation taken back.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled (replay the Idempotency-Key).", body = InDoubt),
        (status = 402, description = "The operator's wallet cannot pay for it.", body = Problem),
        (status = 403, description = "The operator does not allow renewing.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Active with no cancellation to take back (`subscription_already_active`), over the monthly spending limit (`limit_exceeded`), not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/subscription/renew")]
pub async fn renew(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let allowed = state.settings.billing.allow_renew;
    act(
        auth,
        state,
        req,
        id.into_inner(),
        BillingAction::Renew,
        allowed,
    )
    .await
}

/// Buys an extra-credit pack (Pro only; packs expire after 6 months).
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the purchase safe to retry.")),
    request_body = BuyCredits,
    responses(
        (status = 200, description = "Credits added.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled (replay the Idempotency-Key).", body = InDoubt),
        (status = 402, description = "The operator's wallet cannot pay for it.", body = Problem),
        (status = 403, description = "The operator does not allow buying packs.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Starter plan, over the monthly spending limit (`limit_exceeded`; nothing is charged), not deployed, or another purchase in progress.", body = Problem),
        (status = 422, description = "Unknown pack, or a pack not offered for this template.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/credits")]
pub async fn buy_credits(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Json<BuyCredits>,
) -> ApiResult<HttpResponse> {
    let pack = body.into_inner().pack()?;
    let allowed = state.settings.billing.allow_extra_credits;
    act(
        auth,
        state,
        req,
        id.into_inner(),
        BillingAction::ExtraCredits { pack },
        allowed,
    )
    .await
}
