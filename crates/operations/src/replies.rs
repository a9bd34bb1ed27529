//! How a message ended: Wiro's callback (unsigned, so only a trigger to look), the reply
//! poller, or a customer's read all come here with a Message/Detail in hand or to fetch. The
//! outcome is recorded once (`message.completed` / `message.failed` are written with it), and a
//! reply carrying the credit-limit marker puts the agent in `out_of_credits`.

use domain::agents::{self, CREDIT_LIMIT_REPLY};
use domain::db::messages::{self, Outcome};
use domain::ids::InstanceId;
use wiro_client::models::{Message, MessageRef, MessageStatus};

use crate::Services;

/// Reads `guid` from Wiro and records what it shows.
///
/// # Errors
/// The Detail call's failure, or a database error.
pub async fn observe(
    services: &Services,
    guid: &str,
    instance: InstanceId,
) -> anyhow::Result<Option<Outcome>> {
    let message = services
        .wiro
        .message_detail(&MessageRef::guid(guid))
        .await?;
    Ok(record(&services.pool, &message, instance).await?)
}

/// Records what `message` (Wiro's own Detail of it) shows about its end, if it ended.
///
/// # Errors
/// Database errors.
pub async fn record(
    pool: &sqlx::PgPool,
    message: &Message,
    instance: InstanceId,
) -> domain::Result<Option<Outcome>> {
    let outcome = match message.status {
        MessageStatus::End => Outcome::Completed,
        MessageStatus::Error | MessageStatus::Cancel => Outcome::Failed,
        _ => return Ok(None),
    };
    messages::finish(pool, &message.guid, outcome).await?;
    if message.status == MessageStatus::End && message.response.contains(CREDIT_LIMIT_REPLY) {
        // The agent's credits ran out: its job applies the top-up policy now.
        agents::credits_exhausted(pool, instance).await?;
    }
    Ok(Some(outcome))
}
