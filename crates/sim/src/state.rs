//! The emulator's shared state behind `Sim`'s `Arc`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::SimConfig;
use crate::faults::Faults;
use crate::hash::{Mac, mix};
use crate::limits::RateLimiter;
use crate::stats::Counters;
use crate::token::Issuer;
use crate::world::World;
use crate::world::snapshot::Snapshot;

pub(crate) struct Inner {
    pub(crate) config: SimConfig,
    pub(crate) world: World,
    tick: AtomicI64,
    pub(crate) issuer: Issuer,
    pub(crate) sas: Mac,
    pub(crate) faults: Faults,
    pub(crate) counters: Counters,
    pub(crate) limiter: Mutex<RateLimiter>,
    pub(crate) arm_buckets: Mutex<crate::http::ArmBuckets>,
    /// Resource Graph query times per principal (15 per 5 s window).
    pub(crate) graph_quota:
        Mutex<std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>>,
    /// Numbers requests for the random fault schedule.
    pub(crate) requests: AtomicU64,
    pub(crate) compression: AtomicBool,
    /// Object id of the app's service principal (`oid`/`sub` claims).
    pub(crate) principal: String,
    exposure: Mutex<Option<(i64, Arc<Vec<u32>>)>>,
}

/// Per-process random keys: tokens and SAS URLs of another emulator instance are foreign here.
fn random_key() -> [u64; 4] {
    let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
    let (c, d) = uuid::Uuid::new_v4().as_u64_pair();
    [a, b, c, d]
}

impl Inner {
    pub(crate) fn new(config: SimConfig) -> Inner {
        let world = World::new(&config);
        let principal = crate::world::guid(mix(mix(config.seed, 0x0B1D), world.device_hash(0)));
        Inner {
            world,
            tick: AtomicI64::new(0),
            issuer: Issuer::new(random_key()),
            sas: Mac::new(random_key()),
            faults: Faults::default(),
            counters: Counters::default(),
            limiter: Mutex::new(RateLimiter::default()),
            arm_buckets: Mutex::new(crate::http::ArmBuckets::default()),
            graph_quota: Mutex::new(std::collections::HashMap::new()),
            requests: AtomicU64::new(0),
            compression: AtomicBool::new(true),
            principal,
            exposure: Mutex::new(None),
            config,
        }
    }

    pub(crate) fn tick(&self) -> i64 {
        self.tick.load(Ordering::SeqCst)
    }

    pub(crate) fn advance(&self, n: u32) -> i64 {
        self.tick.fetch_add(i64::from(n), Ordering::SeqCst) + i64::from(n)
    }

    /// Devices exposed to each CVE at a tick; computed once per tick (a scan of every device).
    pub(crate) fn exposure(&self, tick: i64) -> Arc<Vec<u32>> {
        let mut cache = self.exposure.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, counts)) = cache.as_ref()
            && *t == tick
        {
            return counts.clone();
        }
        let counts = Arc::new(Snapshot::new(&self.world, tick).exposure());
        *cache = Some((tick, counts.clone()));
        counts
    }
}
