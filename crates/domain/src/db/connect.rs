//! Pools: connect options from `database.url` (TLS via `sslmode`/`sslrootcert` in the URL)
//! with the statement timeout, and pool options whose acquire timeout bounds how long a request
//! waits for a connection.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseSettings;

/// Connect options for `database.url`, with `statement_timeout` set on every connection.
///
/// # Errors
/// When the URL does not parse (the message says why: bad `sslmode`, bad port, ...).
pub fn options(database: &DatabaseSettings) -> Result<PgConnectOptions, sqlx::Error> {
    let options = PgConnectOptions::from_str(database.url.expose_secret())?;
    Ok(with_statement_timeout(options, database.statement_timeout))
}

/// `options` with Postgres' `statement_timeout` (zero: none).
pub fn with_statement_timeout(options: PgConnectOptions, timeout: Duration) -> PgConnectOptions {
    if timeout.is_zero() {
        return options;
    }
    options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))])
}

/// A connection idle for longer than this is pinged before it is handed out.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A pool of `size` connections whose `acquire` gives up after `acquire_timeout`.
///
/// sqlx pings every connection it hands out by default: a round trip per acquire, measured at
/// 17 % of the API's CPU on `GET /v1/agents/{id}` and paid by every statement a worker runs
/// outside a transaction. Only a connection that sat idle for more than [`PING_AFTER_IDLE`] is
/// checked — where a restarted database or a dropped idle connection hides — and a busy one,
/// used a moment ago, is not (the pattern sqlx's own documentation gives). One that died in
/// between fails the statement it was used for, which sqlx then discards.
pub fn pool_options(size: u32, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgSslMode;

    use super::*;

    fn settings(url: &str) -> DatabaseSettings {
        DatabaseSettings {
            url: url.to_owned().into(),
            api_max_connections: 1,
            worker_max_connections: 1,
            api_acquire_timeout: Duration::from_secs(1),
            worker_acquire_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn tls_settings_in_the_url_are_honoured() {
        let options = options(&settings(
            "postgres://reseller:pw@db.internal:6432/reseller?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
        ))
        .unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(options.get_host(), "db.internal");
        assert_eq!(options.get_port(), 6432);
        let plain = options_of("postgres://u@h/db?sslmode=require");
        assert!(matches!(plain.get_ssl_mode(), PgSslMode::Require));
    }

    fn options_of(url: &str) -> PgConnectOptions {
        options(&settings(url)).unwrap()
    }

    #[test]
    fn a_bad_sslmode_is_refused_with_its_reason() {
        let err = options(&settings("postgres://u@h/db?sslmode=sometimes")).unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn the_statement_timeout_is_sent_on_connect() {
        let options = options_of("postgres://u@h/db");
        assert_eq!(
            options.get_options(),
            Some("-c statement_timeout=30000ms"),
            "{options:?}"
        );
    }
}
