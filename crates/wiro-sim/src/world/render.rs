//! Instances as each endpoint shows them. The docs differ per endpoint (MyAgents sends times
//! as numeric strings, Detail as numbers; Deploy has no subscription; Update no rateLimit), and
//! we follow each example.

use serde_json::{Value, json};

use super::credentials::sanitize;
use super::{Instance, Subscription};
use crate::catalog::Template;
use crate::clock::{DAY_MS, SimTime, secs};
use crate::money::dollars;

fn num_time(t: Option<SimTime>) -> Value {
    t.map_or(Value::Null, |t| json!(secs(t)))
}

fn str_time(t: Option<SimTime>) -> Value {
    t.map_or(Value::Null, |t| json!(secs(t).to_string()))
}

/// The raw row Deploy returns.
pub fn deploy_row(inst: &Instance) -> Value {
    json!({
        "id": inst.id,
        "guid": inst.guid,
        "uuid": inst.owner_uuid,
        "agentid": inst.template_id,
        "teamguid": inst.team_guid,
        "title": inst.title,
        "description": inst.description,
        "configuration": {"credentials": sanitize(&inst.credentials)},
        "status": inst.status,
        "pinned": inst.pinned,
        "createdat": secs(inst.created_at),
        "updatedat": secs(inst.updated_at),
    })
}

/// A MyAgents row.
pub fn my_agents_row(inst: &Instance, tpl: &Template, now: SimTime, extras: bool) -> Value {
    json!({
        "id": inst.id,
        "guid": inst.guid,
        "agentid": inst.template_id,
        "title": inst.title,
        "status": inst.status,
        "setuprequired": inst.setup_required(),
        "subscription": inst.subscription.as_ref().map(|s| subscription(s, now, extras)),
        "agent": tpl.summary_json(true),
        "extracredits": inst.extra_credits(),
        "extracreditsexpiry": num_time(inst.packs.iter().map(|p| p.expires_at).min()),
        "createdat": str_time(Some(inst.created_at)),
        "updatedat": str_time(Some(inst.updated_at)),
        "startedat": str_time(inst.started_at),
        "runningat": str_time(inst.running_at),
    })
}

/// The Detail row.
pub fn detail_row(inst: &Instance, tpl: &Template, now: SimTime, extras: bool) -> Value {
    let mut row = json!({
        "id": inst.id,
        "guid": inst.guid,
        "uuid": inst.owner_uuid,
        "agentid": inst.template_id,
        "teamguid": inst.team_guid,
        "title": inst.title,
        "description": inst.description,
        "status": inst.status,
        "pinned": inst.pinned,
        "setuprequired": inst.setup_required(),
        "configuration": {
            "credentials": sanitize(&inst.credentials),
            "custom_skills": inst.custom_skills,
            "skills": inst.skills,
            "rateLimit": {
                "monthlyCredits": inst.monthly_credits,
                "extraCredits": inst.extra_credits(),
                "actionTypes": tpl.action_types(),
            },
        },
        "subscription": inst.subscription.as_ref().map(|s| subscription(s, now, extras)),
        "agent": tpl.summary_json(true),
        "extracredits": inst.extra_credits(),
        "extracreditsexpiry": num_time(inst.packs.iter().map(|p| p.expires_at).min()),
        "createdat": secs(inst.created_at),
        "updatedat": secs(inst.updated_at),
        "startedat": num_time(inst.started_at),
        "runningat": num_time(inst.running_at),
    });
    if inst
        .subscription
        .as_ref()
        .is_some_and(|s| s.provider == "stripe" && s.active)
    {
        let base = format!("https://billing.stripe.com/p/session/sim_{}", inst.guid);
        row["stripeportalurl"] = json!(base);
        row["stripeupdateurl"] = json!(format!("{base}/subscriptions/update"));
        row["stripecancelurl"] = json!(format!("{base}/subscriptions/cancel"));
    }
    row
}

/// The Update row: configuration without rateLimit, `setuprequired`, no subscription.
pub fn update_row(inst: &Instance, tpl: &Template) -> Value {
    json!({
        "id": inst.id,
        "guid": inst.guid,
        "uuid": inst.owner_uuid,
        "agentid": inst.template_id,
        "title": inst.title,
        "description": inst.description,
        "status": inst.status,
        "pinned": inst.pinned,
        "setuprequired": inst.setup_required(),
        "configuration": {
            "credentials": sanitize(&inst.credentials),
            "custom_skills": inst.custom_skills,
            "skills": inst.skills,
        },
        "agent": tpl.summary_json(false),
        "createdat": secs(inst.created_at),
        "updatedat": secs(inst.updated_at),
    })
}

/// A subscription object, as documented. `extras` adds `cancelatperiodend`, which Wiro does
/// not show (a pending cancellation is visible nowhere in the documented API).
pub fn subscription(sub: &Subscription, now: SimTime, extras: bool) -> Value {
    let remaining_ms = (sub.period_end - now).max(0);
    let renewal = chrono::DateTime::from_timestamp_millis(sub.period_end)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let mut out = json!({
        "plan": format!("agent-{}", sub.plan),
        "status": if sub.active { "active" } else { "expired" },
        "amount": dollars(sub.amount_cents),
        "currency": "usd",
        "currentperiodend": secs(sub.period_end),
        "renewaldate": renewal,
        "daysremaining": if sub.active { (remaining_ms + DAY_MS - 1) / DAY_MS } else { 0 },
        "pendingdowngrade": null,
        "provider": sub.provider,
    });
    if extras {
        out["cancelatperiodend"] = json!(sub.cancel_at_period_end);
    }
    out
}
