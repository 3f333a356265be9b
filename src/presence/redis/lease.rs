//! One ticker at a time: a lease in Redis names the instance that runs the
//! background tick.
//!
//! The lease is the string `{prefix}:tick-lease`, holding the id of its holder
//! and a time to live. Each background tick first takes the lease (`SET NX PX`)
//! or, when it holds it already, renews it (compare-and-`PEXPIRE`), both in one
//! script; an instance that finds the lease held by another skips the prune and
//! count. When the holder stops (shutdown, crash, partition), the lease runs out
//! and the next instance to try takes over within one time to live.
//!
//! Nothing depends on the lease for correctness: two ticks at once only prune the
//! same members twice and raise the record through the same atomic,
//! raise-only upsert. The lease only saves the work.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_redis::redis::Script;

use super::RedisPresence;
use crate::Result;

/// Take the lease if free, renew it if ours; 1 when held afterwards, else 0.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Give the lease up if it is still ours.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// The tick lease of one instance.
pub(crate) struct TickLease {
    store: RedisPresence,
    holder: String,
    ttl_ms: u64,
}

impl std::fmt::Debug for TickLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickLease")
            .field("key", &self.store.lease_key())
            .field("holder", &self.holder)
            .field("ttl_ms", &self.ttl_ms)
            .finish()
    }
}

impl TickLease {
    /// A lease in `store`'s Redis for `holder`, lasting `ttl` past each renewal.
    pub(crate) fn new(store: RedisPresence, holder: String, ttl: Duration) -> Self {
        Self {
            store,
            holder,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// Takes or renews the lease; whether this instance holds it now.
    pub(crate) async fn acquire(&self) -> Result<bool> {
        let mut conn = self.store.conn().await?;
        let mut call = ACQUIRE.key(self.store.lease_key());
        call.arg(&self.holder).arg(self.ttl_ms);
        let held: i64 = self.store.timed(call.invoke_async(&mut conn)).await?;
        Ok(held == 1)
    }

    /// Gives the lease up if this instance still holds it, so another takes over
    /// at its next tick rather than after the time to live.
    pub(crate) async fn release(&self) -> Result<()> {
        let mut conn = self.store.conn().await?;
        let mut call = RELEASE.key(self.store.lease_key());
        call.arg(&self.holder);
        self.store
            .timed(call.invoke_async::<i64>(&mut conn))
            .await?;
        Ok(())
    }
}

/// A new id for an instance: unique across the processes sharing one Redis (the
/// process id, the start time and a random number).
pub(crate) fn new_instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    format!("{}-{:016x}", std::process::id(), h.finish())
}
