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
//! * otherwise a random secret per day kept in the presence store (in Redis
//!   `{prefix}:visitor-key:YYYY-MM-DD`, expiring after two days), shared by all
//!   instances. Each write confirms it in the same round trip: the store keeps
//!   the first secret proposed for a day and writes visitors only under the one
//!   it holds, so a restart, flush or eviction can never leave two secrets (and
//!   every visitor counted twice) for one day. When the secret of a day is lost
//!   while its members remain, those members are removed and come back at
//!   their next request;
//! * with the in-memory store, the same, held by the process.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Result;
use crate::presence::{DaySecret, DaySecrets};

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

/// Turns addresses into stored members, caching the secrets of the two latest
/// days used (today's, and yesterday's for retiring its members after midnight).
pub(crate) struct Pseudonymizer {
    ids: VisitorIds,
    secrets: Mutex<[Option<DaySecretValue>; 2]>,
}

/// A UTC day and the secret its pseudonyms are keyed from, as the presence
/// store holds it.
type DaySecretValue = (NaiveDate, String);

/// How one write keys its visitors and bots.
pub(crate) struct Keying {
    pub(crate) members: Members,
    /// The shared secret the store is to confirm, when it keeps one.
    pub(crate) keyed_by: Option<DaySecret>,
}

impl Pseudonymizer {
    pub(crate) fn new(ids: VisitorIds) -> Self {
        Self {
            ids,
            secrets: Mutex::new([None, None]),
        }
    }

    fn cached(&self, day: NaiveDate) -> Option<String> {
        let secrets = crate::sync::lock(&self.secrets);
        secrets
            .iter()
            .flatten()
            .find(|(d, _)| *d == day)
            .map(|(_, s)| s.clone())
    }

    /// Keeps `secret` as `day`'s, in place of the older of the two cached.
    /// Whether it replaced another secret for that day.
    pub(crate) fn hold(&self, day: NaiveDate, secret: String) -> bool {
        let mut secrets = crate::sync::lock(&self.secrets);
        if let Some((_, held)) = secrets.iter_mut().flatten().find(|(d, _)| *d == day) {
            let changed = *held != secret;
            *held = secret;
            return changed;
        }
        let oldest = match (&secrets[0], &secrets[1]) {
            (None, _) => 0,
            (_, None) => 1,
            (Some((a, _)), Some((b, _))) => usize::from(b < a),
        };
        secrets[oldest] = Some((day, secret));
        false
    }

    /// Drops `day`'s secret: the next keying proposes a new one and takes
    /// whatever the store holds.
    pub(crate) fn forget(&self, day: NaiveDate) {
        let mut secrets = crate::sync::lock(&self.secrets);
        for slot in secrets.iter_mut() {
            if slot.as_ref().is_some_and(|(d, _)| *d == day) {
                *slot = None;
            }
        }
    }

    /// How a write on `day` (which starts at unix second `day_start`) keys its
    /// visitors: with the configured secret, raw, or with the day's shared
    /// secret, which the store confirms in the write itself.
    pub(crate) fn keying(&self, day: NaiveDate, day_start: i64) -> Result<Keying> {
        let configured = match &self.ids {
            VisitorIds::Raw => {
                return Ok(Keying {
                    members: Members::Raw,
                    keyed_by: None,
                });
            }
            VisitorIds::Hashed { secret } => secret,
        };
        if let Some(secret) = configured {
            return Ok(Keying {
                members: Members::hashed(&derive_day_key(secret, day)),
                keyed_by: None,
            });
        }
        let candidate = random_secret()?;
        let expected = self.cached(day).unwrap_or_else(|| candidate.clone());
        Ok(Keying {
            members: Members::hashed(&derive_day_key(expected.as_bytes(), day)),
            keyed_by: Some(DaySecret {
                day: day.to_string(),
                expected,
                candidate,
                day_start,
            }),
        })
    }

    /// The members of an earlier `day` whose secret this instance or the store
    /// still holds (never storing one); `None` without it.
    pub(crate) async fn members_of(
        &self,
        day: NaiveDate,
        secrets: Option<&dyn DaySecrets>,
    ) -> Result<Option<Members>> {
        let configured = match &self.ids {
            VisitorIds::Raw => return Ok(Some(Members::Raw)),
            VisitorIds::Hashed { secret } => secret,
        };
        if let Some(secret) = configured {
            return Ok(Some(Members::hashed(&derive_day_key(secret, day))));
        }
        let secret = match self.cached(day) {
            Some(s) => s,
            None => match match secrets {
                Some(store) => store.day_secret(&day.to_string()).await?,
                None => None,
            } {
                Some(s) => {
                    self.hold(day, s.clone());
                    s
                }
                None => return Ok(None),
            },
        };
        Ok(Some(Members::hashed(&derive_day_key(
            secret.as_bytes(),
            day,
        ))))
    }
}

/// A new random day secret, hex-encoded as the store keeps it.
fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| crate::Error::Config(format!("no randomness for the visitor key: {e}")))?;
    Ok(hex(&bytes))
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

fn hex(bytes: &[u8]) -> String {
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
