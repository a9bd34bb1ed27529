//! Stored `Idempotency-Key` answers, per caller. A key is claimed before the request runs
//! (status NULL), then holds the answer.

use sqlx::PgExecutor;

use crate::error::Result;

/// A stored key as a replay sees it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredKey {
    /// Fingerprint of the request that claimed it.
    pub request_hash: Vec<u8>,
    /// HTTP status of the answer (`None` while the first request runs).
    pub status: Option<i16>,
    /// The answer's body.
    pub response: Option<serde_json::Value>,
    /// Past its retention.
    pub expired: bool,
    /// Claimed long ago, never answered and never linked to an operation: its request died
    /// with its process before doing anything.
    pub abandoned: bool,
    /// The upstream operation the request started: the key answers from it.
    pub operation_id: Option<crate::ids::OperationId>,
}

/// An answer to store with a claimed key inside the transaction of the work it answers for,
/// so a key whose work committed always has its answer (and is never released).
pub struct AnswerIn<'a, T> {
    /// The key's owner.
    pub caller: &'a str,
    /// The key.
    pub key: &'a str,
    /// HTTP status.
    pub status: u16,
    /// The body, from what the work created.
    pub render: &'a (dyn Fn(&T) -> serde_json::Value + Send + Sync),
}

impl<T> AnswerIn<'_, T> {
    /// Stores the answer for `made` on `conn` (the work's transaction).
    ///
    /// # Errors
    /// Database errors.
    pub async fn store(&self, conn: impl PgExecutor<'_>, made: &T) -> Result<()> {
        store_answer(
            conn,
            self.caller,
            self.key,
            self.status,
            &(self.render)(made),
        )
        .await
    }
}

/// Claims `key` for `caller`; false when it is already taken.
///
/// # Errors
/// Database errors.
pub async fn claim(
    conn: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    request_hash: &[u8],
    ttl: std::time::Duration,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO idempotency_keys (caller, key, request_hash, expires_at)
         VALUES ($1, $2, $3, business_now() + $4 * interval '1 millisecond') ON CONFLICT DO NOTHING",
    )
    .bind(caller)
    .bind(key)
    .bind(request_hash)
    .bind(ttl.as_millis() as f64)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The stored key; `abandoned_after` decides which unanswered claims count as abandoned.
///
/// # Errors
/// Database errors.
pub async fn find(
    conn: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    abandoned_after: std::time::Duration,
) -> Result<Option<StoredKey>> {
    Ok(sqlx::query_as(
        "SELECT request_hash, status, response, operation_id,
                expires_at < business_now() AND (operation_id IS NULL OR status IS NOT NULL) AS expired,
                status IS NULL AND operation_id IS NULL
                    AND created_at < now() - $3 * interval '1 millisecond' AS abandoned
         FROM idempotency_keys WHERE caller = $1 AND key = $2",
    )
    .bind(caller)
    .bind(key)
    .bind(abandoned_after.as_millis() as f64)
    .fetch_optional(conn)
    .await?)
}

/// Deletes the key if it expired or was abandoned, so it can be claimed again. A key linked to
/// an operation that has no stored answer yet (still in doubt) is never deleted.
///
/// # Errors
/// Database errors.
pub async fn release_stale(
    conn: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    abandoned_after: std::time::Duration,
) -> Result<()> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2
           AND ((expires_at < business_now() AND (operation_id IS NULL OR status IS NOT NULL))
                OR (status IS NULL AND operation_id IS NULL
                    AND created_at < now() - $3 * interval '1 millisecond'))",
    )
    .bind(caller)
    .bind(key)
    .bind(abandoned_after.as_millis() as f64)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the answer of a claimed key.
///
/// # Errors
/// Database errors.
pub async fn store_answer(
    conn: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, response = $4 WHERE caller = $1 AND key = $2",
    )
    .bind(caller)
    .bind(key)
    .bind(status as i16)
    .bind(body)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets a claim whose request failed, so the caller may retry with the same key.
///
/// # Errors
/// Database errors.
pub async fn forget(conn: impl PgExecutor<'_>, caller: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2")
        .bind(caller)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Links a claimed key to the upstream operation its request started (in the intent's
/// transaction): the key then answers from the operation and is never released while it is
/// unresolved.
///
/// # Errors
/// Database errors.
pub async fn link_operation(
    conn: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    operation: crate::ids::OperationId,
) -> Result<()> {
    sqlx::query("UPDATE idempotency_keys SET operation_id = $3 WHERE caller = $1 AND key = $2")
        .bind(caller)
        .bind(key)
        .bind(operation)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes up to `batch` expired keys and returns how many went. A key linked to an operation
/// that is still in doubt (`calling`, `unknown`) and has no stored answer stays, whatever its
/// age: its replay is how the caller learns what happened. Locked rows (a replay reading one)
/// are skipped for the next batch.
///
/// # Errors
/// Database errors.
pub async fn purge_expired(conn: impl PgExecutor<'_>, batch: i64) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys WHERE (caller, key) IN (
             SELECT k.caller, k.key FROM idempotency_keys k
             LEFT JOIN operations o ON o.id = k.operation_id
             WHERE k.expires_at < business_now()
               AND (k.operation_id IS NULL OR k.status IS NOT NULL
                    OR o.state NOT IN ('calling', 'unknown'))
             ORDER BY k.expires_at LIMIT $1
             FOR UPDATE OF k SKIP LOCKED)",
    )
    .bind(batch)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
