//! Users already named for a session key, remembered for one resolution, so
//! that a hook that must load a session runs once per resolution per session
//! instead of once per request.
//!
//! A fixed table of 4096 slots, each a small mutex taken with `try_lock`: the
//! request path never waits on it (a contended slot is a miss, and the hook
//! runs as before). Keys are what [`IdentifyUser::session_key`] returns, already
//! a keyed hash; the table holds no raw session id. It is allocated the first
//! time a hook gives a key.
//!
//! [`IdentifyUser::session_key`]: crate::IdentifyUser::session_key

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::clock::Clock;
use crate::identity::User;

/// Slots in the table: about 4096 sessions active within one resolution are
/// remembered before they evict each other (an eviction costs one more load).
const SLOTS: usize = 4096;

struct Known {
    key: u64,
    name: String,
    hidden: bool,
    at: i64,
}

type Slots = Box<[Mutex<Option<Known>>]>;

/// Who each recent session key was, for one resolution.
pub(crate) struct KnownUsers {
    /// Whole seconds an answer is reused; zero turns the table off.
    resolution: i64,
    clock: Arc<dyn Clock>,
    slots: OnceLock<Slots>,
}

impl std::fmt::Debug for KnownUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownUsers")
            .field("resolution_secs", &self.resolution)
            .finish_non_exhaustive()
    }
}

impl KnownUsers {
    /// A table whose answers last `resolution` (whole seconds) on `clock`.
    pub(crate) fn new(resolution: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            resolution: i64::try_from(resolution.as_secs()).unwrap_or(i64::MAX),
            clock,
            slots: OnceLock::new(),
        }
    }

    /// Whether answers are remembered at all.
    pub(crate) fn is_on(&self) -> bool {
        self.resolution > 0
    }

    fn slot(slots: &Slots, key: u64) -> &Mutex<Option<Known>> {
        &slots[(key as usize) & (SLOTS - 1)]
    }

    /// The user named for `key` less than a resolution ago, if any. Never waits.
    pub(crate) fn get(&self, key: u64) -> Option<User> {
        let slots = self.slots.get()?;
        let guard = Self::slot(slots, key).try_lock().ok()?;
        let known = guard.as_ref()?;
        let age = self.clock.unix_secs().checked_sub(known.at)?;
        (known.key == key && (0..self.resolution).contains(&age))
            .then(|| User::new(known.name.clone()).with_hidden(known.hidden))
    }

    /// Remembers what the hook said of `key`: the user, or that there is none
    /// (which forgets an older answer). Skipped if the slot is busy.
    pub(crate) fn put(&self, key: u64, user: Option<&User>) {
        if !self.is_on() {
            return;
        }
        let slots = match user {
            Some(_) => self.slots.get_or_init(|| {
                (0..SLOTS)
                    .map(|_| Mutex::new(None))
                    .collect::<Vec<_>>()
                    .into_boxed_slice()
            }),
            None => match self.slots.get() {
                Some(slots) => slots,
                None => return,
            },
        };
        let Ok(mut guard) = Self::slot(slots, key).try_lock() else {
            return;
        };
        match user {
            Some(user) => {
                *guard = Some(Known {
                    key,
                    name: user.name().to_owned(),
                    hidden: user.is_hidden(),
                    at: self.clock.unix_secs(),
                });
            }
            None => {
                if guard.as_ref().is_some_and(|k| k.key == key) {
                    *guard = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn an_answer_lasts_one_resolution_and_none_forgets_it() {
        let clock = ManualClock::at_unix(1_764_000_000);
        let known = KnownUsers::new(Duration::from_secs(30), Arc::new(clock.clone()));
        assert_eq!(known.get(7), None);
        known.put(7, Some(&User::hidden("alice")));
        assert_eq!(known.get(7), Some(User::hidden("alice")));
        assert_eq!(known.get(7 + SLOTS as u64), None, "another key, same slot");
        clock.advance_secs(29);
        assert_eq!(known.get(7), Some(User::hidden("alice")));
        clock.advance_secs(1);
        assert_eq!(known.get(7), None, "stale after the resolution");
        known.put(7, Some(&User::new("alice")));
        known.put(7, None);
        assert_eq!(known.get(7), None, "the hook found no user: forgotten");
        clock.advance_secs(-5);
        known.put(8, Some(&User::new("bob")));
        clock.advance_secs(-1);
        assert_eq!(known.get(8), None, "a clock that goes back: stale");
    }

    #[test]
    fn zero_resolution_remembers_nothing() {
        let known = KnownUsers::new(Duration::ZERO, Arc::new(ManualClock::at_unix(0)));
        known.put(1, Some(&User::new("alice")));
        assert_eq!(known.get(1), None);
        assert!(!known.is_on());
    }
}
