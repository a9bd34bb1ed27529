//! Deploy under the protocol (`crate::protocol`). Deploy charges the wallet and has no
//! idempotency key, so:
//!
//! - the **correlator** `[wr:<operation id>]` goes in the upstream description (with the order's
//!   id): customers cannot edit it through us and never read it in a chat;
//! - a lost answer is judged after the lease by **searching**: MyAgents rows of the order's
//!   template and title that we do not know yet, each confirmed by Detail (MyAgents does not
//!   return descriptions). "Absent" needs two negative searches a quiet period apart, so a
//!   Deploy applied late or a lagging list is still found;
//! - an instance carrying the order's correlator but found after the order already has one is a
//!   **duplicate**: cancelled at Wiro (it never renews), its charge booked as
//!   `duplicate_deploy`, ops alerted.

use chrono::DateTime;
use domain::config::FailedDeployPolicy;
use domain::db::alerts;
use domain::db::instances::{self, Change, Instance, parse_description, upstream_description};
use domain::db::ledger::{self, NewCharge};
use domain::db::operations::{NewOperation, Operation, Settlement};
use domain::db::upstream;
use domain::ids::OperationId;
use domain::model::{ChargeKind, InstanceState, OperationKind, OperationState};
use futures::TryStreamExt;
use serde_json::json;
use wiro_client::models::{DeployRequest, UserAgent};
use wiro_client::{Outcome, WiroError};

use crate::Services;
use crate::observe::PERIOD;
use crate::protocol::{self, Effects, Evidence, Judged};

pub mod chunk;

/// How a Deploy call ended.
#[derive(Debug)]
pub enum Deployed {
    /// Recorded (by us, or by whoever settled first), with the instance as our settlement left
    /// it when it was ours.
    Done(Option<Box<Instance>>),
    /// Another Deploy of the order is unresolved.
    InFlight,
    /// The answer was lost: judged after the lease.
    InDoubt,
    /// Not sent (the deadline had passed): nothing happened.
    NotSent,
    /// Wiro refused; nothing happened.
    Refused(wiro_client::Error),
}

/// The facts of a Deploy intent.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Snapshot {
    title: String,
    template: String,
    plan: String,
}

/// Sends the order's Deploy under a new intent. A `pending` order moves to `deploying` with
/// the intent (pending means no intent was ever written); one its customer deleted is not
/// deployed (`InFlight`: the caller reads it again and stops it).
///
/// # Errors
/// Database errors.
pub async fn deploy(services: &Services, instance: &Instance) -> domain::Result<Deployed> {
    let actor = services.actor();
    let intent = NewOperation {
        instance: instance.id,
        kind: OperationKind::Deploy,
        worker: &services.worker_name,
        actor: &actor,
        request_id: None,
        lease: services.settings.provisioning.deploy_lease,
        detail: snapshot(instance),
        // The snapshot (and the price charged) must be the order as it is.
        fence: Some(instance.version),
    };
    let Some(held) = protocol::begin(services, intent, None, None).await? else {
        return Ok(Deployed::InFlight);
    };
    let answer = held
        .client(services)
        .deploy(&request(instance, &held.op))
        .await;
    answered(services, &held.op, instance, answer).await
}

/// The facts of `instance`'s Deploy intent.
fn snapshot(instance: &Instance) -> serde_json::Value {
    let snapshot = Snapshot {
        title: instance.title.clone(),
        template: instance.template_slug.clone(),
        plan: instance.plan.as_str().to_owned(),
    };
    serde_json::to_value(&snapshot).unwrap_or_default()
}

/// The Deploy of `instance` under `op`: the order as its intent recorded it, with the
/// correlator.
fn request(instance: &Instance, op: &Operation) -> DeployRequest {
    DeployRequest {
        agentguid: instance.template_guid.clone(),
        title: instance.title.clone(),
        description: Some(upstream_description(instance.id, op.id)),
        useprepaid: true,
        plan: instance.plan.as_str().to_owned(),
        pinned: Some(false),
    }
}

/// Turns the answer to `op`'s Deploy into its outcome, recording it.
async fn answered(
    services: &Services,
    op: &Operation,
    instance: &Instance,
    answer: Result<UserAgent, wiro_client::Error>,
) -> domain::Result<Deployed> {
    match answer {
        Ok(agent) => {
            let recorded =
                record(services, op, instance, &agent, OperationState::Succeeded).await?;
            Ok(Deployed::Done(recorded.map(Box::new)))
        }
        Err(error) if error.outcome() == Outcome::NotApplied => {
            let reason = error.to_string();
            Ok(
                if protocol::not_applied(services, op, &error, reason).await? {
                    Deployed::NotSent
                } else {
                    Deployed::Refused(error)
                },
            )
        }
        Err(error) => {
            protocol::lost(services, op, &error).await?;
            Ok(Deployed::InDoubt)
        }
    }
}

/// Records `agent` as the order's instance and the Deploy charge, settling `op` — or, when the
/// order already has another instance, contains `agent` as a duplicate. Returns the instance
/// as this settlement left it (`None` when someone else settled first).
async fn record(
    services: &Services,
    op: &Operation,
    instance: &Instance,
    agent: &UserAgent,
    state: OperationState,
) -> domain::Result<Option<Instance>> {
    let paid_until = paid_until(agent);
    let settlement = Settlement {
        state,
        wiro_guid: Some(agent.guid.clone()),
        result: json!({"wiro_guid": agent.guid}),
        error: None,
    };
    let effects = Effects {
        charges: vec![charge(instance, &agent.guid, op.id)],
        deployed: Some((&agent.guid, agent.status.code() as i16, paid_until)),
        ..Effects::default()
    };
    if let Some(written) = protocol::settle_written(services, op, settlement, effects).await? {
        tracing::info!(instance = %instance.id, wiro_guid = %agent.guid, %state, "deployed");
        if let Some(recorded) = &written.deployed
            && recorded.state == InstanceState::Failed
        {
            after_failure(services, recorded).await?;
            return Ok(None);
        }
        return Ok(written.deployed);
    }
    let current = instances::get(&services.pool, instance.id).await?;
    if current.and_then(|i| i.wiro_guid).as_deref() != Some(agent.guid.as_str()) {
        contain(services, instance, agent, Some(op.id)).await?;
    }
    Ok(None)
}

/// The end of the period a Deploy paid for: one period from the instance's creation, so a
/// renewal before we first look at the subscription is still seen (and booked) as one.
fn paid_until(agent: &UserAgent) -> Option<DateTime<chrono::Utc>> {
    agent
        .createdat
        .and_then(|t| DateTime::from_timestamp(t.0, 0))
        .map(|t| t + PERIOD)
}

/// The Deploy charge of `instance` (as its intent read it) under `op`.
fn charge<'a>(instance: &Instance, guid: &'a str, op: OperationId) -> NewCharge<'a> {
    NewCharge {
        customer_id: instance.customer_id,
        instance_id: instance.id,
        kind: ChargeKind::Deploy,
        amount_cents: instance.price_cents,
        reference: ledger::deploy_reference(instance.id, instance.generation),
        wiro_guid: Some(guid),
        operation_id: Some(op),
        estimated: false,
    }
}

/// A Deploy landed for an order that was given up meanwhile (`instance`, as the settlement
/// recorded it, is `failed`): adopt it (provisioning resumes) or cancel its subscription, by
/// `provisioning.failed_deploy_policy`.
async fn after_failure(services: &Services, instance: &Instance) -> domain::Result<()> {
    let id = instance.id;
    let subject = alerts::instance_subject(id);
    let detail = json!({"wiro_guid": instance.wiro_guid, "policy": services.settings.provisioning.failed_deploy_policy});
    alerts::raise(
        &services.pool,
        "deploy_landed_after_failure",
        &subject,
        Some(id),
        detail,
    )
    .await?;
    match services.settings.provisioning.failed_deploy_policy {
        FailedDeployPolicy::Adopt => {
            let mut tx = services.pool.begin().await?;
            instances::update(
                &mut *tx,
                id,
                instance.version,
                Change::to(InstanceState::Configuring),
            )
            .await?;
            domain::jobs::enqueue_provision(&mut tx, &[id]).await?;
            tx.commit().await?;
        }
        FailedDeployPolicy::Cancel => {
            if let Some(guid) = &instance.wiro_guid
                && let Err(e) = services.wiro.cancel_subscription(guid).await
            {
                tracing::warn!(instance = %id, error = %e, "could not cancel a failed order's instance; reconciliation retries");
            }
        }
    }
    Ok(())
}

/// Takes an upstream instance carrying the order's correlator that we did not know — a
/// database restored from a backup older than the Deploy — as the order's, with its charge,
/// and hands the order to provisioning. When a Deploy of the order is still unresolved, its
/// own judgement adopts the instance instead.
///
/// # Errors
/// Database errors.
pub async fn readopt(
    services: &Services,
    instance: &Instance,
    agent: &UserAgent,
) -> domain::Result<()> {
    let actor = services.actor();
    let intent = NewOperation {
        instance: instance.id,
        kind: OperationKind::Deploy,
        worker: &services.worker_name,
        actor: &actor,
        request_id: None,
        lease: std::time::Duration::ZERO,
        detail: json!({"title": agent.title, "readopted": agent.guid}),
        fence: None,
    };
    if let Some(held) = protocol::begin(services, intent, None, None).await? {
        tracing::warn!(instance = %instance.id, wiro_guid = %agent.guid, "re-adopting an instance our records lost");
        record(services, &held.op, instance, agent, OperationState::Adopted).await?;
    }
    let mut conn = services.pool.acquire().await?;
    domain::jobs::enqueue_provision(&mut conn, &[instance.id]).await
}

/// Contains a duplicate instance of `instance`'s order: recorded, charged to us, cancelled at
/// Wiro (so it never renews), ops alerted. Safe to repeat.
///
/// # Errors
/// Database errors (a failed cancel is retried by reconciliation).
pub async fn contain(
    services: &Services,
    instance: &Instance,
    agent: &UserAgent,
    op: Option<OperationId>,
) -> domain::Result<()> {
    let mut tx = services.pool.begin().await?;
    // Read under the row lock: the instance may have been recorded as the order's own since
    // the caller looked (a search and a reconciliation can meet on one new instance).
    let Some(current) = instances::lock(&mut *tx, instance.id).await? else {
        return Ok(());
    };
    if current.wiro_guid.as_deref() == Some(agent.guid.as_str()) {
        return Ok(());
    }
    if upstream::record_duplicate(&mut *tx, &agent.guid, instance.id, op).await? {
        ledger::record(
            &mut *tx,
            NewCharge {
                customer_id: instance.customer_id,
                instance_id: instance.id,
                kind: ChargeKind::DuplicateDeploy,
                amount_cents: instance.price_cents,
                reference: ledger::duplicate_reference(&agent.guid),
                wiro_guid: Some(&agent.guid),
                operation_id: op,
                estimated: false,
            },
        )
        .await?;
        let subject = format!("wiro:{}", agent.guid);
        let detail =
            json!({"order": instance.id, "mapped_guid": instance.wiro_guid, "operation": op});
        alerts::raise(
            &mut *tx,
            "upstream_duplicate",
            &subject,
            Some(instance.id),
            detail,
        )
        .await?;
        tracing::error!(instance = %instance.id, duplicate = %agent.guid, "duplicate Deploy contained");
    }
    tx.commit().await?;
    cancel_duplicate(services, &agent.guid).await
}

/// Cancels a duplicate's subscription at Wiro (free, and repeating it converges).
///
/// # Errors
/// Database errors.
pub async fn cancel_duplicate(services: &Services, guid: &str) -> domain::Result<()> {
    match services.wiro.cancel_subscription(guid).await {
        Ok(_) => upstream::duplicate_cancelled(&services.pool, guid).await,
        Err(e) if e.wiro() == Some(&WiroError::UserAgentNotFound) => {
            upstream::duplicate_cancelled(&services.pool, guid).await
        }
        Err(e) => {
            tracing::warn!(duplicate = %guid, error = %e, "could not cancel a duplicate yet");
            Ok(())
        }
    }
}

/// Judges an unresolved Deploy whose lease is over: adopts the order's instance if it exists,
/// contains any other, and counts an empty search towards "not found".
///
/// # Errors
/// Database errors.
pub async fn judge(services: &Services, op: &Operation) -> domain::Result<Judged> {
    let Some(instance) = instances::get(&services.pool, op.instance_id).await? else {
        return Ok(Judged::Unresolved);
    };
    let mut found = match search(services, &instance, op).await {
        Ok(found) => found,
        Err(e) => {
            let why = format!("the search upstream failed: {e}");
            return protocol::apply(services, op, Evidence::Unclear(why)).await;
        }
    };
    if found.is_empty() {
        let why = "no instance carries the order's correlator".to_owned();
        return protocol::apply(services, op, Evidence::Absent(why)).await;
    }
    // The oldest is the order's when it has none yet; every other one is a duplicate.
    found.sort_by_key(|agent| agent.id);
    let duplicates = if instance.wiro_guid.is_none() {
        let first = found.remove(0);
        record(services, op, &instance, &first, OperationState::Adopted).await?;
        found
    } else {
        // Recorded by another Deploy (or re-adopted): what this one made is contained.
        let settlement = protocol::ended(OperationState::Adopted, None);
        protocol::settle(services, op, settlement, Effects::default()).await?;
        found
    };
    for duplicate in &duplicates {
        contain(services, &instance, duplicate, Some(op.id)).await?;
    }
    Ok(Judged::Settled)
}

/// Upstream instances carrying `instance`'s order in their description that we do not know
/// yet (Detail of each MyAgents row of the template and title we have not seen).
async fn search(
    services: &Services,
    instance: &Instance,
    op: &Operation,
) -> Result<Vec<UserAgent>, wiro_client::Error> {
    let title = op.detail["title"]
        .as_str()
        .unwrap_or(&instance.title)
        .to_owned();
    let rows: Vec<UserAgent> = services
        .wiro
        .my_agents_pages(wiro_client::MY_AGENTS_MAX_PAGE)
        .try_concat()
        .await?;
    let candidates: Vec<String> = rows
        .into_iter()
        .filter(|row| row.title == title)
        .filter(|row| {
            row.agent
                .as_ref()
                .and_then(|a| a.slug.as_deref())
                .is_none_or(|slug| slug == instance.template_slug)
        })
        .map(|row| row.guid)
        .collect();
    let known = upstream::known(&services.pool, &candidates)
        .await
        .unwrap_or_default();
    let mut ours = Vec::new();
    for guid in candidates.iter().filter(|g| !known.contains(g)) {
        let agent = services.wiro.detail(guid).await?;
        match agent.description.as_deref().and_then(parse_description) {
            Some((order, _)) if order == instance.id => ours.push(agent),
            Some(_) => {} // another order's: its own Deploy finds it
            None => {
                let _ = upstream::record_foreign(&services.pool, guid).await;
            }
        }
    }
    Ok(ours)
}
