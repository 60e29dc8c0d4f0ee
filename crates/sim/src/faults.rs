//! Fault injection: a random schedule (`SimConfig::fault_rate`) and targeted faults for tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::hash::{mix, pick, unit};
use crate::stats::Family;

/// What to do to one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    /// Answer with this status and the family's error body (429 gets `Retry-After: 1`).
    Status(u16),
    /// A 200 whose body stops half-way (valid status, JSON cut off).
    Truncate,
    /// Drop the connection in the middle of the body.
    Reset,
    /// Deliver the body slowly.
    Slow,
    /// A 200 whose body, whole and of the right length, is not valid JSON (a value `NaN` in the
    /// first record, as a serializer bug would write it).
    Garble,
    /// A 200 whose collection carries one extra record that is valid JSON but of a shape no
    /// client expects (numbers where Microsoft sends strings), before the real ones.
    OddRecord,
}

#[derive(Default)]
struct Plan {
    fail: Vec<(String, u16, u32)>,
    truncate: Vec<(String, u32)>,
    reset: Vec<(String, u32)>,
    garble: Vec<(String, u32)>,
    odd: Vec<(String, u32)>,
    /// Token requests still answered 429, the `Retry-After` they carry, and whether their body is
    /// Entra's JSON error (else the plain `Too Many Requests` MSAL users report).
    token_throttles: u32,
    token_retry_after: u32,
    token_throttle_json: bool,
    export_page: Option<u32>,
    foreign_links: u32,
    /// Downloads still served before every issued SAS link expires.
    sas_expires_after: Option<u32>,
}

/// Targeted faults. Also reachable over HTTP under `/_sim/faults/…` (see the crate docs).
///
/// `path_contains` is matched case-insensitively against the request path and query string, so
/// `"SoftwareVulnerabilitiesByMachine"`, `"/api/machines?"` or `"$skiptoken"` all work.
#[derive(Default)]
pub struct Faults {
    plan: Mutex<Plan>,
    token_epoch: AtomicU64,
    sas_revoked_before: AtomicI64,
}

fn take(list: &mut Vec<(String, u32)>, target: &str) -> bool {
    if let Some(pos) = list
        .iter()
        .position(|(needle, _)| target.contains(needle.as_str()))
    {
        list[pos].1 -= 1;
        if list[pos].1 == 0 {
            list.remove(pos);
        }
        return true;
    }
    false
}

impl Faults {
    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        // A panic elsewhere while holding the lock leaves a plan that is still usable.
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `times` requests matching `path_contains` get `status` (400–599; anything else means
    /// 500) with Microsoft's error body; 429 comes with `Retry-After: 1`.
    pub fn fail_next(&self, path_contains: &str, status: u16, times: u32) {
        if times == 0 {
            return;
        }
        let status = if (400..=599).contains(&status) {
            status
        } else {
            500
        };
        self.plan()
            .fail
            .push((path_contains.to_ascii_lowercase(), status, times));
    }

    /// The `n`-th request (1-based, counted from now) to `SoftwareVulnerabilitiesByMachine` gets a 500.
    pub fn fail_export_page(&self, n: u32) {
        self.plan().export_page = Some(n.max(1));
    }

    /// The next `times` successful responses matching `path_contains` are cut off half-way, with a 200.
    pub fn truncate_next(&self, path_contains: &str, times: u32) {
        if times > 0 {
            self.plan()
                .truncate
                .push((path_contains.to_ascii_lowercase(), times));
        }
    }

    /// The next `times` successful responses matching `path_contains` lose their connection mid-body.
    pub fn reset_next(&self, path_contains: &str, times: u32) {
        if times > 0 {
            self.plan()
                .reset
                .push((path_contains.to_ascii_lowercase(), times));
        }
    }

    /// The next `times` successful responses matching `path_contains` are whole but not valid JSON.
    pub fn garble_next(&self, path_contains: &str, times: u32) {
        if times > 0 {
            self.plan()
                .garble
                .push((path_contains.to_ascii_lowercase(), times));
        }
    }

    /// The next `times` successful collection pages matching `path_contains` carry one extra
    /// record of an unexpected shape (valid JSON, id `odd-record-N`), before their real records.
    pub fn odd_record_next(&self, path_contains: &str, times: u32) {
        if times > 0 {
            self.plan()
                .odd
                .push((path_contains.to_ascii_lowercase(), times));
        }
    }

    /// The next `times` token requests are throttled as Microsoft Entra throttles client-credential
    /// requests: HTTP 429 with `Retry-After: retry_after_secs` (Entra sends 60), per
    /// https://learn.microsoft.com/en-us/entra/msal/dotnet/advanced/client-and-server-throttling.
    /// The body is Entra's JSON error envelope when `json_body`, else the plain text
    /// `Too Many Requests` (AzureAD/microsoft-authentication-library-for-dotnet#2855).
    pub fn throttle_tokens(&self, times: u32, retry_after_secs: u32, json_body: bool) {
        let mut plan = self.plan();
        plan.token_throttles = times;
        plan.token_retry_after = retry_after_secs;
        plan.token_throttle_json = json_body;
    }

    /// A pending token throttle, consumed: its `Retry-After` in seconds and whether the body is
    /// JSON.
    pub(crate) fn take_token_throttle(&self) -> Option<(u32, bool)> {
        let mut plan = self.plan();
        if plan.token_throttles == 0 {
            return None;
        }
        plan.token_throttles -= 1;
        Some((plan.token_retry_after, plan.token_throttle_json))
    }

    /// Every access token issued so far stops working (401), as if it had expired.
    pub fn expire_tokens_now(&self) {
        self.token_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The next `times` export pages that have a next page point `@odata.nextLink` at
    /// `https://evil.example.net/…`, so clients can prove they refuse to send their token there.
    pub fn foreign_next_link(&self, times: u32) {
        self.plan().foreign_links += times;
    }

    /// Every export download URL issued so far is expired (403 `AuthenticationFailed`).
    pub fn expire_sas_now(&self) {
        self.sas_revoked_before
            .store(crate::time::wall_secs(), Ordering::SeqCst);
    }

    /// Every export download URL issued so far expires once `downloads` more export files have
    /// been requested: the downloads after them are refused with 403 `AuthenticationFailed`, as when
    /// a read outlives `sasValidHours`. Links issued later work.
    pub fn expire_sas_after(&self, downloads: u32) {
        self.plan().sas_expires_after = Some(downloads);
    }

    /// Counts one export download request and expires the SAS links when
    /// [`expire_sas_after`](Self::expire_sas_after) says so, before the request is checked.
    pub(crate) fn download_requested(&self) {
        let expire = {
            let mut plan = self.plan();
            match plan.sas_expires_after {
                Some(0) => {
                    plan.sas_expires_after = None;
                    true
                }
                Some(n) => {
                    plan.sas_expires_after = Some(n - 1);
                    false
                }
                None => false,
            }
        };
        if expire {
            self.expire_sas_now();
        }
    }

    /// Forgets all pending targeted faults (not token or SAS expiry).
    pub fn clear(&self) {
        *self.plan() = Plan::default();
    }

    pub(crate) fn token_epoch(&self) -> u64 {
        self.token_epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn sas_revoked_before(&self) -> i64 {
        self.sas_revoked_before.load(Ordering::SeqCst)
    }

    /// A targeted fault for this request, consuming it.
    pub(crate) fn targeted(&self, target: &str, export_page: bool) -> Option<Injected> {
        let target = target.to_ascii_lowercase();
        let mut plan = self.plan();
        if export_page && let Some(n) = plan.export_page {
            if n <= 1 {
                plan.export_page = None;
                return Some(Injected::Status(500));
            }
            plan.export_page = Some(n - 1);
        }
        if let Some(pos) = plan
            .fail
            .iter()
            .position(|(needle, _, _)| target.contains(needle.as_str()))
        {
            let status = plan.fail[pos].1;
            plan.fail[pos].2 -= 1;
            if plan.fail[pos].2 == 0 {
                plan.fail.remove(pos);
            }
            return Some(Injected::Status(status));
        }
        if take(&mut plan.truncate, &target) {
            return Some(Injected::Truncate);
        }
        if take(&mut plan.reset, &target) {
            return Some(Injected::Reset);
        }
        if take(&mut plan.garble, &target) {
            return Some(Injected::Garble);
        }
        if take(&mut plan.odd, &target) {
            return Some(Injected::OddRecord);
        }
        None
    }

    pub(crate) fn take_foreign_link(&self) -> bool {
        let mut plan = self.plan();
        if plan.foreign_links > 0 {
            plan.foreign_links -= 1;
            return true;
        }
        false
    }
}

/// The random schedule: a pure function of (seed, request number), so a run can be replayed.
pub(crate) fn random_fault(seed: u64, request: u64, rate: f64, family: Family) -> Option<Injected> {
    if rate <= 0.0 {
        return None;
    }
    let h = mix(mix(seed, 0xFA17), request);
    match family {
        // Token requests fail only occasionally, and only with a transient status.
        Family::Token => (unit(h) < rate / 10.0).then_some(Injected::Status(503)),
        Family::Control => None,
        Family::Blob => (unit(h) < rate).then(|| {
            pick(
                mix(h, 1),
                &[
                    (Injected::Status(500), 15u32),
                    (Injected::Status(503), 20),
                    (Injected::Reset, 20),
                    (Injected::Slow, 20),
                    (Injected::Truncate, 25),
                ],
            )
        }),
        _ => (unit(h) < rate).then(|| {
            pick(
                mix(h, 1),
                &[
                    (Injected::Status(429), 20u32),
                    (Injected::Status(500), 15),
                    (Injected::Status(503), 20),
                    (Injected::Reset, 15),
                    (Injected::Slow, 15),
                    (Injected::Truncate, 15),
                ],
            )
        }),
    }
}
