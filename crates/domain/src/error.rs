//! The domain crate's error.

/// What domain functions can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist (or belongs to someone else).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The request is invalid; the text names the field.
    #[error("{0}")]
    Invalid(String),
    /// A stored value could not be read back.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Database failure.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Job queue failure.
    #[error("job queue: {0}")]
    Queue(String),
    /// A customer's limit would be exceeded; nothing was done.
    #[error("the {name} limit ({limit}) would be exceeded: {usage} used")]
    LimitExceeded {
        /// `max_agents` or `monthly_spend_cents`.
        name: &'static str,
        /// The limit.
        limit: i64,
        /// What is used already.
        usage: i64,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True for a unique-constraint violation on `constraint`.
    pub fn is_unique_violation(&self, constraint: &str) -> bool {
        matches!(self, Error::Database(sqlx::Error::Database(db))
            if db.is_unique_violation() && db.constraint() == Some(constraint))
    }
}
