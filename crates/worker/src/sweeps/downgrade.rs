//! The end of a downgrade's period (Wiro: "cancel and re-deploy"). The downgrade's cancel took
//! effect and the Pro instance expired, so the same agent — our id — starts over on the plan it
//! asked for: the expired instance's guid goes to the agent's history, and the agent becomes a
//! `pending` order again, which provisioning deploys through the exactly-once protocol (a new
//! Deploy operation of the next generation, charged as `deploy:<agent>:<generation>`).
//!
//! It carries the title and what Wiro shows of the configuration: user-editable credential
//! values and custom skills. Secrets Wiro never shows (`appSecret`, OAuth tokens) cannot be
//! carried, and OAuth connections belong to the old instance: the agent asks for them again
//! (`awaiting_credentials` / `awaiting_connection`).

use anyhow::Context as _;
use domain::db::audit::{self, NewAudit};
use domain::db::instances::{self, Instance};
use domain::db::operations as intents;
use domain::sealed::PendingConfig;
use operations::Services;
use operations::observe::cents;
use serde_json::json;
use wiro_client::models::{
    AgentConfiguration, AgentStatus, CredentialValues, CustomSkillValue, UserAgent,
};

/// Switches `instance` to its next generation if its downgrade is due. Anything unresolved on
/// the agent (a pack, a message send) is settled first: the next sweep comes back.
///
/// # Errors
/// Database and upstream failures (the next sweep retries).
pub(super) async fn switch(ctx: &Services, instance: &Instance) -> anyhow::Result<()> {
    let (Some(plan), Some(guid)) = (instance.downgrade_to.0, instance.wiro_guid.as_deref()) else {
        return Ok(());
    };
    if intents::any_unresolved(&ctx.pool, instance.id).await? {
        tracing::info!(instance = %instance.id, "downgrade due; waiting for unresolved operations");
        return Ok(());
    }
    let old = ctx.wiro.detail(guid).await?;
    if matches!(old.status, AgentStatus::Running | AgentStatus::Starting) {
        // Expired but still up: it must not answer for the agent once the new one runs.
        ctx.wiro.stop(guid).await?;
    }
    let price_cents = plan_price(&old, plan.as_str())
        .with_context(|| format!("Wiro's Detail of {guid} shows no {plan} price"))?;
    let carried = carry_over(old.configuration.as_ref());
    let sealed = if carried.is_empty() {
        None
    } else {
        Some(ctx.sealer.seal(instance.id, &carried)?)
    };
    let mut tx = ctx.pool.begin().await?;
    let Some(next) = instances::begin_generation(
        &mut tx,
        instance.id,
        instance.version,
        plan,
        price_cents,
        sealed,
    )
    .await?
    else {
        return Ok(()); // changed meanwhile: the next sweep looks again
    };
    domain::jobs::enqueue_provision(&mut tx, &[instance.id]).await?;
    audit::record(
        &mut *tx,
        NewAudit {
            actor: &ctx.actor(),
            action: "subscription.downgrade",
            target: Some(format!("instance:{}", instance.id)),
            request_id: None,
            outcome: "switched",
            detail: json!({
                "from_plan": instance.plan, "to_plan": plan, "previous_wiro_guid": guid,
                "generation": next.generation, "price_cents": price_cents,
                "carried_credential_groups": carried.credentials.0.keys().collect::<Vec<_>>(),
            }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(instance = %instance.id, previous = %guid, generation = next.generation, %plan, "downgrade due: deploying the new plan");
    Ok(())
}

/// The price of `plan` (`starter`, `pro`) in the template pricing Detail shows.
fn plan_price(agent: &UserAgent, plan: &str) -> Option<i64> {
    let pricing = agent.agent.as_ref()?.pricing.as_ref()?;
    let price = match plan {
        "starter" => pricing.starter.as_ref(),
        "pro" => pricing.pro.as_ref(),
        _ => None,
    }?;
    Some(cents(price.price))
}

/// What can be carried to a new instance from Wiro's sanitized configuration: user-editable
/// credential values that are set, and the content and switch of user-editable custom skills.
pub(crate) fn carry_over(configuration: Option<&AgentConfiguration>) -> PendingConfig {
    let Some(config) = configuration else {
        return PendingConfig::default();
    };
    let credentials = config
        .credentials
        .iter()
        .map(|(name, group)| {
            let fields = group
                .editable
                .iter()
                .filter(|(_, editable)| **editable)
                .filter_map(|(field, _)| {
                    let value = group.fields.get(field)?;
                    let set = match value {
                        serde_json::Value::String(s) => !s.trim().is_empty(),
                        serde_json::Value::Null => false,
                        serde_json::Value::Array(a) => !a.is_empty(),
                        serde_json::Value::Object(o) => !o.is_empty(),
                        _ => true,
                    };
                    set.then(|| (field.clone(), value.clone()))
                })
                .collect::<std::collections::BTreeMap<_, _>>();
            (name.clone(), fields)
        })
        .filter(|(_, fields)| !fields.is_empty())
        .collect();
    let custom_skills = config
        .custom_skills
        .iter()
        .filter(|skill| skill.editable == Some(true))
        .map(|skill| CustomSkillValue {
            key: skill.key.clone(),
            value: skill.value.clone(),
            enabled: skill.enabled,
        })
        .collect();
    PendingConfig {
        credentials: CredentialValues(credentials),
        custom_skills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editable_values_that_are_set_are_carried_and_nothing_else() {
        let config: AgentConfiguration = serde_json::from_value(json!({
            "credentials": {
                "instagram": {"_editable": {"authMethod": true, "appId": true, "appSecret": true},
                              "optional": false, "authMethod": "own", "appId": "123",
                              "igUsername": "shop", "connectedAt": "2026-11-01T00:00:00Z"},
                "wiro": {"_editable": {"apiKey": false}, "apiKey": ""},
                "brevo": {"_editable": {"apiKey": true}, "optional": true, "apiKey": ""}
            },
            "custom_skills": [
                {"key": "content-tone", "value": "friendly", "enabled": true, "_editable": true},
                {"key": "cron-content-scanner", "value": "x", "enabled": true, "_editable": false}
            ]
        }))
        .unwrap();
        let carried = carry_over(Some(&config));
        let groups: Vec<_> = carried.credentials.0.keys().collect();
        assert_eq!(
            groups,
            ["instagram"],
            "empty and platform groups are left out"
        );
        let instagram = &carried.credentials.0["instagram"];
        assert_eq!(
            instagram.len(),
            2,
            "authMethod and appId; no connection facts"
        );
        assert_eq!(instagram["authMethod"], "own");
        assert_eq!(instagram["appId"], "123");
        assert_eq!(carried.custom_skills.len(), 1);
        assert_eq!(carried.custom_skills[0].key, "content-tone");
        assert_eq!(carried.custom_skills[0].value.as_deref(), Some("friendly"));
    }

    #[test]
    fn nothing_to_carry_without_a_configuration() {
        assert!(carry_over(None).is_empty());
    }
}
