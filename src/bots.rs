//! Crawlers and other bots, recognised by their `User-Agent`.
//!
//! Bots are counted in a set of their own (`bot_count` in `/online`) and never as
//! visitors, so a crawl cannot inflate "most visitors ever online". A logged-in
//! user is always a user, whatever the agent says.

use std::sync::Arc;

use http::HeaderMap;
use http::header::USER_AGENT;

/// Tokens that mark an agent as a bot, matched case-insensitively anywhere in the
/// `User-Agent`. Chosen to catch the large crawlers (they name themselves
/// `...bot/`, `...bot;` and link `+http://...`), link-preview fetchers, uptime
/// monitors and HTTP libraries, without catching browsers.
pub const DEFAULT_BOT_PATTERNS: &[&str] = &[
    "bot/",
    "bot;",
    "bot)",
    "bot-",
    "bot.",
    "bot ",
    "+http",
    "crawl",
    "spider",
    "slurp",
    "facebookexternalhit",
    "mediapartners",
    "embedly",
    "preview",
    "headlesschrome",
    "phantomjs",
    "lighthouse",
    "pingdom",
    "uptime",
    "monitor",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "axios/",
    "node-fetch",
    "undici",
    "scrapy",
    "feedfetcher",
    "ia_archiver",
];

/// How much of the `User-Agent` is examined; bots name themselves early.
const MAX_AGENT_BYTES: usize = 512;

/// Decides whether a request comes from a bot, by `User-Agent` patterns.
///
/// Requests without a `User-Agent` are not bots (many privacy tools strip it).
///
/// ```
/// use whos_online::BotFilter;
/// let bots = BotFilter::default().with_pattern("my-monitor");
/// assert!(bots.is_bot("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"));
/// assert!(bots.is_bot("my-monitor v2"));
/// assert!(!bots.is_bot("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"));
/// assert!(!BotFilter::none().is_bot("Googlebot/2.1"));
/// ```
#[derive(Debug, Clone)]
pub struct BotFilter {
    patterns: Arc<[Box<[u8]>]>,
}

impl Default for BotFilter {
    /// The built-in [`DEFAULT_BOT_PATTERNS`].
    fn default() -> Self {
        Self::new(DEFAULT_BOT_PATTERNS.iter().copied())
    }
}

impl BotFilter {
    /// Only these patterns (case-insensitive substrings of the `User-Agent`).
    pub fn new<I, P>(patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        Self {
            patterns: patterns
                .into_iter()
                .filter(|p| !p.as_ref().is_empty())
                .map(|p| {
                    p.as_ref()
                        .to_ascii_lowercase()
                        .into_bytes()
                        .into_boxed_slice()
                })
                .collect(),
        }
    }

    /// Nobody is a bot: every anonymous request counts as a visitor.
    pub fn none() -> Self {
        Self::new(std::iter::empty::<&str>())
    }

    /// Adds a pattern.
    pub fn with_pattern(self, pattern: impl AsRef<str>) -> Self {
        let mut all: Vec<String> = self
            .patterns
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        all.push(pattern.as_ref().to_owned());
        Self::new(all)
    }

    /// Whether `user_agent` matches a pattern.
    pub fn is_bot(&self, user_agent: impl AsRef<[u8]>) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let ua = user_agent.as_ref();
        let ua = &ua[..ua.len().min(MAX_AGENT_BYTES)];
        let mut lower = [0u8; MAX_AGENT_BYTES];
        let lower = &mut lower[..ua.len()];
        for (l, b) in lower.iter_mut().zip(ua) {
            *l = b.to_ascii_lowercase();
        }
        self.patterns
            .iter()
            .any(|p| p.len() <= lower.len() && lower.windows(p.len()).any(|w| w == &p[..]))
    }

    /// Whether the request's headers mark a bot.
    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get(USER_AGENT)
            .is_some_and(|ua| self.is_bot(ua.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_agents() {
        let f = BotFilter::default();
        for bot in [
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; +https://openai.com/gptbot)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
        ] {
            assert!(f.is_bot(bot), "{bot}");
        }
        for browser in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "",
        ] {
            assert!(!f.is_bot(browser), "{browser}");
        }
    }

    #[test]
    fn non_utf8_and_huge_agents_are_fine() {
        let f = BotFilter::default();
        assert!(!f.is_bot(b"\xff\xfe\x00"));
        assert!(!f.is_bot("a".repeat(100_000)));
        assert!(f.is_bot(format!("Googlebot/2.1 {}", "a".repeat(100_000))));
    }
}
