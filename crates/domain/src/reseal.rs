//! `reseller reseal`: after a credentials-key rotation, re-seal every value sealed with the
//! credentials key — the pending configs of instances and the secrets of webhook endpoints —
//! with the current key, so the previous keys can be dropped. Row by row under the row lock (a
//! job or a secret rotation writing the same row waits; a row cleared or deleted meanwhile is
//! skipped), in pages by id, so it can run while the service runs and can be interrupted and
//! rerun.

use sqlx::PgPool;

use crate::db::{instances, webhooks};
use crate::error::Result;
use crate::ids::InstanceId;
use crate::sealed::Sealer;

/// Rows read per page.
const PAGE: i64 = 500;

/// What a re-seal did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Pending configs moved to the current key.
    pub resealed: usize,
    /// Pending configs already under the current key.
    pub current: usize,
    /// Webhook endpoint secrets (current or previous) moved to the current key.
    pub secrets_resealed: usize,
    /// Webhook endpoint secrets already under the current key.
    pub secrets_current: usize,
}

/// Re-seals every `instances.pending_config` and every webhook endpoint's secret and previous
/// secret not sealed with the current key.
///
/// # Errors
/// A value no configured key opens ([`crate::Error::Corrupt`], naming the instance or the
/// endpoint: nothing after it is touched, everything before it is committed); database errors.
pub async fn reseal_all(pool: &PgPool, sealer: &Sealer) -> Result<ResealReport> {
    let mut report = ResealReport::default();
    reseal_pending_configs(pool, sealer, &mut report).await?;
    reseal_webhook_secrets(pool, sealer, &mut report).await?;
    Ok(report)
}

async fn reseal_pending_configs(
    pool: &PgPool,
    sealer: &Sealer,
    report: &mut ResealReport,
) -> Result<()> {
    let mut after = InstanceId(uuid::Uuid::nil());
    loop {
        let page = instances::with_pending_config(pool, after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = *last;
        for id in page {
            let mut tx = pool.begin().await?;
            let Some(sealed) = instances::lock_pending_config(&mut *tx, id).await? else {
                continue;
            };
            match sealer.reseal(id, &sealed)? {
                Some(resealed) => {
                    instances::replace_pending_config(&mut *tx, id, &resealed).await?;
                    tx.commit().await?;
                    report.resealed += 1;
                }
                None => report.current += 1,
            }
        }
    }
}

async fn reseal_webhook_secrets(
    pool: &PgPool,
    sealer: &Sealer,
    report: &mut ResealReport,
) -> Result<()> {
    let mut after = uuid::Uuid::nil();
    loop {
        let page = webhooks::endpoint_ids_after(pool, after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = *last;
        for id in page {
            let mut tx = pool.begin().await?;
            let Some((secret, previous)) = webhooks::lock_secrets(&mut *tx, id).await? else {
                continue;
            };
            let mut moved = 0;
            let new_secret = sealer.reseal_secret(id, &secret)?;
            moved += usize::from(new_secret.is_some());
            let new_previous = match &previous {
                Some(previous) => sealer.reseal_secret(id, previous)?,
                None => None,
            };
            moved += usize::from(new_previous.is_some());
            report.secrets_current += 1 + usize::from(previous.is_some()) - moved;
            if moved == 0 {
                continue;
            }
            let secret = new_secret.as_deref().unwrap_or(&secret);
            let previous = new_previous.as_deref().or(previous.as_deref());
            webhooks::replace_secrets(&mut *tx, id, secret, previous).await?;
            tx.commit().await?;
            report.secrets_resealed += moved;
        }
    }
}

/// Where the values sealed with the credentials key stand (`reseller doctor`): whether the
/// previous keys can be dropped, and anything no configured key opens.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SealSurvey {
    /// Values under the current key.
    pub current: usize,
    /// Values only a previous key opens (`reseller reseal` moves them).
    pub previous: usize,
    /// What no configured key opens, named (`instance <id>`, `webhook endpoint <id>`).
    pub unopenable: Vec<String>,
}

/// Reads every pending config and webhook secret (they are few: a pending config lives until
/// Wiro has it) and sorts them by the key that opens them. Reads only, takes no lock.
///
/// # Errors
/// Database errors.
pub async fn survey(pool: &PgPool, sealer: &Sealer) -> Result<SealSurvey> {
    let mut survey = SealSurvey::default();
    let mut after = InstanceId(uuid::Uuid::nil());
    loop {
        let page = instances::pending_configs_after(pool, after, PAGE).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        for (id, sealed) in page {
            let opened = sealer.open(id, &sealed).map(drop);
            survey.judge(sealer, &sealed, &opened, || format!("instance {id}"));
        }
    }
    let mut after = uuid::Uuid::nil();
    loop {
        let page = webhooks::secrets_after(pool, after, PAGE).await?;
        let Some((last, ..)) = page.last() else {
            break;
        };
        after = *last;
        for (id, secret, previous) in page {
            for sealed in std::iter::once(secret).chain(previous) {
                let opened = sealer.open_secret(id, &sealed).map(drop);
                survey.judge(sealer, &sealed, &opened, || {
                    format!("webhook endpoint {id}")
                });
            }
        }
    }
    Ok(survey)
}

impl SealSurvey {
    /// Counts one value by what opened it (`opened`: its opening with every configured key).
    fn judge(
        &mut self,
        sealer: &Sealer,
        sealed: &[u8],
        opened: &Result<()>,
        owner: impl FnOnce() -> String,
    ) {
        if opened.is_err() {
            self.unopenable.push(owner());
        } else if sealer.is_current(sealed) {
            self.current += 1;
        } else {
            self.previous += 1;
        }
    }
}
