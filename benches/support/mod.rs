//! Helpers shared by the benches that fill Redis themselves (`ticker`,
//! `places`).

use std::time::Duration;

/// Member `i` in the shape of the crate's default visitor pseudonyms: a fixed
/// mixing of `i`, distinct for distinct `i`, 24 hex digits that look random.
pub fn pseudonym(i: u64) -> String {
    let a = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = (i ^ 0x5851_F42D_4C95_7F2D).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!("{:016x}{:08x}", a, b >> 32)
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
