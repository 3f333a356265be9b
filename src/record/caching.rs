//! The record behind a cache: a [`RecordStore`] composed with a [`RecordCache`],
//! the way tower-sessions composes its `CachingSessionStore`, so that neither
//! store has to know about the other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Record, RecordCache, RecordStore};
use crate::Result;
use crate::counters::{Counters, LogLimiter, incr};
use crate::sync::lock;

/// Reads the record from the cache first and from the store on a miss (filling
/// the cache); writes go to the store, and what the store answers goes to the
/// cache.
///
/// A cache write can fail while the store's succeeded. Then the record waits in
/// the refill slot: reads merge it over what the cache serves
/// ([`Record::merge`]), and [`retry_refill`](Self::retry_refill) writes it again
/// until the cache takes it, so that a failed cache write never hides a record
/// this instance wrote. The cache's merge never lowers, so a late write is safe.
pub(crate) struct CachingRecord {
    store: Arc<dyn RecordStore>,
    /// `None`: every read goes to the store.
    cache: Option<Arc<dyn RecordCache>>,
    ttl: Duration,
    counters: Arc<Counters>,
    refill: Mutex<Option<Record>>,
    log: LogLimiter,
}

impl CachingRecord {
    pub(crate) fn new(
        store: Arc<dyn RecordStore>,
        cache: Option<Arc<dyn RecordCache>>,
        ttl: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            store,
            cache,
            ttl,
            counters,
            refill: Mutex::new(None),
            log: LogLimiter::default(),
        }
    }

    /// Whether a record waits for the cache to take it.
    pub(crate) fn refill_waiting(&self) -> bool {
        lock(&self.refill).is_some()
    }

    /// Writes a record the cache failed to take earlier, if any.
    pub(crate) async fn retry_refill(&self) {
        self.write_refill(true).await;
    }

    /// `cached` with a record the cache has not taken yet merged over it.
    fn merge_unsynced(&self, cached: Record) -> Record {
        let mut slot = lock(&self.refill);
        let Some(unsynced) = *slot else {
            return cached;
        };
        if unsynced.generation < cached.generation {
            // Reset since: the cache is ahead, the refill would be ignored.
            *slot = None;
            return cached;
        }
        let mut r = cached;
        r.merge(&unsynced);
        r
    }

    /// Writes `record` into the cache, through the refill slot.
    async fn refill(&self, record: &Record) {
        if self.cache.is_none() {
            return;
        }
        {
            let mut slot = lock(&self.refill);
            match slot.as_mut() {
                Some(r) => {
                    r.merge(record);
                }
                None => *slot = Some(*record),
            }
        }
        self.write_refill(false).await;
    }

    /// Writes the record waiting in the refill slot into the cache. It stays in
    /// the slot during the write, so reads meanwhile still merge it.
    async fn write_refill(&self, retry: bool) {
        let Some(cache) = &self.cache else { return };
        let Some(record) = *lock(&self.refill) else {
            return;
        };
        if retry {
            incr(&self.counters.cache_refill_retries);
        }
        match cache.cache_record(&record, self.ttl).await {
            Ok(()) => {
                // Unless a newer one came meanwhile: that waits for the next retry.
                let mut slot = lock(&self.refill);
                if *slot == Some(record) {
                    *slot = None;
                }
            }
            Err(e) => {
                incr(&self.counters.cache_errors);
                if !retry && self.log.allow(30) {
                    tracing::warn!(error = %e, "whos-online: record cache not written; retried at the next tick");
                } else {
                    tracing::debug!(error = %e, "whos-online: record cache not written");
                }
            }
        }
    }
}

#[async_trait]
impl RecordStore for CachingRecord {
    /// The store's, straight: the cache has no part in it.
    async fn prepare(&self) -> Result<()> {
        self.store.prepare().await
    }

    /// The record from the cache, else from the store (refilling the cache); an
    /// error only when neither answers. A cached record behind one this instance
    /// wrote but the cache has not taken yet is served with that one merged over it.
    async fn load(&self) -> Result<Record> {
        let cache_up = match &self.cache {
            None => false,
            Some(cache) => match cache.cached_record().await {
                Ok(Some(r)) => return Ok(self.merge_unsynced(r)),
                Ok(None) => true,
                Err(e) => {
                    incr(&self.counters.cache_errors);
                    tracing::debug!(error = %e, "whos-online: record cache unreadable");
                    false
                }
            },
        };
        let r = self.store.load().await?;
        if cache_up {
            self.refill(&r).await;
        }
        Ok(r)
    }

    async fn raise(&self, candidate: &Record) -> Result<Record> {
        let stored = self.store.raise(candidate).await?;
        self.refill(&stored).await;
        Ok(stored)
    }

    async fn reset(&self, to: &Record) -> Result<Record> {
        let stored = self.store.reset(to).await?;
        self.refill(&stored).await;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::record::MemoryRecord;

    /// A cache that holds one record, and fails while `down` is set.
    #[derive(Default)]
    struct TestCache {
        held: Mutex<Option<Record>>,
        down: AtomicBool,
    }

    #[async_trait]
    impl RecordCache for TestCache {
        async fn cached_record(&self) -> Result<Option<Record>> {
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::Error::Config("cache down".into()));
            }
            Ok(*lock(&self.held))
        }
        async fn cache_record(&self, record: &Record, _ttl: Duration) -> Result<()> {
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::Error::Config("cache down".into()));
            }
            lock(&self.held).get_or_insert_default().merge(record);
            Ok(())
        }
    }

    fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap()
    }

    fn caching(cache: Option<Arc<TestCache>>) -> (CachingRecord, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let store = CachingRecord::new(
            Arc::new(MemoryRecord::new()),
            cache.map(|c| c as Arc<dyn RecordCache>),
            Duration::from_secs(60),
            Arc::clone(&counters),
        );
        (store, counters)
    }

    #[tokio::test]
    async fn without_a_cache_every_read_is_the_stores() {
        let (store, counters) = caching(None);
        let raised = store.raise(&Record::seen(3, 4, at(0))).await.unwrap();
        assert_eq!(store.load().await.unwrap(), raised);
        assert!(!store.refill_waiting());
        assert_eq!(counters.snapshot().cache_errors, 0);
    }

    /// A raise the cache missed is served merged over the stale cache, and
    /// written again by the retry; a cache that is down is read around.
    #[tokio::test]
    async fn a_missed_cache_write_is_merged_then_retried() {
        let cache = Arc::new(TestCache::default());
        let (store, counters) = caching(Some(Arc::clone(&cache)));
        // A miss fills the cache from the store.
        assert_eq!(store.load().await.unwrap(), Record::default());
        assert_eq!(*lock(&cache.held), Some(Record::default()));

        cache.down.store(true, Ordering::SeqCst);
        let raised = store.raise(&Record::seen(5, 6, at(1))).await.unwrap();
        assert!(store.refill_waiting());
        assert_eq!(store.load().await.unwrap(), raised, "read around the cache");
        cache.down.store(false, Ordering::SeqCst);
        assert_eq!(
            store.load().await.unwrap(),
            raised,
            "the stale cache is served with the raise merged over it"
        );
        assert_eq!(*lock(&cache.held), Some(Record::default()));
        store.retry_refill().await;
        assert!(!store.refill_waiting());
        assert_eq!(*lock(&cache.held), Some(raised));
        let c = counters.snapshot();
        assert_eq!((c.cache_errors, c.cache_refill_retries), (2, 1));
    }
}
