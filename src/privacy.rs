//! Visitor privacy: addresses are stored as a keyed hash, never raw, by default.
//!
//! A visitor's member in Redis is `HMAC-SHA-256(day key, address)`, truncated to 96
//! bits and hex-encoded. The day key changes every UTC day, so one visitor cannot
//! be followed from one day to the next through the stored data, and without the
//! key an address cannot be recovered by trying all 2^32 IPv4 addresses.
//!
//! This is pseudonymisation, not anonymisation: whoever holds the day key (any
//! app instance, or anyone who can read it from Redis during that day) can test
//! whether a given address was online.
//!
//! Day keys come from, in order of preference:
//! * a secret given in configuration ([`Builder::visitor_secret`](crate::Builder::visitor_secret)):
//!   the day key is `HMAC-SHA-256(secret, "whos-online day YYYY-MM-DD")`, the same on
//!   every instance and across restarts;
//! * otherwise a random key per day created once in Redis with `SET NX` (and
//!   expiring after two days), shared by all instances;
//! * with the in-memory store, a random key per day held by the process.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Result;
use crate::presence::PresenceStore;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a member: 96 bits, ample against collisions among
/// a day's visitors, and short in Redis.
const MEMBER_BYTES: usize = 12;

/// How visitors are stored.
#[derive(Clone)]
pub(crate) enum VisitorIds {
    /// Keyed hash with a daily key (the default).
    Hashed { secret: Option<Arc<[u8]>> },
    /// The address itself (opt-in).
    Raw,
}

impl Default for VisitorIds {
    fn default() -> Self {
        Self::Hashed { secret: None }
    }
}

/// Turns addresses into stored members, caching the keys of the two latest days
/// used (today's, and yesterday's for retiring its members after midnight).
pub(crate) struct Pseudonymizer {
    ids: VisitorIds,
    day_keys: Mutex<[Option<DayKey>; 2]>,
}

/// A UTC day and the key of its pseudonyms.
type DayKey = (NaiveDate, [u8; 32]);

impl Pseudonymizer {
    pub(crate) fn new(ids: VisitorIds) -> Self {
        Self {
            ids,
            day_keys: Mutex::new([None, None]),
        }
    }

    /// Drops the cached keys: the store lost them with the rest, and the next
    /// write takes whatever key the instances now agree on there.
    pub(crate) fn forget(&self) {
        *self.day_keys.lock().unwrap_or_else(|e| e.into_inner()) = [None, None];
    }

    fn cached(&self, day: NaiveDate) -> Option<[u8; 32]> {
        let keys = self.day_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .flatten()
            .find(|(d, _)| *d == day)
            .map(|&(_, k)| k)
    }

    /// Keeps `day`'s key, in place of the older of the two cached.
    fn keep(&self, day: NaiveDate, key: [u8; 32]) {
        let mut keys = self.day_keys.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = match (&keys[0], &keys[1]) {
            (None, _) => 0,
            (_, None) => 1,
            (Some((a, _)), Some((b, _))) => usize::from(b < a),
        };
        keys[oldest] = Some((day, key));
    }

    /// A function from address to member for `day`, fetching the day key first
    /// if this is the first use on that day.
    pub(crate) async fn members_for(
        &self,
        day: NaiveDate,
        presence: &dyn PresenceStore,
    ) -> Result<Members> {
        let secret = match &self.ids {
            VisitorIds::Raw => return Ok(Members::Raw),
            VisitorIds::Hashed { secret } => secret,
        };
        if let Some(key) = self.cached(day) {
            return Ok(Members::hashed(&key));
        }
        let key = match secret {
            Some(secret) => derive_day_key(secret, day),
            None => {
                let mut candidate = [0u8; 32];
                getrandom::fill(&mut candidate).map_err(|e| {
                    crate::Error::Config(format!("no randomness for the visitor key: {e}"))
                })?;
                let shared = presence.daily_secret(&day.to_string(), &candidate).await?;
                // Whatever the store holds (hex or raw), fold it into a fixed-size key.
                derive_day_key(&shared, day)
            }
        };
        self.keep(day, key);
        Ok(Members::hashed(&key))
    }
}

/// Maps addresses to members for one flush.
pub(crate) enum Members {
    Raw,
    /// The HMAC with the day key already absorbed: each member then costs two
    /// SHA-256 blocks instead of four.
    Hashed(Box<HmacSha256>),
}

impl Members {
    /// Whether members change with the day (keyed hashes) or not (raw addresses).
    pub(crate) fn is_hashed(&self) -> bool {
        matches!(self, Members::Hashed(_))
    }

    pub(crate) fn hashed(day_key: &[u8; 32]) -> Self {
        Self::Hashed(Box::new(mac(day_key)))
    }

    pub(crate) fn member(&self, ip: IpAddr) -> String {
        match self {
            Members::Raw => ip.to_string(),
            Members::Hashed(keyed) => {
                let mut mac = HmacSha256::clone(keyed);
                match ip {
                    IpAddr::V4(v4) => mac.update(&v4.octets()),
                    IpAddr::V6(v6) => mac.update(&v6.octets()),
                }
                hex(&mac.finalize().into_bytes()[..MEMBER_BYTES])
            }
        }
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn derive_day_key(secret: &[u8], day: NaiveDate) -> [u8; 32] {
    let mut mac = mac(secret);
    mac.update(format!("whos-online day {day}").as_bytes());
    mac.finalize().into_bytes().into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn same_day_same_member_other_day_other_member() {
        let k1 = Members::hashed(&derive_day_key(b"secret", day(26)));
        let k2 = Members::hashed(&derive_day_key(b"secret", day(27)));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let m = k1.member(ip);
        assert_eq!(m.len(), MEMBER_BYTES * 2);
        assert!(m.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(m, k1.member(ip));
        assert_ne!(m, k2.member(ip));
        assert_ne!(m, k1.member("203.0.113.8".parse().unwrap()));
        assert!(!m.contains("203"));
        assert_eq!(Members::Raw.member(ip), "203.0.113.7");
    }

    #[test]
    fn other_secret_other_member() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let a = Members::hashed(&derive_day_key(b"a", day(26))).member(ip);
        let b = Members::hashed(&derive_day_key(b"b", day(26))).member(ip);
        assert_ne!(a, b);
    }
}
