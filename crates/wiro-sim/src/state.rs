//! A simulator's world kept in a file across restarts, so the `reseller up` demo finds the
//! agents it ordered before: accounts (wallets), instances, messages, the charge ledger and the
//! simulated clock. Not kept: the catalog and delays (from the configuration), faults, pending
//! OAuth consents and queued webhooks (short-lived, as a real restart would lose them).
//!
//! The file is JSON, written whole to a temporary file and renamed over the old one, so a crash
//! mid-write leaves the previous state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::watch;

use crate::clock::SimTime;
use crate::simulator::Simulator;
use crate::world::{Account, Charge, Instance, Message};

/// The file format's version: a file of another version is refused, not misread.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SavedAccount {
    api_key: String,
    api_secret: Option<String>,
    uuid: String,
    wallet_cents: i64,
    teams: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    /// Simulated now when saved: a loaded simulator never runs its clock back behind it.
    now: SimTime,
    accounts: Vec<SavedAccount>,
    instances: Vec<Instance>,
    messages: Vec<Message>,
    ledger: Vec<Charge>,
    next_instance_id: i64,
    next_message_seq: u64,
}

fn intern<'de, D: Deserializer<'de>>(
    d: D,
    known: &[&'static str],
    what: &str,
) -> Result<&'static str, D::Error> {
    let value = String::deserialize(d)?;
    known
        .iter()
        .find(|k| **k == value)
        .copied()
        .ok_or_else(|| serde::de::Error::custom(format!("unknown {what} {value:?}")))
}

pub(crate) fn message_status<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    intern(
        d,
        &[
            "agent_queue",
            "agent_start",
            "agent_output",
            "agent_end",
            "agent_error",
            "agent_cancel",
        ],
        "message status",
    )
}

pub(crate) fn charge_kind<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    intern(
        d,
        &["deploy", "renewal", "upgrade", "extra_credits"],
        "charge kind",
    )
}

impl Simulator {
    /// The world as JSON.
    fn snapshot(&self) -> Vec<u8> {
        let now = self.now();
        let world = self.world_read();
        let saved = Saved {
            format: FORMAT,
            now,
            accounts: world
                .accounts
                .values()
                .map(|a| SavedAccount {
                    api_key: a.api_key.clone(),
                    api_secret: a.api_secret.clone(),
                    uuid: a.uuid.clone(),
                    wallet_cents: a.wallet_cents,
                    teams: a.teams.clone(),
                })
                .collect(),
            instances: world.instances.values().cloned().collect(),
            messages: world.messages.values().cloned().collect(),
            ledger: world.ledger.clone(),
            next_instance_id: world.next_instance_id,
            next_message_seq: world.next_message_seq,
        };
        drop(world);
        serde_json::to_vec(&saved).expect("the world serializes")
    }

    /// Writes the world to `path` (atomically: a temporary file renamed over it).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save_state(&self, path: &Path) -> std::io::Result<()> {
        write_atomically(path, &self.snapshot())
    }

    /// Replaces the world's accounts, instances, messages and ledger with those saved in
    /// `path`, and moves the clock to at least the saved time. `Ok(false)` when there is no
    /// file (a first start).
    ///
    /// # Errors
    /// A file that cannot be read or is not a state file of this format, named with the reason.
    pub fn load_state(&self, path: &Path) -> Result<bool, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{} is not a simulator state file: {e} (move it away to start empty)",
                path.display()
            )
        })?;
        if saved.format != FORMAT {
            return Err(format!(
                "{} has state format {}, this simulator reads {FORMAT} (move it away to start empty)",
                path.display(),
                saved.format
            ));
        }
        let behind = saved.now - self.now();
        if behind > 0 {
            self.advance_ms(behind);
        }
        let mut world = self.world();
        for a in saved.accounts {
            world.accounts.insert(
                a.api_key.clone(),
                Account {
                    api_key: a.api_key,
                    api_secret: a.api_secret,
                    uuid: a.uuid,
                    wallet_cents: a.wallet_cents,
                    teams: a.teams,
                },
            );
        }
        world.instances = saved
            .instances
            .into_iter()
            .map(|i| (i.guid.clone(), i))
            .collect();
        world.messages = saved
            .messages
            .into_iter()
            .map(|m| (m.guid.clone(), m))
            .collect();
        world.ledger = saved.ledger;
        world.next_instance_id = saved.next_instance_id;
        world.next_message_seq = saved.next_message_seq;
        Ok(true)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut temporary = PathBuf::from(path);
    temporary.set_extension("json.tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Saves `sim` to `path` every `every` while it changed, and once more when `stop` turns true.
pub(crate) async fn keep(
    sim: Simulator,
    path: PathBuf,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = Vec::new();
    let save = |sim: &Simulator, last: &mut Vec<u8>| {
        let bytes = sim.snapshot();
        if bytes != *last {
            match write_atomically(&path, &bytes) {
                Ok(()) => *last = bytes,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot save the simulator's state")
                }
            }
        }
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => save(&sim, &mut last),
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    save(&sim, &mut last);
}
