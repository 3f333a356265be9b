//! Visitor privacy: keyed, daily-rotating pseudonyms unless raw addresses are
//! asked for.

mod common;

use common::{Site, Stack};
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_stored_as_keyed_hashes_by_default() {
    let site = Site::new(Stack::Real).await;
    site.visit("203.0.113.7").await;
    site.visit("203.0.113.7").await;
    site.visit("2001:db8::7").await;
    site.settle().await;
    let members = common::redis_members(&site.prefix, "visitors").await;
    assert_eq!(members.len(), 2);
    for m in &members {
        assert_eq!(m.len(), 24, "{m}");
        assert!(m.bytes().all(|b| b.is_ascii_hexdigit()), "{m}");
        assert!(!m.contains("203") && !m.contains("2001"), "{m}");
    }
    assert_eq!(site.whos.visitor_count().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_addresses_only_when_asked_for() {
    let site = Site::with(Stack::Real, |b| b.raw_visitor_addresses(true)).await;
    site.visit("203.0.113.7").await;
    site.settle().await;
    assert_eq!(
        common::redis_members(&site.prefix, "visitors").await,
        ["203.0.113.7"]
    );
}

/// The documented scheme, pinned: day key = HMAC(secret, "whos-online day
/// YYYY-MM-DD"), member = first 12 bytes of HMAC(day key, address octets), hex.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_secret_gives_the_documented_pseudonym() {
    let site = Site::with(Stack::Real, |b| b.visitor_secret(b"s3cret".to_vec())).await;
    site.clock.set_unix(1_764_185_364); // 2025-11-26T19:29:24Z
    site.visit("203.0.113.7").await;
    site.settle().await;
    let day_key = hmac(b"s3cret", b"whos-online day 2025-11-26");
    let expected = hex(&hmac(&day_key, &[203, 0, 113, 7])[..12]);
    assert_eq!(
        common::redis_members(&site.prefix, "visitors").await,
        [expected]
    );
    // No key material in Redis: the day key comes from the secret alone.
    let pool = axum_whos_online::redis_pool(&common::redis_url()).unwrap();
    let mut conn = pool.get().await.unwrap();
    let keys: Vec<String> = deadpool_redis::redis::cmd("KEYS")
        .arg(format!("{{{}}}:visitor-key*", site.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

/// Without a configured secret, instances share the day's key through Redis, so
/// one visitor seen by two instances is one member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_the_day_key() {
    let a = Site::new(Stack::Real).await;
    let prefix = a.prefix.clone();
    let b = Site::with(Stack::Real, move |b| {
        b.prefix(prefix)
            .redis(axum_whos_online::redis_pool(&common::redis_url()).unwrap())
    })
    .await;
    b.clock
        .set_unix(axum_whos_online::Clock::unix_secs(&a.clock));
    a.visit("198.51.100.4").await;
    b.visit("198.51.100.4").await;
    a.whos.flush().await.unwrap();
    b.whos.flush().await.unwrap();
    assert_eq!(common::redis_members(&a.prefix, "visitors").await.len(), 1);
    assert_eq!(a.whos.refresh_now().await.unwrap().visitor_count(), 1);
}

/// A new UTC day gives the same address a new pseudonym: the stored data cannot
/// follow a visitor across days. A visitor online across midnight still counts
/// once: writing the new pseudonym retires the old one.
async fn pseudonyms_rotate_daily(stack: Stack) {
    let site = Site::new(stack).await;
    site.clock.set_unix(1_764_201_540); // 2025-11-26T23:59:00Z
    site.visit("203.0.113.7").await;
    site.visit("203.0.113.8").await;
    site.settle().await;
    let before = match stack {
        Stack::Real => common::redis_members(&site.prefix, "visitors").await,
        Stack::Memory => Vec::new(),
    };
    site.clock.advance_secs(120); // 00:01 the next day, still within the window
    site.visit("203.0.113.7").await;
    site.settle().await;
    // .7 under the new day's pseudonym only; .8, not seen since, under the old.
    assert_eq!(site.whos.visitor_count().await.unwrap(), 2);
    if stack == Stack::Real {
        let after = common::redis_members(&site.prefix, "visitors").await;
        assert_eq!((before.len(), after.len()), (2, 2));
        let kept: Vec<_> = after.iter().filter(|m| before.contains(m)).collect();
        assert_eq!(
            kept.len(),
            1,
            "one old member retired, one kept: {before:?} -> {after:?}"
        );
    }
}

on_both_stacks!(pseudonyms_rotate_daily);
