//! The store's errors. Each message says what failed and, where there is one, what to do about it;
//! none contains a secret (PostgreSQL URLs are shown without their password).

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist. The message names it.
    #[error("{0}")]
    NotFound(String),

    /// The request contradicts what is stored (a name already taken, a run already running, a run
    /// already finished). The message says which and what to do.
    #[error("{0}")]
    Conflict(String),

    /// The caller passed something the store cannot accept (a run that belongs to another
    /// integration, a finish without a final status).
    #[error("{0}")]
    InvalidInput(String),

    /// The database URL cannot be understood.
    #[error(
        "'{url}' is not a database URL Rampart understands: {reason}. Use sqlite://PATH (or just a file path) for SQLite, or postgres://USER:PASSWORD@HOST:PORT/DATABASE for PostgreSQL"
    )]
    InvalidUrl { url: String, reason: String },

    /// The SQLite database file (or its directory) cannot be created or opened.
    #[error("cannot open the database file {path}: {reason}")]
    Open { path: String, reason: String },

    /// The PostgreSQL server cannot be reached or refused us.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },

    /// The schema could not be brought up to date.
    #[error(
        "cannot bring the database schema up to date: {0}. If this database was written by a newer Rampart, use that version; never edit an applied migration"
    )]
    Migration(String),

    /// A statement failed. `op` says what the store was doing.
    #[error("database error while {op}: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// A stored value cannot be read back (e.g. an unknown enum word): written by a newer version
    /// or edited by hand.
    #[error(
        "the database holds a value Rampart cannot read ({0}); was it written by a newer version of Rampart or edited by hand?"
    )]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a driver error with what the store was doing.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Database { op, source }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
