//! `reseller reseal`: after a credentials-key rotation, re-seal every pending config with the
//! current key, so the previous keys can be dropped. Row by row under the row lock (a job
//! writing the same row waits; a row the job cleared meanwhile is skipped), in pages by id, so
//! it can run while the service runs and can be interrupted and rerun.

use sqlx::PgPool;

use crate::db::instances;
use crate::error::Result;
use crate::ids::InstanceId;
use crate::sealed::Sealer;

/// What a re-seal did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Values moved to the current key.
    pub resealed: usize,
    /// Values already under the current key.
    pub current: usize,
}

/// Re-seals every `instances.pending_config` not sealed with the current key.
///
/// # Errors
/// A value no configured key opens ([`crate::Error::Corrupt`], naming the instance: nothing
/// after it is touched, everything before it is committed); database errors.
pub async fn reseal_all(pool: &PgPool, sealer: &Sealer) -> Result<ResealReport> {
    let mut report = ResealReport::default();
    let mut after = InstanceId(uuid::Uuid::nil());
    loop {
        let page = instances::with_pending_config(pool, after, 500).await?;
        let Some(last) = page.last() else {
            return Ok(report);
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
