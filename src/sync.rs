//! The one way this crate takes a lock, and the one loop its background
//! tasks run.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Locks `m`, taking the data even if a thread panicked while holding it: every
/// value kept behind these locks is valid after any single update, so a panic
/// elsewhere must not stop who's online.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `step` on `target` every `period` (the first at once) until `cancel`
/// fires or every strong reference to `target` is gone; a late step is
/// skipped, not bursted. Holds `target` weakly between steps, so dropping
/// every handle ends the task. Returns `target` when cancelled while it is
/// still alive, for the caller's last words.
pub(crate) async fn every<T, F, Fut>(
    target: Weak<T>,
    period: Duration,
    cancel: CancellationToken,
    mut step: F,
) -> Option<Arc<T>>
where
    F: FnMut(Arc<T>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return target.upgrade(),
            _ = interval.tick() => step(target.upgrade()?).await,
        }
    }
}
