//! `UserAgent/Deploy`, `MyAgents`, `Detail`, `Update`, `Start`, `Stop` and the timed status
//! machine (Stopping → Stopped or re-Queued, Queued → Starting → Running).

use serde_json::{Value, json};

use super::credentials::{merge, missing_required};
use super::render::{deploy_row, detail_row, my_agents_row, update_row};
use super::{Delays, Instance, SimError, SimResult, Subscription, World};
use crate::clock::{DAY_MS, SimTime};
use crate::money::cents;

/// Length of a billing period.
pub const PERIOD_MS: i64 = 30 * DAY_MS;

/// Who is calling: the authenticated account and the team named in the `teamGUID` header (already
/// checked for membership).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The account's API key.
    pub api_key: String,
    /// The account's uuid.
    pub uuid: String,
    /// Teams the account belongs to.
    pub teams: Vec<String>,
    /// The `teamGUID` header, when sent.
    pub team_header: Option<String>,
}

impl Caller {
    /// Detail/Update/Start/Stop access: the owner, or any member of the instance's team.
    pub fn can_see(&self, inst: &Instance) -> bool {
        match &inst.team_guid {
            Some(team) => self.teams.contains(team),
            None => inst.owner_uuid == self.uuid,
        }
    }

    /// Messaging and billing also need the team header to name the instance's team.
    pub fn in_context(&self, inst: &Instance) -> bool {
        self.can_see(inst)
            && inst
                .team_guid
                .as_ref()
                .is_none_or(|team| self.team_header.as_ref() == Some(team))
    }

    /// The refusal of a messaging or billing call on a team agent the caller can see but whose
    /// team the `teamGUID` header does not name. The overview words it: "If you see `You are
    /// not a member of this team` or `Agent not found` errors on messaging endpoints, you're
    /// likely missing the header on a team agent" (the first comes from authentication).
    pub fn context_refusal(&self, inst: &Instance) -> Option<SimError> {
        (self.can_see(inst) && !self.in_context(inst)).then(|| SimError::refuse("Agent not found"))
    }
}

pub(crate) fn str_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn bool_field(body: &Value, name: &str) -> Option<bool> {
    body.get(name).and_then(|v| {
        v.as_bool()
            .or_else(|| v.as_str().map(|s| s == "true" || s == "1"))
    })
}

pub(crate) fn uint_field(body: &Value, name: &str) -> Option<u64> {
    body.get(name).and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
}

/// The instance `guid` if the caller may see it, for mutation.
pub(crate) fn visible_mut<'a>(
    world: &'a mut World,
    caller: &Caller,
    guid: &str,
    not_found: &str,
) -> Result<&'a mut Instance, SimError> {
    world
        .instances
        .get_mut(guid)
        .filter(|inst| caller.can_see(inst))
        .ok_or_else(|| SimError::refuse(not_found))
}

/// `UserAgent/Deploy`.
pub fn deploy(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let agentguid = str_field(body, "agentguid").unwrap_or_default();
    let template = world
        .catalog
        .by_guid(agentguid)
        .cloned()
        .ok_or_else(|| SimError::refuse("Agent not found"))?;
    if !template.is_active() {
        return Err(SimError::refuse("Agent not found or inactive"));
    }
    let title = str_field(body, "title").map(str::trim).unwrap_or_default();
    if title.is_empty() {
        return Err(SimError::refuse("Title is required"));
    }
    let prepaid = bool_field(body, "useprepaid").unwrap_or(false);
    let plan = str_field(body, "plan").unwrap_or_default();
    let guid = uuid::Uuid::new_v4().to_string();
    let mut credentials = template.credentials();
    let mut custom_skills = template.custom_skills();
    let (subscription, monthly_credits, status) = if prepaid {
        if plan != "starter" && plan != "pro" {
            return Err(SimError::refuse(
                "Valid plan required when using prepaid (starter or pro)",
            ));
        }
        let price = template
            .pricing
            .plan(plan)
            .ok_or_else(|| SimError::refuse("Pricing not available for this plan"))?;
        world.charge(&caller.api_key, &guid, "deploy", cents(price.price), now)?;
        let sub = Subscription {
            plan: plan.to_owned(),
            provider: "prepaid".to_owned(),
            amount_cents: cents(price.price),
            period_end: now + PERIOD_MS,
            active: true,
            cancel_at_period_end: false,
        };
        // Credentials in a prepaid Deploy body are ignored; the instance waits in 6.
        (Some(sub), price.credits, 6)
    } else {
        // The panel's Stripe path: the instance exists at once, the subscription only after the
        // customer completes checkout (admin `POST /admin/agents/{guid}/checkout`). Credentials
        // in the body are merged on this path.
        if let Some(config) = body.get("configuration") {
            let schema = template.credentials();
            merge(
                &mut credentials,
                &schema,
                config.get("credentials").unwrap_or(&Value::Null),
            );
            merge_custom_skills(&mut custom_skills, config.get("custom_skills"));
        }
        let status = if missing_required(&credentials).is_empty() {
            0
        } else {
            6
        };
        (None, 0, status)
    };
    let id = world.next_instance_id();
    let instance = Instance {
        id,
        guid: guid.clone(),
        owner_uuid: caller.uuid.clone(),
        payer_key: caller.api_key.clone(),
        team_guid: caller.team_header.clone(),
        template_id: template.id,
        title: title.to_owned(),
        description: str_field(body, "description").map(str::to_owned),
        categories: template.categories.clone(),
        pinned: bool_field(body, "pinned").unwrap_or(true),
        status,
        restart_after: false,
        transition_at: None,
        credentials,
        custom_skills,
        skills: template.skills(),
        subscription,
        monthly_credits,
        packs: Vec::new(),
        created_at: now,
        created_wall: std::time::Instant::now(),
        updated_at: now,
        started_at: None,
        running_at: None,
    };
    let row = deploy_row(&instance);
    world.instances.insert(guid.clone(), instance);
    let mut response = json!({"useragents": [row]});
    if !prepaid {
        let plan = if plan == "pro" { "pro" } else { "starter" };
        response["url"] = json!(format!(
            "https://checkout.stripe.com/c/pay/sim_{guid}?plan={plan}"
        ));
    }
    Ok(response)
}

/// `UserAgent/MyAgents`: the caller's personal instances, or the team's with a `teamGUID`.
/// Instances younger than `lag` (real time) are left out, as a lagging list would.
pub fn my_agents(
    world: &World,
    caller: &Caller,
    body: &Value,
    now: SimTime,
    lag: std::time::Duration,
) -> SimResult {
    let limit = uint_field(body, "limit").unwrap_or(20).clamp(1, 1000) as usize;
    let start = uint_field(body, "start").unwrap_or(0) as usize;
    let column = str_field(body, "sort").unwrap_or("id");
    let ascending = str_field(body, "order").is_some_and(|o| o.eq_ignore_ascii_case("asc"));
    let category = str_field(body, "category");
    let mut rows: Vec<&Instance> = world
        .instances
        .values()
        .filter(|inst| match &caller.team_header {
            Some(team) => inst.team_guid.as_ref() == Some(team),
            None => inst.team_guid.is_none() && inst.owner_uuid == caller.uuid,
        })
        .filter(|inst| category.is_none_or(|c| inst.categories.iter().any(|x| x == c)))
        .filter(|inst| inst.created_wall.elapsed() >= lag)
        .collect();
    // Only the rows up to the page's end need ordering: a fleet of 100k listed page by page
    // must not cost a full sort per page.
    let order = |a: &&Instance, b: &&Instance| {
        let by = sort_key(a, column).cmp(&sort_key(b, column));
        if ascending { by } else { by.reverse() }
    };
    let end = start.saturating_add(limit);
    if end < rows.len() {
        rows.select_nth_unstable_by(end, order);
        rows.truncate(end);
    }
    let first = start.min(rows.len());
    if first > 0 && first < rows.len() {
        rows.select_nth_unstable_by(first, order);
    }
    rows[first..].sort_by(order);
    let page: Vec<Value> = rows
        .into_iter()
        .skip(first)
        .take(limit)
        .filter_map(|inst| {
            let tpl = world.catalog.by_id(inst.template_id)?;
            Some(my_agents_row(inst, tpl, now, world.undocumented_fields))
        })
        .collect();
    Ok(json!({"useragents": page}))
}

fn sort_key(inst: &Instance, column: &str) -> (i64, String) {
    let n = match column {
        "status" => inst.status,
        "createdat" => inst.created_at,
        "updatedat" => inst.updated_at,
        "startedat" => inst.started_at.unwrap_or(0),
        "runningat" => inst.running_at.unwrap_or(0),
        "title" => return (0, inst.title.to_lowercase()),
        _ => inst.id,
    };
    (n, String::new())
}

/// `UserAgent/Detail`.
pub fn detail(world: &World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "guid").unwrap_or_default();
    let inst = world
        .instances
        .get(guid)
        .filter(|inst| caller.can_see(inst))
        .ok_or_else(|| SimError::refuse("User agent not found"))?;
    let tpl = world
        .catalog
        .by_id(inst.template_id)
        .ok_or_else(|| SimError::refuse("Agent not found"))?;
    Ok(json!({"useragents": [detail_row(inst, tpl, now, world.undocumented_fields)]}))
}

/// `UserAgent/Update`.
pub fn update(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "guid").unwrap_or_default().to_owned();
    let categories = match body.get("categories") {
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(SimError::refuse("Categories cannot be empty"));
        }
        Some(Value::Array(list)) => Some(
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    let delays = world.delays;
    let inst = visible_mut(world, caller, &guid, "User agent not found")?;
    let template_id = inst.template_id;
    if let Some(title) = str_field(body, "title")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        inst.title = title.to_owned();
    }
    if let Some(description) = str_field(body, "description") {
        inst.description = Some(description.to_owned());
    }
    if let Some(categories) = categories {
        inst.categories = categories;
    }
    let configuration = body.get("configuration").filter(|c| c.is_object());
    if let Some(config) = configuration {
        let schema = inst.credentials.clone();
        merge(
            &mut inst.credentials,
            &schema,
            config.get("credentials").unwrap_or(&Value::Null),
        );
        merge_custom_skills(&mut inst.custom_skills, config.get("custom_skills"));
        let complete = missing_required(&inst.credentials).is_empty();
        match inst.status {
            6 if complete => inst.status = 0,
            0 | 5 if !complete => inst.status = 6,
            3 | 4 => {
                // restartafter: stop, then re-queue with the new configuration.
                inst.status = 1;
                inst.restart_after = true;
                inst.transition_at = Some(now + delays.stop_ms);
            }
            _ => {}
        }
    }
    inst.updated_at = now;
    let row_inst = inst.clone();
    let tpl = world
        .catalog
        .by_id(template_id)
        .ok_or_else(|| SimError::refuse("Agent not found"))?;
    Ok(json!({"useragents": [update_row(&row_inst, tpl)]}))
}

/// Custom skills: only `_editable` ones change; `value` and `enabled` are written.
fn merge_custom_skills(current: &mut [Value], incoming: Option<&Value>) {
    let Some(incoming) = incoming.and_then(Value::as_array) else {
        return;
    };
    for change in incoming {
        let Some(key) = str_field(change, "key") else {
            continue;
        };
        let Some(skill) = current
            .iter_mut()
            .find(|s| str_field(s, "key") == Some(key))
        else {
            continue;
        };
        if !skill
            .get("_editable")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            continue;
        }
        for field in ["value", "enabled"] {
            if let Some(v) = change.get(field) {
                skill[field] = v.clone();
            }
        }
    }
}

/// `UserAgent/Start`.
pub fn start(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "guid").unwrap_or_default().to_owned();
    let delays = world.delays;
    let inst = visible_mut(world, caller, &guid, "User agent not found")?;
    match inst.status {
        6 => {
            return Err(SimError::refuse(
                "Agent setup is not complete. Please fill in your credentials before starting.",
            ));
        }
        3 | 4 => return Err(SimError::refuse("Agent is already running")),
        2 => return Err(SimError::refuse("Agent is already queued to start")),
        1 => return Err(SimError::refuse("Agent is currently stopping, please wait")),
        _ => {}
    }
    if !inst.subscription.as_ref().is_some_and(|s| s.active) {
        return Err(SimError::refuse(
            "Active subscription required to start agent. Please renew your subscription.",
        ));
    }
    if inst.monthly_credits + inst.extra_credits() <= 0 {
        return Err(SimError::refuse(
            "No credits available. Please renew your subscription or purchase extra credits.",
        ));
    }
    inst.status = 2;
    inst.restart_after = false;
    inst.transition_at = Some(now + delays.queue_ms);
    inst.started_at = Some(now);
    inst.updated_at = now;
    Ok(json!({"useragents": []}))
}

/// `UserAgent/Stop`.
pub fn stop(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "guid").unwrap_or_default().to_owned();
    let delays = world.delays;
    let inst = visible_mut(world, caller, &guid, "User agent not found")?;
    match inst.status {
        0 | 6 => return Err(SimError::refuse("Agent is already stopped")),
        5 => {
            return Err(SimError::refuse(
                "Agent is in error state, use Start to retry",
            ));
        }
        1 => return Err(SimError::refuse("Agent is currently stopping, please wait")),
        2 => {
            inst.status = 0;
            inst.transition_at = None;
        }
        _ => {
            inst.status = 1;
            inst.restart_after = false;
            inst.transition_at = Some(now + delays.stop_ms);
        }
    }
    inst.updated_at = now;
    Ok(json!({"useragents": []}))
}

/// Applies due timed transitions of one instance.
pub fn settle_status(inst: &mut Instance, now: SimTime, delays: Delays) {
    while let Some(at) = inst.transition_at.filter(|at| *at <= now) {
        match inst.status {
            1 if inst.restart_after => {
                inst.status = 2;
                inst.restart_after = false;
                inst.transition_at = Some(at + delays.queue_ms);
            }
            1 => {
                inst.status = 0;
                inst.transition_at = None;
            }
            2 => {
                inst.status = 3;
                inst.transition_at = Some(at + delays.start_ms);
            }
            3 => {
                inst.status = 4;
                inst.running_at = Some(at);
                inst.transition_at = None;
            }
            _ => inst.transition_at = None,
        }
        inst.updated_at = at;
    }
}

/// Completes the Stripe checkout of a panel-path deploy: a `stripe` subscription starts and a
/// configured agent is queued, as Wiro does after payment.
///
/// # Errors
/// When the instance already has a subscription or its template has no price for `plan`.
pub fn complete_checkout(
    world: &mut World,
    guid: &str,
    plan: &str,
    now: SimTime,
) -> Result<(), String> {
    let delays = world.delays;
    let inst = world
        .instances
        .get(guid)
        .ok_or("no instance has that guid")?;
    if inst.subscription.is_some() {
        return Err("the instance already has a subscription".into());
    }
    let price = world
        .catalog
        .by_id(inst.template_id)
        .and_then(|t| t.pricing.plan(plan))
        .ok_or_else(|| format!("the template has no {plan} price"))?;
    let inst = world
        .instances
        .get_mut(guid)
        .ok_or("no instance has that guid")?;
    inst.subscription = Some(Subscription {
        plan: plan.to_owned(),
        provider: "stripe".to_owned(),
        amount_cents: cents(price.price),
        period_end: now + PERIOD_MS,
        active: true,
        cancel_at_period_end: false,
    });
    inst.monthly_credits = price.credits;
    if inst.status == 0 {
        inst.status = 2;
        inst.transition_at = Some(now + delays.queue_ms);
        inst.started_at = Some(now);
    }
    inst.updated_at = now;
    Ok(())
}

/// Puts an instance into `status` (admin: "force Error"), cancelling timed transitions.
pub fn force_status(inst: &mut Instance, status: i64, now: SimTime) {
    inst.status = status;
    inst.transition_at = None;
    inst.restart_after = false;
    inst.updated_at = now;
}
