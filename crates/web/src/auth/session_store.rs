//! tower-sessions' `SessionStore` on Rampart's own store (both backends), so that sessions survive
//! restarts and several `rampart serve` processes share them.
//!
//! The store keeps the SHA-256 of each session id, never the id the browser holds: someone who
//! can read the database (a backup, a replica) cannot ride a session. A signed-in session also
//! expires in the store at its absolute end ([`super::AuthSettings::session_lifetime`] after
//! sign-in), however often it is used.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rampart_store::Store;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::auth::SIGNED_IN_AT_KEY;
use crate::auth::tokens::token_hash;

#[derive(Clone)]
pub struct StoreSessions {
    store: Arc<dyn Store>,
    lifetime: Duration,
}

impl StoreSessions {
    pub fn new(store: Arc<dyn Store>, lifetime: Duration) -> Self {
        Self { store, lifetime }
    }

    /// When the record ends: its idle expiry, or its absolute end if that comes first.
    fn expiry(&self, record: &Record) -> DateTime<Utc> {
        let idle = DateTime::from_timestamp(record.expiry_date.unix_timestamp(), 0)
            .unwrap_or_else(Utc::now);
        let absolute = record
            .data
            .get(SIGNED_IN_AT_KEY)
            .and_then(serde_json::Value::as_i64)
            .and_then(DateTime::from_timestamp_micros)
            .and_then(|at| {
                chrono::Duration::from_std(self.lifetime)
                    .ok()
                    .map(|l| at + l)
            });
        match absolute {
            Some(end) if end < idle => end,
            _ => idle,
        }
    }
}

/// What the store keeps of a session id.
fn stored_id(id: &Id) -> String {
    token_hash(&id.to_string())
}

impl std::fmt::Debug for StoreSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSessions")
    }
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for StoreSessions {
    /// A new session: its random id is drawn again in the (astronomically unlikely) case it is
    /// taken, so that two visitors never share a session.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        while self.load(&record.id).await?.is_some() {
            record.id = Id::default();
        }
        self.save(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(record)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        self.store
            .save_session(&stored_id(&record.id), &data, self.expiry(record))
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let data = self
            .store
            .load_session(&stored_id(id), Utc::now())
            .await
            .map_err(backend)?;
        data.map(|d| {
            serde_json::from_str(&d).map_err(|e| session_store::Error::Decode(e.to_string()))
        })
        .transpose()
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store
            .delete_session(&stored_id(id))
            .await
            .map_err(backend)
    }
}
