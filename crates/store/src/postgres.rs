//! The PostgreSQL backend: a connection pool; migrations under the migrator's advisory lock. Its
//! bulk writes are in `bulk`; everything else is the store written once (`crate::sql_store`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use crate::db::Pool;
use crate::error::{Result, StoreError};
use crate::sql_store::{Engine, SqlStore, deferrable_indexes};
use crate::types::Backend;

pub(crate) mod binary_copy;
pub(crate) mod bulk;
pub(crate) mod first_load;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per process. Several processes share one server: keep processes × this under
/// the server's `max_connections` (100 by default).
const POOL_SIZE: u32 = 10;

/// A URL fit for an error message or for showing: the password replaced.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                // set_password only fails for URLs that cannot have one.
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        // Unparseable: show only the scheme, the rest might hold a password.
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "(unparseable URL)".to_owned(),
        },
    }
}

impl SqlStore {
    /// Connects to `url` and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)")
        );
        // One direct connection first: the pool would keep retrying an unreachable server until
        // its acquire timeout, and then report the timeout instead of the reason.
        let probe =
            PgConnection::connect_with(&options)
                .await
                .map_err(|e| StoreError::Connect {
                    target: target.clone(),
                    reason: e.to_string(),
                })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.application_name("rampart"))
            .await
            .map_err(|e| StoreError::Connect {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        // The migrator holds pg_advisory_lock while it runs: processes starting together take
        // turns instead of racing on the schema.
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(format!("{e} (PostgreSQL database {target})")))?;
        // A bulk load that died before rebuilding the indexes it put off left them missing.
        for index in deferrable_indexes(Backend::Postgres) {
            sqlx::query(index).execute(&pool).await.map_err(|e| {
                StoreError::Migration(format!("{e} (PostgreSQL database {target})"))
            })?;
        }
        Ok(Self::new(
            Pool::Postgres(pool),
            Engine::Postgres { _attachment: None },
        ))
    }

    /// Keeps `value` alive as long as the store, and drops it after the pool.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn attach(&mut self, value: Box<dyn Send + Sync>) {
        if let Engine::Postgres {
            _attachment: attachment,
        } = &mut self.engine
        {
            *attachment = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::bulk::CopyBuf;

    #[test]
    fn copy_text_escapes_separators_and_backslashes() {
        let mut b = CopyBuf::default();
        b.text("a\tb\nc\rd\\e");
        b.null();
        b.opt_f64(Some(7.5));
        b.opt_f64(Some(f64::NAN));
        b.flag(true);
        b.end_row();
        assert_eq!(
            String::from_utf8(b.into_bytes()).unwrap(),
            "a\\tb\\nc\\rd\\\\e\t\\N\t7.5\t\\N\tt\n"
        );
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert!(!redact("postgres://u:se cret@h/db").contains("secret"));
    }
}
