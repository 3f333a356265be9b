//! Bots by name, and one person counted once: a guest who logs in moves from
//! the visitors to the users. On both stacks.

mod common;

use common::{ClockExt, Site, Stack, request_from};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const BINGBOT: &str = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
const UNKNOWN_BOT: &str =
    "Mozilla/5.0 (compatible; SomeNewCrawler/0.3; +https://example.com/crawler)";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

async fn visit_with_agent(site: &Site, ip: &str, agent: &str) {
    let mut req = request_from(ip, "/");
    req.headers_mut()
        .insert(http::header::USER_AGENT, agent.parse().unwrap());
    assert_eq!(site.send(req).await.status(), 200);
}

/// Bots are listed by the filter's name for them, each name once, sorted;
/// they stay out of the visitors and the record, and their names leave with
/// the window.
async fn bots_are_listed_by_name(stack: Stack) {
    let site = Site::new(stack).await;
    visit_with_agent(&site, "10.0.1.1", GOOGLEBOT).await;
    visit_with_agent(&site, "10.0.1.2", BINGBOT).await;
    visit_with_agent(&site, "10.0.1.3", GOOGLEBOT).await;
    visit_with_agent(&site, "10.0.1.4", UNKNOWN_BOT).await;
    visit_with_agent(&site, "10.0.1.5", CHROME).await;
    site.settle().await;
    let view = site.whos.view();
    assert_eq!(view.bots(), ["Googlebot", "bingbot", "bot"]);
    assert_eq!((view.bot_count(), view.visitor_count()), (4, 1));
    assert_eq!(view.record().max_visitors, 1, "bots are not in the record");
    let (_, online) = site.get_json("/online").await;
    assert_eq!(
        online["bots"],
        serde_json::json!(["Googlebot", "bingbot", "bot"])
    );
    assert_eq!(online["bot_count"], 4);
    assert_eq!(
        site.whos.online(10).await.unwrap().bots,
        ["Googlebot", "bingbot", "bot"]
    );

    // Ten minutes on, only bingbot comes back; six more, the others are gone.
    site.clock.advance_secs(600);
    visit_with_agent(&site, "10.0.1.2", BINGBOT).await;
    site.settle().await;
    site.clock.advance_secs(360);
    site.whos.tick_now().await.unwrap();
    let view = site.whos.view();
    assert_eq!(view.bots(), ["bingbot"]);
    assert_eq!(view.bot_count(), 1);
}

/// A guest who logs in is one person: the visitor entry of their address goes
/// in the write that adds the user, whether the guest's report was written
/// before or rides in the same write; hidden users too. Other addresses are
/// untouched, and IPv6 addresses count by their /64 as visitors do.
async fn a_guest_who_logs_in_counts_once(stack: Stack) {
    let site = Site::new(stack).await;
    // Written before the login.
    site.visit("10.0.2.1").await;
    site.visit("10.0.2.9").await;
    site.visit("2001:db8:1:1::10").await;
    site.settle().await;
    assert_eq!(site.whos.view().visitor_count(), 3);
    site.visit_as("alice", "10.0.2.1").await;
    site.visit_as("carol", "2001:db8:1:1::20").await; // same /64
    site.settle().await;
    let view = site.whos.view();
    assert_eq!(view.users(), ["alice", "carol"]);
    assert_eq!(view.visitor_count(), 1, "only 10.0.2.9 is still a guest");

    // In the same write as the login.
    site.visit("10.0.3.1").await;
    site.visit_as("bob", "10.0.3.1").await;
    site.settle().await;
    let view = site.whos.view();
    assert_eq!((view.user_count(), view.visitor_count()), (3, 1));
    // The record never counted the person twice either.
    assert_eq!(view.record().max_users + view.record().max_visitors, 6);
    assert!(view.record().max_visitors <= 3);
}

/// Behind one address (an office NAT), a user's report removes the address's
/// visitor entry; another guest from there comes back at their next request,
/// not a de-dup resolution later.
async fn other_guests_behind_the_address_come_back(stack: Stack) {
    let site = Site::new(stack).await;
    site.visit("10.0.4.1").await;
    site.settle().await;
    site.visit_as("alice", "10.0.4.1").await;
    site.settle().await;
    assert_eq!(site.whos.view().visitor_count(), 0);
    // A colleague's request, a second later: handed on and written.
    site.clock.advance_secs(1);
    site.visit("10.0.4.1").await;
    site.settle().await;
    let view = site.whos.view();
    assert_eq!((view.user_count(), view.visitor_count()), (1, 1));
}

/// Just after midnight (UTC) a visitor's member changes with the day's key; a
/// login then removes yesterday's entry of the address as well as today's.
async fn a_login_after_midnight_removes_yesterdays_guest(stack: Stack) {
    let site = Site::new(stack).await;
    // Thirty seconds before midnight.
    let now = site.clock.now_for_test().timestamp();
    site.clock
        .advance_secs(86_400 - now.rem_euclid(86_400) - 30);
    site.visit("10.0.5.1").await;
    site.settle().await;
    assert_eq!(site.whos.view().visitor_count(), 1);
    site.clock.advance_secs(60);
    site.visit_as("alice", "10.0.5.1").await;
    site.settle().await;
    let view = site.whos.view();
    assert_eq!((view.user_count(), view.visitor_count()), (1, 0));
}

on_both_stacks!(
    bots_are_listed_by_name,
    a_guest_who_logs_in_counts_once,
    other_guests_behind_the_address_come_back,
    a_login_after_midnight_removes_yesterdays_guest,
);
