//! Message/Send under the protocol (`crate::protocol`): the agent acts on a message (posts,
//! replies), so a send is consequential. A lost answer is judged, after the lease, by the
//! session's History: a message with the same text that no other send of ours claims. The
//! intent keeps only a digest of the text.

use domain::db::instances::Instance;
use domain::db::operations::{self, NewOperation, Operation, Settlement};
use domain::ids::OperationId;
use domain::model::{OperationKind, OperationState};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use wiro_client::Outcome;
use wiro_client::models::{HistoryRequest, SendMessageRequest};

use domain::db::messages::NewMessage;
use rand::RngCore as _;

use crate::Services;
use crate::protocol::{self, Effects, Evidence, Judged, KeyClaim, Requester};

/// History rows read to find a send whose answer was lost (it is recent by then).
const HISTORY_PAGE: u32 = 50;

/// A sent message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Wiro's message guid (our message id).
    pub message_id: String,
    /// The session.
    pub session: String,
}

/// Why a send did not happen (or is not known yet).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Wiro refused it (nothing was sent to the agent).
    #[error("{0}")]
    Refused(wiro_client::Error),
    /// Wiro could not be reached; nothing was sent.
    #[error("{0}")]
    Upstream(wiro_client::Error),
    /// The answer was lost: settled from History after the lease.
    #[error("Wiro's answer was lost; operation {0} is in doubt until it is settled")]
    InDoubt(OperationId),
    /// Database failure.
    #[error(transparent)]
    Internal(#[from] domain::Error),
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    guid: String,
    session: String,
    text_sha256: String,
    /// The fingerprint (hex) of the message's callback token, when it carries a callback URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callback_fp: Option<String>,
}

/// A message's callback: the URL Wiro calls and the fingerprint we keep of its token.
fn callback(services: &Services) -> Option<(String, Vec<u8>)> {
    let base = services
        .settings
        .wiro
        .callback_base_url
        .trim_end_matches('/');
    if base.is_empty() {
        return None;
    }
    let mut token = [0u8; 32];
    rand::rng().fill_bytes(&mut token);
    let token = hex::encode(token);
    let fp = services.sealer.fingerprint(token.as_bytes());
    Some((format!("{base}/v1/wiro/callbacks/{token}"), fp))
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Sends `text` to `instance`'s agent in `session`, exactly once.
///
/// # Errors
/// [`SendError`]; a lost answer is [`SendError::InDoubt`].
pub async fn send(
    services: &Services,
    instance: &Instance,
    wiro_guid: &str,
    session: &str,
    text: &str,
    who: Requester<'_>,
    key: Option<KeyClaim<'_>>,
) -> Result<(OperationId, Sent), SendError> {
    let callback = callback(services);
    let snapshot = Snapshot {
        guid: wiro_guid.to_owned(),
        session: session.to_owned(),
        text_sha256: digest(text),
        callback_fp: callback.as_ref().map(|(_, fp)| hex::encode(fp)),
    };
    let intent = NewOperation {
        instance: instance.id,
        kind: OperationKind::MessageSend,
        worker: &services.worker_name,
        actor: who.actor,
        request_id: who.request_id,
        lease: services.settings.operations.lease,
        detail: json!(snapshot),
        fence: None,
    };
    let held = protocol::begin(services, intent, key, None)
        .await?
        .ok_or_else(|| domain::Error::Conflict("message sends never share a flight".into()))?;
    let request = SendMessageRequest {
        useragentguid: wiro_guid.to_owned(),
        message: text.to_owned(),
        sessionkey: Some(session.to_owned()),
        callbackurl: callback.map(|(url, _)| url),
    };
    match held.client(services).send_message(&request).await {
        Ok(answer) => {
            let sent = Sent {
                message_id: answer.messageguid,
                session: session.to_owned(),
            };
            settle_sent(
                services,
                &held.op,
                instance,
                &sent,
                snapshot.callback_fp.as_deref(),
                OperationState::Succeeded,
            )
            .await?;
            Ok((held.op.id, sent))
        }
        Err(error) if error.outcome() == Outcome::NotApplied => {
            let reason = error.to_string();
            let not_sent = protocol::not_applied(services, &held.op, &error, reason).await?;
            Err(if not_sent || error.is_transient() {
                SendError::Upstream(error)
            } else {
                SendError::Refused(error)
            })
        }
        Err(error) => {
            protocol::lost(services, &held.op, &error).await?;
            Err(SendError::InDoubt(held.op.id))
        }
    }
}

async fn settle_sent(
    services: &Services,
    op: &Operation,
    instance: &Instance,
    sent: &Sent,
    callback_fp: Option<&str>,
    state: OperationState,
) -> domain::Result<bool> {
    let callback_fp = callback_fp.and_then(|fp| hex::decode(fp).ok());
    let wiro = &services.settings.wiro;
    // With a callback, the poller is only the safety net for a callback Wiro gave up on.
    let first_poll = if callback_fp.is_some() {
        wiro.reply_callback_grace
    } else {
        wiro.reply_poll_interval
    };
    let settlement = Settlement {
        state,
        wiro_guid: Some(sent.message_id.clone()),
        result: json!(sent),
        error: None,
    };
    let effects = Effects {
        message: Some(NewMessage {
            wiro_guid: &sent.message_id,
            instance: instance.id,
            customer: instance.customer_id,
            session: &sent.session,
            callback_fp: callback_fp.as_deref(),
            first_poll,
        }),
        ..Effects::default()
    };
    protocol::settle(services, op, settlement, effects).await
}

/// Judges a send whose answer was lost, after its lease: History of the session shows the text
/// in a message no other send of ours claims → it happened.
///
/// # Errors
/// Database errors.
pub async fn judge(services: &Services, op: &Operation) -> domain::Result<Judged> {
    let Ok(snapshot) = serde_json::from_value::<Snapshot>(op.detail.clone()) else {
        let why = "the intent's facts cannot be read".to_owned();
        return protocol::apply(services, op, Evidence::Unclear(why)).await;
    };
    let Some(instance) = domain::db::instances::get(&services.pool, op.instance_id).await? else {
        return Ok(Judged::Unresolved);
    };
    let request = HistoryRequest {
        useragentguid: snapshot.guid.clone(),
        sessionkey: Some(snapshot.session.clone()),
        limit: Some(HISTORY_PAGE),
        before: None,
    };
    let history = match services.wiro.message_history(&request).await {
        Ok(history) => history,
        Err(e) => {
            let why = format!("History could not be read: {e}");
            return protocol::apply(services, op, Evidence::Unclear(why)).await;
        }
    };
    let matching: Vec<String> = history
        .messages
        .iter()
        .filter(|m| digest(&m.content) == snapshot.text_sha256)
        .map(|m| m.guid.clone())
        .collect();
    let mut taken = domain::db::messages::known(&services.pool, &matching).await?;
    taken.extend(operations::claimed_messages(&services.pool, &matching).await?);
    // History is newest first: the oldest unclaimed one is ours.
    let Some(guid) = matching.iter().rev().find(|g| !taken.contains(g)) else {
        let why = "History shows no such message".to_owned();
        return protocol::apply(services, op, Evidence::Absent(why)).await;
    };
    let sent = Sent {
        message_id: guid.clone(),
        session: snapshot.session,
    };
    let callback_fp = snapshot.callback_fp.as_deref();
    settle_sent(
        services,
        op,
        &instance,
        &sent,
        callback_fp,
        OperationState::Adopted,
    )
    .await?;
    Ok(Judged::Settled)
}
