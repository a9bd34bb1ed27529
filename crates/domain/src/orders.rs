//! Orders: one instance per order, created together with its provisioning job in one
//! transaction, singly or as a keyed batch.

use std::collections::HashMap;

use crate::config::LimitSettings;
use crate::db::audit::{self, NewAudit};
use crate::db::batches::{self, Batch};
use crate::db::customers;
use crate::db::idempotency::AnswerIn;
use crate::db::instances::{self, Instance, NewInstance};
use crate::error::{Error, Result};
use crate::ids::{CustomerId, InstanceId};
use crate::jobs;
use crate::model::Plan;
use crate::sealed::{PendingConfig, Sealer};

/// The most orders one batch may carry.
pub const MAX_BATCH: usize = 10_000;

/// A catalog template resolved for an order: the guid Deploy takes and the price it charges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTemplate {
    /// Template guid.
    pub guid: String,
    /// Template slug.
    pub slug: String,
    /// The ordered plan's price, in cents.
    pub price_cents: i64,
}

/// What a customer orders.
#[derive(Clone, Debug)]
pub struct Order {
    /// Plan.
    pub plan: Plan,
    /// Display title (validated).
    pub title: String,
    /// Credentials and custom skills to set after Deploy.
    pub config: PendingConfig,
}

/// Who acts, for the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    /// `customer:<ext>`, `ops:<sub>`, `worker:<name>`.
    pub name: &'a str,
    /// Request or job id.
    pub request_id: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// The audit entry of a successful `action` of this actor on `target`.
    pub fn audit(
        self,
        action: &'a str,
        target: String,
        detail: serde_json::Value,
    ) -> crate::db::audit::NewAudit<'a> {
        crate::db::audit::NewAudit {
            actor: self.name,
            action,
            target: Some(target),
            request_id: self.request_id,
            outcome: "ok",
            detail,
        }
    }
}

/// Trims and checks a title: 1–200 characters, no control characters.
///
/// # Errors
/// [`Error::Invalid`] naming the field.
pub fn validate_title(title: &str) -> Result<String> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(Error::Invalid("title must be 1 to 200 characters".into()));
    }
    if title.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "title must not contain control characters".into(),
        ));
    }
    Ok(title.to_owned())
}

fn new_instance(
    sealer: &Sealer,
    customer_id: CustomerId,
    order: &Order,
    template: &ResolvedTemplate,
) -> Result<NewInstance> {
    let id = InstanceId::new();
    let pending_config = if order.config.is_empty() {
        None
    } else {
        Some(sealer.seal(id, &order.config)?)
    };
    Ok(NewInstance {
        id,
        customer_id,
        template_guid: template.guid.clone(),
        template_slug: template.slug.clone(),
        plan: order.plan,
        title: order.title.clone(),
        price_cents: template.price_cents,
        pending_config,
    })
}

/// An order and the template it resolved to.
#[derive(Clone, Copy, Debug)]
pub struct Purchase<'a> {
    /// What the customer asked for.
    pub order: &'a Order,
    /// The template, as the catalog priced it.
    pub template: &'a ResolvedTemplate,
}

/// Creates the instance (`pending`), its provisioning job, an audit entry and — with `answer`
/// — the Idempotency-Key's answer, atomically: a key whose order committed always answers
/// with it, so a late retry never orders twice. A customer over its limits
/// ([`crate::limits`]) orders nothing.
///
/// # Errors
/// Database or queue errors; nothing is written on error.
pub async fn place_order(
    pool: &sqlx::PgPool,
    sealer: &Sealer,
    customer_id: CustomerId,
    Purchase { order, template }: Purchase<'_>,
    actor: Actor<'_>,
    limits: &LimitSettings,
    answer: Option<&AnswerIn<'_, Instance>>,
) -> Result<Instance> {
    let row = new_instance(sealer, customer_id, order, template)?;
    let id = row.id;
    let mut tx = pool.begin().await?;
    crate::limits::check_order(&mut tx, customer_id, limits, template.price_cents).await?;
    instances::insert_many(&mut *tx, std::slice::from_ref(&row)).await?;
    jobs::enqueue_provision(&mut tx, &[id]).await?;
    audit::record(
        &mut *tx,
        NewAudit {
            actor: actor.name,
            action: "order.create",
            target: Some(format!("instance:{id}")),
            request_id: actor.request_id,
            outcome: "ok",
            detail: serde_json::json!({"template": template.slug, "plan": order.plan}),
        },
    )
    .await?;
    let instance = instances::get(&mut *tx, id)
        .await?
        .ok_or(Error::NotFound("instance"))?;
    if let Some(answer) = answer {
        answer.store(&mut *tx, &instance).await?;
    }
    tx.commit().await?;
    Ok(instance)
}

/// One order of a batch.
#[derive(Clone, Debug)]
pub struct BatchOrder {
    /// The customer's external id (created when unknown).
    pub customer: String,
    /// The order.
    pub order: Order,
    /// Its template.
    pub template: ResolvedTemplate,
}

/// Submits a batch: creates missing customers, one instance and one job per order, all in one
/// transaction. The same `key` again returns the first batch (`false`) and creates nothing.
///
/// # Errors
/// [`Error::Invalid`] for an empty or oversized batch or a bad customer id; database errors.
pub async fn submit_batch(
    pool: &sqlx::PgPool,
    sealer: &Sealer,
    key: Option<&str>,
    orders: &[BatchOrder],
    actor: Actor<'_>,
) -> Result<(Batch, bool)> {
    if orders.is_empty() || orders.len() > MAX_BATCH {
        return Err(Error::Invalid(format!(
            "items must hold 1 to {MAX_BATCH} orders"
        )));
    }
    for (i, order) in orders.iter().enumerate() {
        customers::validate_external_id(&order.customer)
            .map_err(|e| Error::Invalid(format!("items[{i}].customer: {e}")))?;
    }
    let mut tx = pool.begin().await?;
    // A chunk's orders share a progress shard, so chunks' writes never deadlock on them.
    let shard_span = jobs::BULK_CHUNK as i16;
    let Some(batch) =
        batches::insert(&mut *tx, key, actor.name, orders.len() as i32, shard_span).await?
    else {
        drop(tx);
        let key = key.unwrap_or_default();
        let existing = batches::by_key(pool, key)
            .await?
            .ok_or(Error::NotFound("batch"))?;
        return Ok((existing, false));
    };
    let external: Vec<String> = orders.iter().map(|o| o.customer.clone()).collect();
    customers::ensure_all(&mut *tx, &external).await?;
    let ids: HashMap<String, CustomerId> = sqlx::query_as::<_, (String, CustomerId)>(
        "SELECT external_id, id FROM customers WHERE external_id = ANY($1)",
    )
    .bind(&external)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let rows = orders
        .iter()
        .map(|o| new_instance(sealer, ids[&o.customer], &o.order, &o.template))
        .collect::<Result<Vec<_>>>()?;
    instances::insert_batch(&mut *tx, batch.id, shard_span, &rows).await?;
    let instance_ids: Vec<InstanceId> = rows.iter().map(|r| r.id).collect();
    // The bulk lane, in chunks: customers' own orders and actions go first.
    jobs::enqueue_chunks(&mut tx, &instance_ids).await?;
    audit::record(
        &mut *tx,
        NewAudit {
            actor: actor.name,
            action: "batch.create",
            target: Some(format!("batch:{}", batch.id)),
            request_id: actor.request_id,
            outcome: "ok",
            detail: serde_json::json!({"total": orders.len(), "key": key}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((batch, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(validate_title("  Shop bot ").unwrap(), "Shop bot");
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"x".repeat(201)).is_err());
        assert!(validate_title("bad\u{7}bell").is_err());
    }
}
