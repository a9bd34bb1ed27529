//! What returning a connection to the pool does, against a scripted Postgres that records what
//! it receives (the vendored sqlx-core's two pool changes, `vendor/sqlx-core/PATCHED.md`):
//! - a release costs no round trip (sqlx 0.9.0 sent a Sync and waited for its answer on every
//!   release: a second round trip for every one-statement request);
//! - a dropped transaction's ROLLBACK still reaches the server when its connection is
//!   returned, not when it is next used;
//! - a connection whose server went silent gives its place in the pool back after a bound
//!   (sqlx 0.9.0 waited forever and the pool shrank by one for good: sqlx issue #4349).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the scripted server answers once a connection is established.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// Every simple query completes; every Sync is answered.
    Answer,
    /// Nothing is answered after the start-up: a peer gone silent without a reset.
    Silent,
}

/// What the scripted server received, in order, over all connections: `Q:<sql>` for a simple
/// query, `S` for a Sync, `X` for a Terminate, `C` for a new connection.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    fn push(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, what: &str) -> usize {
        self.all().iter().filter(|w| *w == what).count()
    }
}

/// A Postgres that speaks just enough of the protocol for sqlx: trust start-up, simple
/// queries, Sync. Returns its connect options and what it received.
async fn scripted_postgres(script: Script) -> (PgConnectOptions, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Received::default();
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            log.push("C".into());
            tokio::spawn(serve(socket, script, log.clone()));
        }
    });
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("scripted")
        .database("scripted")
        .ssl_mode(sqlx::postgres::PgSslMode::Disable);
    (options, received)
}

async fn serve(mut socket: TcpStream, script: Script, log: Received) -> std::io::Result<()> {
    // Start-up message: length, protocol, parameters; no type byte.
    let len = socket.read_u32().await? as usize;
    let mut startup = vec![0; len - 4];
    socket.read_exact(&mut startup).await?;
    socket
        .write_all(&message(b'R', &0u32.to_be_bytes()))
        .await?;
    socket.write_all(&message(b'Z', b"I")).await?;
    loop {
        let kind = socket.read_u8().await?;
        let len = socket.read_u32().await? as usize;
        let mut body = vec![0; len - 4];
        socket.read_exact(&mut body).await?;
        match kind {
            b'Q' => {
                let sql = String::from_utf8_lossy(&body)
                    .trim_end_matches('\0')
                    .to_owned();
                log.push(format!("Q:{sql}"));
                if script == Script::Answer {
                    let status: &[u8] = match sql.as_str() {
                        "BEGIN" => b"T",
                        _ => b"I",
                    };
                    socket.write_all(&message(b'C', b"OK\0")).await?;
                    socket.write_all(&message(b'Z', status)).await?;
                }
            }
            b'S' => {
                log.push("S".into());
                if script == Script::Answer {
                    socket.write_all(&message(b'Z', b"I")).await?;
                }
            }
            b'X' => {
                log.push("X".into());
                return Ok(());
            }
            other => log.push(format!("?{}", other as char)),
        }
    }
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// One connection, no ping on acquire: what is seen is the release's doing.
async fn pool_of_one(options: PgConnectOptions, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .unwrap()
}

#[tokio::test]
async fn returning_a_connection_costs_no_round_trip() {
    let (options, received) = scripted_postgres(Script::Answer).await;
    let pool = pool_of_one(options, Duration::from_secs(10)).await;
    for _ in 0..3 {
        sqlx::raw_sql("SELECT 1").execute(&pool).await.unwrap();
    }
    // The only connection comes back once its release is complete.
    drop(pool.acquire().await.unwrap());
    assert_eq!(received.count("Q:SELECT 1"), 3, "{:?}", received.all());
    assert_eq!(
        received.count("S"),
        0,
        "a release sent a Sync: {:?}",
        received.all()
    );
}

#[tokio::test]
async fn a_dropped_transaction_is_rolled_back_when_its_connection_is_returned() {
    let (options, received) = scripted_postgres(Script::Answer).await;
    let pool = pool_of_one(options, Duration::from_secs(10)).await;
    let tx: Transaction<'_, Postgres> = pool.begin().await.unwrap();
    drop(tx);
    // Back in the pool, and nothing run on it yet: the ROLLBACK went out with the release.
    let conn = pool.acquire().await.unwrap();
    assert_eq!(
        received.count("Q:ROLLBACK"),
        1,
        "the ROLLBACK waited in the connection's buffer: {:?}",
        received.all()
    );
    drop(conn);
}

#[tokio::test]
async fn a_connection_to_a_silent_server_gives_its_place_back() {
    let (options, received) = scripted_postgres(Script::Silent).await;
    // Longer than the release's bound (5 s), shorter than forever.
    let pool = pool_of_one(options, Duration::from_secs(20)).await;
    // The statement goes out and is never answered; the caller gives up and drops it, so the
    // connection is returned with an answer still owed.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        sqlx::raw_sql("SELECT 1").execute(&pool),
    )
    .await;
    assert!(gave_up.is_err(), "the silent server answered");
    let next = pool.acquire().await;
    assert!(
        next.is_ok(),
        "the pool's only place stayed with the silent connection: {:?}",
        next.err()
    );
    assert_eq!(
        received.count("C"),
        2,
        "the pool did not open a fresh connection"
    );
}
