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
        source: DriverError,
    },

    /// The disk (or file system quota) holding the database is full: SQLite's SQLITE_FULL,
    /// PostgreSQL's 53100 `disk_full`. The statement's transaction was rolled back.
    #[error(
        "the disk holding the database is full (while {op}): free space on it or move the database to a larger disk, then run again. Nothing of this step was stored; what was stored before is intact"
    )]
    DiskFull {
        op: &'static str,
        #[source]
        source: DriverError,
    },

    /// The database file is damaged (SQLite's SQLITE_CORRUPT or SQLITE_NOTADB, or a failed
    /// integrity check). The message says what SQLite found.
    #[error(
        "the database is damaged: {0}. Stop Rampart, restore the database from your last backup (see docs/operations.md), and start it again"
    )]
    Damaged(String),

    /// A stored value cannot be read back (e.g. an unknown enum word): written by a newer version
    /// or edited by hand.
    #[error(
        "the database holds a value Rampart cannot read ({0}); was it written by a newer version of Rampart or edited by hand?"
    )]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a driver error with what the store was doing, naming causes an operator can act on
    /// (a full disk, a damaged file) as such rather than as a generic database error.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| {
            let cause = cause_of(&source);
            Self::classified(op, cause, DriverError::Sqlx(source))
        }
    }

    /// [`StoreError::db`] for errors of SQLite's first-load writer (`rusqlite`).
    pub(crate) fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| {
            let cause = match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DiskFull) => Cause::DiskFull,
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                    Cause::Damaged
                }
                _ => Cause::Other,
            };
            Self::classified(op, cause, DriverError::Sqlite(source))
        }
    }

    fn classified(op: &'static str, cause: Cause, source: DriverError) -> StoreError {
        match cause {
            Cause::DiskFull => StoreError::DiskFull { op, source },
            Cause::Damaged => StoreError::Damaged(format!("{source} (while {op})")),
            Cause::Other => StoreError::Database { op, source },
        }
    }
}

/// The database driver's own error, kept as the source of [`StoreError::Database`] and
/// [`StoreError::DiskFull`]: sqlx's for every statement but the bulk writes of a first load on
/// SQLite, which go through `rusqlite`.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Sqlx(sqlx::Error),
    #[error(transparent)]
    Sqlite(rusqlite::Error),
}

/// What a driver error means for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    DiskFull,
    Damaged,
    Other,
}

/// SQLite reports extended result codes (the primary code in the low byte: SQLITE_CORRUPT_INDEX
/// is 779 = 11 + 3 × 256); PostgreSQL reports SQLSTATEs. See
/// <https://www.sqlite.org/rescode.html> and
/// <https://www.postgresql.org/docs/current/errcodes-appendix.html>.
pub(crate) fn cause_of(e: &sqlx::Error) -> Cause {
    let Some(d) = e.as_database_error() else {
        return Cause::Other;
    };
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let primary = d
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff);
        return match primary {
            Some(13) => Cause::DiskFull,     // SQLITE_FULL
            Some(11 | 26) => Cause::Damaged, // SQLITE_CORRUPT, SQLITE_NOTADB
            _ => Cause::Other,
        };
    }
    match d.code().as_deref() {
        Some("53100") => Cause::DiskFull,          // disk_full
        Some("XX001" | "XX002") => Cause::Damaged, // data_corrupted, index_corrupted
        _ => Cause::Other,
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    /// The first-load writer's errors name a full disk and a damaged file as the store's
    /// sqlx errors do.
    #[test]
    fn the_first_load_writers_errors_name_their_cause() {
        let op = "upserting findings";
        let full = StoreError::sqlite(op)(sqlite_failure(13));
        assert!(matches!(full, StoreError::DiskFull { .. }), "{full:?}");
        assert!(full.to_string().contains("free space"), "{full}");
        let damaged = StoreError::sqlite(op)(sqlite_failure(11));
        assert!(matches!(damaged, StoreError::Damaged(_)), "{damaged:?}");
        assert!(damaged.to_string().contains(op), "{damaged}");
        let busy = StoreError::sqlite(op)(sqlite_failure(5));
        assert!(matches!(busy, StoreError::Database { .. }), "{busy:?}");
        assert!(busy.to_string().contains(op), "{busy}");
    }
}
