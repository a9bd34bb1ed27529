//! `UserAgent/Message/*`: a message moves `agent_queue` → `agent_start` → `agent_end` (or
//! `agent_error` when the agent is gone, `agent_cancel` when cancelled), spends the template's
//! `message` cost at the end, and fires its `callbackurl` on completion.

use std::collections::BTreeMap;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use super::billing::consume;
use super::instances::{Caller, str_field, uint_field};
use super::{Callback, Instance, Message, SimError, SimResult, World};
use crate::clock::{SimTime, secs};

/// What the runtime answers when both credit pools are empty.
pub const CREDIT_LIMIT_REPLY: &str = "[SYSTEM_CREDIT_LIMIT_REACHED]";

fn time_str(t: Option<SimTime>) -> String {
    t.map(|t| secs(t).to_string()).unwrap_or_default()
}

fn row(msg: &Message) -> Value {
    json!({
        "guid": msg.guid,
        "uuid": msg.uuid,
        "sessionkey": msg.session,
        "content": msg.content,
        "response": msg.response,
        "debugoutput": msg.debugoutput,
        "status": msg.status,
        "metadata": msg.metadata,
        "attachments": [],
        "deletestatus": 0,
        "createdat": time_str(Some(msg.created_at)),
        "startedat": time_str(msg.started_at),
        "endedat": time_str(msg.ended_at),
    })
}

/// The instance a messaging call names: unknown or invisible ones are "Agent not found or
/// access denied"; a team agent without its team's header is "Agent not found".
fn in_context<'a>(world: &'a World, caller: &Caller, guid: &str) -> Result<&'a Instance, SimError> {
    let inst = world
        .instances
        .get(guid)
        .filter(|inst| caller.can_see(inst))
        .ok_or_else(|| SimError::refuse("Agent not found or access denied"))?;
    match caller.context_refusal(inst) {
        Some(refusal) => Err(refusal),
        None => Ok(inst),
    }
}

/// `Message/Send`.
pub fn send(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "useragentguid").unwrap_or_default();
    let inst = in_context(world, caller, guid)?;
    if inst.status != 4 {
        return Err(SimError::refuse(format!(
            "Agent is not running. Current status: {}",
            inst.status
        )));
    }
    let content = str_field(body, "message").unwrap_or_default();
    if content.trim().is_empty() {
        return Err(SimError::refuse("Message is required"));
    }
    let instance_guid = inst.guid.clone();
    let seq = world.next_message_seq();
    let token: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(30)
        .map(char::from)
        .collect();
    let msg = Message {
        guid: uuid::Uuid::new_v4().to_string(),
        token: token.clone(),
        instance_guid,
        uuid: caller.uuid.clone(),
        session: str_field(body, "sessionkey")
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned(),
        content: content.to_owned(),
        response: String::new(),
        debugoutput: String::new(),
        status: "agent_queue",
        metadata: json!({}),
        callback_url: str_field(body, "callbackurl").map(str::to_owned),
        seq,
        created_at: now,
        started_at: None,
        ended_at: None,
        next_at: Some(now + world.delays.message_start_ms),
    };
    let messageguid = msg.guid.clone();
    world.messages.insert(messageguid.clone(), msg);
    Ok(json!({"messageguid": messageguid, "agenttoken": token, "status": "agent_queue"}))
}

fn find<'a>(world: &'a World, caller: &Caller, body: &Value) -> Result<&'a Message, SimError> {
    let by_guid = str_field(body, "messageguid").and_then(|g| world.messages.get(g));
    let by_token = || {
        str_field(body, "agenttoken").and_then(|t| world.messages.values().find(|m| m.token == t))
    };
    by_guid
        .or_else(by_token)
        .filter(|m| m.uuid == caller.uuid)
        .filter(|m| {
            world
                .instances
                .get(&m.instance_guid)
                .is_none_or(|inst| caller.in_context(inst))
        })
        .ok_or_else(|| SimError::refuse("Message not found"))
}

/// `Message/Detail`.
pub fn detail(world: &World, caller: &Caller, body: &Value) -> SimResult {
    Ok(json!({"data": row(find(world, caller, body)?)}))
}

fn session_messages<'a>(
    world: &'a World,
    caller: &Caller,
    body: &Value,
) -> Result<Vec<&'a Message>, SimError> {
    let guid = str_field(body, "useragentguid").unwrap_or_default();
    in_context(world, caller, guid)?;
    Ok(world
        .messages
        .values()
        .filter(|m| m.instance_guid == guid && m.uuid == caller.uuid)
        .collect())
}

/// `Message/History`: newest first, `before` cursor, limit 50 by default and 200 at most.
pub fn history(world: &World, caller: &Caller, body: &Value) -> SimResult {
    let session = str_field(body, "sessionkey").unwrap_or("default");
    let limit = uint_field(body, "limit").unwrap_or(50).clamp(1, 200) as usize;
    let mut rows: Vec<&Message> = session_messages(world, caller, body)?
        .into_iter()
        .filter(|m| m.session == session)
        .collect();
    if let Some(before) = str_field(body, "before") {
        let cursor = world.messages.get(before).map_or(0, |m| m.seq);
        rows.retain(|m| m.seq < cursor);
    }
    rows.sort_by_key(|m| std::cmp::Reverse(m.seq));
    let hasmore = rows.len() > limit;
    let page: Vec<Value> = rows.into_iter().take(limit).map(row).collect();
    Ok(json!({"data": {"messages": page, "count": page.len(), "hasmore": hasmore}}))
}

/// `Message/Sessions`: counts and update times as strings, newest first.
pub fn sessions(world: &World, caller: &Caller, body: &Value) -> SimResult {
    let mut by_session: BTreeMap<&str, Vec<&Message>> = BTreeMap::new();
    for msg in session_messages(world, caller, body)? {
        by_session
            .entry(msg.session.as_str())
            .or_default()
            .push(msg);
    }
    let mut sessions: Vec<(i64, Value)> = by_session
        .into_iter()
        .map(|(key, msgs)| {
            let last = msgs.iter().max_by_key(|m| m.seq).copied();
            let updated = msgs
                .iter()
                .map(|m| m.ended_at.unwrap_or(m.created_at))
                .max()
                .unwrap_or(0);
            (
                updated,
                json!({
                    "sessionkey": key,
                    "messagecount": msgs.len().to_string(),
                    "updatedat": secs(updated).to_string(),
                    "lastmessage": last.map(|m| m.content.clone()),
                }),
            )
        })
        .collect();
    sessions.sort_by_key(|(updated, _)| std::cmp::Reverse(*updated));
    let sessions: Vec<Value> = sessions.into_iter().map(|(_, v)| v).collect();
    Ok(json!({"data": {"sessions": sessions}}))
}

/// `Message/Cancel`: only queued, starting or streaming messages.
pub fn cancel(world: &mut World, caller: &Caller, body: &Value) -> SimResult {
    let guid = find(world, caller, body)?.guid.clone();
    let Some(msg) = world.messages.get_mut(&guid) else {
        return Err(SimError::refuse("Message not found"));
    };
    match msg.status {
        "agent_queue" => {
            msg.status = "agent_cancel";
            msg.next_at = None;
        }
        "agent_start" | "agent_output" => {
            msg.status = "agent_cancel";
            msg.next_at = None;
            msg.response = "AbortError".to_owned();
            msg.debugoutput = "AbortError".to_owned();
            let callback = callback_for(msg);
            world.outbox.extend(callback);
        }
        status => {
            return Err(SimError::refuse(format!(
                "Message cannot be cancelled (status: {status})"
            )));
        }
    }
    Ok(json!({}))
}

/// `Message/DeleteSession`: the caller's messages of one session.
pub fn delete_session(world: &mut World, caller: &Caller, body: &Value) -> SimResult {
    let session = str_field(body, "sessionkey").unwrap_or_default().to_owned();
    let doomed: Vec<String> = session_messages(world, caller, body)?
        .into_iter()
        .filter(|m| m.session == session)
        .map(|m| m.guid.clone())
        .collect();
    for guid in doomed {
        world.messages.remove(&guid);
    }
    Ok(json!({}))
}

fn callback_for(msg: &Message) -> Option<Callback> {
    let url = msg.callback_url.clone()?;
    Some(Callback {
        url,
        body: json!({
            "messageguid": msg.guid,
            "status": msg.status,
            "content": msg.content,
            "response": msg.response,
            "debugoutput": msg.debugoutput,
            "metadata": msg.metadata,
            "endedat": msg.ended_at.map(secs),
        }),
    })
}

/// Moves messages whose next step is due.
pub fn settle_messages(world: &mut World, now: SimTime) {
    let due: Vec<String> = world
        .messages
        .values()
        .filter(|m| m.next_at.is_some_and(|at| at <= now))
        .map(|m| m.guid.clone())
        .collect();
    let reply_ms = world.delays.message_reply_ms;
    for guid in due {
        let Some(msg) = world.messages.get(&guid) else {
            continue;
        };
        let at = msg.next_at.unwrap_or(now);
        let running = world
            .instances
            .get(&msg.instance_guid)
            .is_some_and(|inst| inst.status == 4);
        let was_queued = msg.status == "agent_queue";
        let Some(msg) = world.messages.get_mut(&guid) else {
            continue;
        };
        if !running {
            msg.status = "agent_error";
            msg.response = "Agent is temporarily unavailable. Please try again shortly.".to_owned();
            msg.debugoutput = "Could not resolve agent endpoint".to_owned();
            msg.ended_at = Some(at);
            msg.next_at = None;
        } else if was_queued {
            msg.status = "agent_start";
            msg.started_at = Some(at);
            msg.next_at = Some(at + reply_ms);
            continue;
        } else {
            finish(world, &guid, at);
        }
        if let Some(callback) = world.messages.get(&guid).and_then(callback_for) {
            world.outbox.push(callback);
        }
    }
}

/// `agent_start` → `agent_end`: spend the message cost, or answer the credit-limit marker.
fn finish(world: &mut World, guid: &str, at: SimTime) {
    let Some(msg) = world.messages.get(guid) else {
        return;
    };
    let (instance_guid, content) = (msg.instance_guid.clone(), msg.content.clone());
    let (title, cost) = world
        .instances
        .get(&instance_guid)
        .and_then(|inst| {
            world
                .catalog
                .by_id(inst.template_id)
                .map(|t| (inst.title.clone(), t))
        })
        .map_or((String::new(), 0), |(title, t)| {
            (title, t.action_cost("message"))
        });
    let had_credits = world
        .instances
        .get_mut(&instance_guid)
        .is_some_and(|inst| consume(inst, cost));
    let reply = if had_credits {
        format!("Hi, {title} here. You said: \"{content}\". I'm on it.")
    } else {
        CREDIT_LIMIT_REPLY.to_owned()
    };
    let words = reply.split_whitespace().count();
    if let Some(msg) = world.messages.get_mut(guid) {
        msg.status = "agent_end";
        msg.response = reply.clone();
        msg.debugoutput = reply.clone();
        msg.ended_at = Some(at);
        msg.next_at = None;
        msg.metadata = json!({
            "type": "progressGenerate",
            "task": "Generate",
            "speed": "14.2",
            "speedType": "words/s",
            "elapsedTime": "0.3s",
            "tokenCount": words * 4 / 3 + 1,
            "wordCount": words,
            "raw": reply,
            "thinking": [],
            "answer": [reply],
            "isThinking": false,
        });
    }
}
