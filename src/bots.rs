//! Crawlers and other bots, recognised and named by their `User-Agent`.
//!
//! Bots are counted in a set of their own (`bot_count` in `/online`) and never as
//! visitors, so a crawl cannot inflate "most visitors ever online". A logged-in
//! user is always a user, whatever the agent says.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use crate::hash::mix;
use crate::who::BotName;

use http::HeaderMap;
use http::header::USER_AGENT;

/// The built-in patterns, each with the display name of the bot it finds:
/// `(pattern, name)`, the pattern matched case-insensitively anywhere in the
/// `User-Agent`, whose end counts as a space.
///
/// Three groups. Named crawlers and fetchers: search engines, AI crawlers, SEO
/// crawlers, link-preview fetchers (WhatsApp, `facebookexternalhit`, Slack,
/// Discord, Telegram, ...), uptime monitors and headless browsers. HTTP
/// libraries and tools that do not call themselves bots (`curl`,
/// `python-requests`, `Go-http-client`, `okhttp`, Guzzle, Postman, `axios`,
/// Java, ...). And generic patterns named [`bot`](BotName::GENERIC): a word
/// ending in `bot` (`bot/`, `bot;`, `bot)`, `bot ` and the like), `crawl`,
/// `spider`, `+http` (the contact address crawlers put in their agent),
/// `preview`, `monitor`, ...; they find bots this table does not know, and name
/// them `bot`.
///
/// Real browsers match none of them, on any platform; nor do in-app browsers
/// (Facebook, Instagram, TikTok, Telegram, ...), which people read with. A
/// phone whose model name ends in `bot` (`CUBOT P30`) is kept out by
/// [`DEFAULT_BOT_EXCEPTIONS`]. `tests/bots.rs` pins the verdict and name of
/// every agent of a corpus of real ones.
pub const DEFAULT_BOT_PATTERNS: &[(&str, &str)] = &[
    // Search engines.
    ("googlebot", "Googlebot"),
    ("adsbot-google", "AdsBot-Google"),
    ("adsbot-google-mobile", "AdsBot-Google-Mobile"),
    ("mediapartners-google", "Mediapartners-Google"),
    ("apis-google", "APIs-Google"),
    ("feedfetcher-google", "FeedFetcher-Google"),
    ("google-inspectiontool", "Google-InspectionTool"),
    ("googleother", "GoogleOther"),
    ("storebot-google", "Storebot-Google"),
    ("google-read-aloud", "Google-Read-Aloud"),
    ("google-site-verification", "Google-Site-Verification"),
    ("google-pagerenderer", "Google-PageRenderer"),
    ("google favicon", "Google Favicon"),
    ("google-safety", "Google-Safety"),
    ("google-cloudvertexbot", "Google-CloudVertexBot"),
    ("bingbot", "bingbot"),
    ("bingpreview", "BingPreview"),
    ("adidxbot", "adidxbot"),
    ("msnbot", "msnbot"),
    ("microsoftpreview", "MicrosoftPreview"),
    ("applebot", "Applebot"),
    ("applenewsbot", "AppleNewsBot"),
    ("yandexbot", "YandexBot"),
    ("yandexmobilebot", "YandexMobileBot"),
    ("yandeximages", "YandexImages"),
    ("baiduspider", "Baiduspider"),
    ("duckduckbot", "DuckDuckBot"),
    ("duckduckgo-favicons-bot", "DuckDuckGo-Favicons-Bot"),
    ("duckassistbot", "DuckAssistBot"),
    ("slurp", "Yahoo! Slurp"),
    ("sogou web spider", "Sogou"),
    ("360spider", "360Spider"),
    ("yisouspider", "YisouSpider"),
    ("yeti/", "Yeti"),
    ("seznambot", "SeznamBot"),
    ("coccocbot", "coccocbot"),
    ("qwantbot", "Qwantbot"),
    ("qwantify", "Qwantify"),
    ("petalbot", "PetalBot"),
    ("mojeekbot", "MojeekBot"),
    ("exabot", "Exabot"),
    ("daumoa", "Daumoa"),
    // AI crawlers and assistants fetching for a user.
    ("gptbot", "GPTBot"),
    ("chatgpt-user", "ChatGPT-User"),
    ("oai-searchbot", "OAI-SearchBot"),
    ("claudebot", "ClaudeBot"),
    ("claude-user", "Claude-User"),
    ("claude-searchbot", "Claude-SearchBot"),
    ("claude-web", "Claude-Web"),
    ("anthropic-ai", "anthropic-ai"),
    ("perplexitybot", "PerplexityBot"),
    ("perplexity-user", "Perplexity-User"),
    ("ccbot", "CCBot"),
    ("bytespider", "Bytespider"),
    ("tiktokspider", "TikTokSpider"),
    ("amazonbot", "Amazonbot"),
    ("cohere-ai", "cohere-ai"),
    ("mistralai-user", "MistralAI-User"),
    ("diffbot", "Diffbot"),
    ("youbot", "YouBot"),
    ("ai2bot", "AI2Bot"),
    ("timpibot", "Timpibot"),
    ("imagesiftbot", "ImagesiftBot"),
    ("omgili", "omgili"),
    // SEO and other commercial crawlers.
    ("semrushbot", "SemrushBot"),
    ("siteauditbot", "SiteAuditBot"),
    ("ahrefsbot", "AhrefsBot"),
    ("ahrefssiteaudit", "AhrefsSiteAudit"),
    ("mj12bot", "MJ12bot"),
    ("dotbot", "DotBot"),
    ("rogerbot", "rogerbot"),
    ("blexbot", "BLEXBot"),
    ("dataforseobot", "DataForSeoBot"),
    ("serpstatbot", "serpstatbot"),
    ("barkrowler", "Barkrowler"),
    ("seokicks", "SEOkicks"),
    ("megaindex", "MegaIndex"),
    ("seekportbot", "SeekportBot"),
    ("zoominfobot", "ZoominfoBot"),
    ("screaming frog", "Screaming Frog"),
    ("sitebulb", "Sitebulb"),
    // Archives.
    ("ia_archiver", "ia_archiver"),
    ("archive.org_bot", "archive.org_bot"),
    // Link previews: a message or post that shows a link makes its app fetch it.
    ("facebookexternalhit", "facebookexternalhit"),
    ("facebot", "Facebot"),
    ("facebookcatalog", "facebookcatalog"),
    ("meta-externalagent", "meta-externalagent"),
    ("meta-externalfetcher", "meta-externalfetcher"),
    ("twitterbot", "Twitterbot"),
    ("linkedinbot", "LinkedInBot"),
    ("slackbot", "Slackbot"),
    ("slack-imgproxy", "Slack-ImgProxy"),
    ("discordbot", "Discordbot"),
    ("whatsapp/", "WhatsApp"),
    ("telegrambot", "TelegramBot"),
    ("skypeuripreview", "SkypeUriPreview"),
    ("pinterestbot", "Pinterestbot"),
    ("redditbot", "redditbot"),
    ("vkshare", "vkShare"),
    ("snap url preview", "Snapchat"),
    ("bluesky cardyb", "Bluesky"),
    ("mastodon/", "Mastodon"),
    ("iframely", "Iframely"),
    ("embedly", "Embedly"),
    ("flipboardproxy", "FlipboardProxy"),
    // Monitors, audits, validators and headless browsers.
    ("uptimerobot", "UptimeRobot"),
    ("pingdom", "Pingdom"),
    ("statuscake", "StatusCake"),
    ("site24x7", "Site24x7"),
    ("uptime-kuma", "Uptime-Kuma"),
    ("lighthouse", "Lighthouse"),
    ("gtmetrix", "GTmetrix"),
    ("w3c_validator", "W3C_Validator"),
    ("headlesschrome", "HeadlessChrome"),
    ("phantomjs", "PhantomJS"),
    // HTTP libraries and command-line tools.
    ("curl/", "curl"),
    ("wget/", "Wget"),
    ("httpie/", "HTTPie"),
    ("python-requests", "python-requests"),
    ("python-urllib", "Python-urllib"),
    ("python-httpx", "python-httpx"),
    ("httpx", "httpx"),
    ("aiohttp", "aiohttp"),
    ("scrapy", "Scrapy"),
    ("go-http-client", "Go-http-client"),
    ("okhttp", "okhttp"),
    ("java/", "Java"),
    ("java-http-client", "Java"),
    ("apache-httpclient", "Apache-HttpClient"),
    ("guzzlehttp", "Guzzle"),
    ("postmanruntime", "PostmanRuntime"),
    ("insomnia/", "Insomnia"),
    ("axios/", "axios"),
    ("node-fetch", "node-fetch"),
    ("undici", "undici"),
    ("deno/", "Deno"),
    ("(dart:io)", "Dart"),
    ("libwww-perl", "libwww-perl"),
    ("powershell/", "PowerShell"),
    ("wordpress/", "WordPress"),
    // Generic: bots this table does not name. `bot` must end a word, so that
    // `robots` or `bottom` do not match; a `bot` that ends the agent is caught by
    // `bot ` (the end counts as a space).
    ("bot/", "bot"),
    ("bot;", "bot"),
    ("bot)", "bot"),
    ("bot]", "bot"),
    ("bot-", "bot"),
    ("bot_", "bot"),
    ("bot.", "bot"),
    ("bot,", "bot"),
    ("bot ", "bot"),
    ("+http", "bot"),
    ("crawl", "bot"),
    ("spider", "bot"),
    ("scraper", "bot"),
    ("fetcher", "bot"),
    ("preview", "bot"),
    ("monitor", "bot"),
    ("uptime", "bot"),
    ("httpclient", "bot"),
];

/// Text of real browsers' agents that a bot pattern would match inside:
/// phone models whose name ends in `bot` (`CUBOT P30`, `CUBOT_NOTE_20`).
///
/// An exception hides every pattern that starts within it (see
/// [`BotFilter`] for how the agent is read), so a CUBOT phone is not a bot
/// while a crawler's agent that also names one still is.
pub const DEFAULT_BOT_EXCEPTIONS: &[&str] = &["cubot"];

/// How much of the `User-Agent` is examined; bots name themselves early.
const MAX_AGENT_BYTES: usize = 512;

/// Decides whether a request comes from a bot, and which, by `User-Agent`
/// patterns.
///
/// Each pattern is matched case-insensitively anywhere in the agent (its first
/// 512 bytes), whose end counts as a space, and names the bot it finds. A
/// pattern named [`bot`](BotName::GENERIC) is generic. An exception is text
/// that is never a bot's: a phone model such as `CUBOT`.
///
/// The agent is read once, left to right, by one automaton: at each position the
/// longest pattern or exception that starts there is taken and the reading goes
/// on after it, so an exception hides the patterns that start within it (`cubot`
/// hides the `bot ` of `CUBOT P30`). The agent is then a bot named by the first
/// named pattern taken; failing one, [`bot`](BotName::GENERIC) if a generic
/// pattern was taken; else not a bot. A named pattern thus wins over a generic one
/// wherever each stands (`(compatible; Crawler; Googlebot)` is `Googlebot`).
///
/// Patterns a host adds are named by themselves, trimmed (`with_pattern("my-monitor")`
/// finds `my-monitor`), unless given a name ([`with_named_pattern`](Self::with_named_pattern)).
/// A pattern added again replaces the earlier rule for it, whether pattern or
/// exception, so a host can rename a built-in bot or, with
/// [`with_exception`](Self::with_exception), drop one.
///
/// Requests without a `User-Agent` are not bots (many privacy tools strip it).
/// The verdict and name of each agent seen lately are cached, so most requests
/// cost one hash and one load.
///
/// ```
/// use axum_whos_online::BotFilter;
/// let bots = BotFilter::default()
///     .with_pattern("my-monitor")
///     .with_named_pattern("acme-probe/", "Acme probe");
/// let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
/// assert_eq!(bots.classify(googlebot).unwrap(), "Googlebot");
/// assert!(bots.is_bot(googlebot));
/// assert_eq!(bots.classify("my-monitor v2").unwrap(), "my-monitor");
/// assert_eq!(bots.classify("acme-probe/1.0").unwrap(), "Acme probe");
/// assert_eq!(bots.classify("Mozilla/5.0 (compatible; NewCrawler/0.1)").unwrap(), "bot");
/// let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
/// assert_eq!(bots.classify(firefox), None);
/// // curl counts as a visitor once its pattern is an exception.
/// assert!(!bots.clone().with_exception("curl/").is_bot("curl/8.5.0"));
/// assert!(!BotFilter::none().is_bot(googlebot));
/// ```
#[derive(Clone)]
pub struct BotFilter {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every rule as given, in order: `with_*` rebuild from them.
    rules: Vec<Rule>,
    /// The automaton's patterns, lowercase, one per distinct pattern.
    needles: Vec<Box<[u8]>>,
    /// What each of `needles` means.
    kinds: Vec<Kind>,
    /// Distinct names; the first is [`BotName::GENERIC`].
    names: Vec<BotName>,
    /// Whether any rule finds a bot (exceptions alone find none).
    finds_bots: bool,
    /// All patterns in one automaton: one pass over the agent, whatever their
    /// number. `None` without patterns, or if it could not be built (then each
    /// position of the agent is tried against each pattern).
    matcher: Option<AhoCorasick>,
    /// Verdicts on agents seen lately: browsers send a handful of distinct
    /// agents, so most requests are answered by one hash and one load.
    recent: Verdicts,
}

/// A rule as a host or the defaults gave it.
#[derive(Clone)]
struct Rule {
    pattern: Box<str>,
    /// `None` for an exception.
    name: Option<BotName>,
}

/// What a pattern of the automaton means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A bot, by index into `names`; 0 is generic.
    Bot(usize),
    /// Not a bot's text.
    Exception,
}

/// Index of [`BotName::GENERIC`] in `names`.
const GENERIC: usize = 0;

impl fmt::Debug for BotFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotFilter")
            .field("patterns", &self.inner.needles.len())
            .field("names", &self.inner.names.len())
            .finish_non_exhaustive()
    }
}

/// Slots in the verdict cache: 2 KiB.
const VERDICT_SLOTS: usize = 256;

/// Low bits of a cache slot: the verdict, 0 for "not a bot" and else 1 plus the
/// name's index.
const VERDICT_BITS: u64 = (1 << 15) - 1;
/// Set in every filled slot (an empty slot is 0).
const FILLED: u64 = 1 << 15;

/// A direct-mapped cache of agent verdicts. Each slot holds the high 48 bits of
/// the agent's keyed hash, [`FILLED`], and the verdict in [`VERDICT_BITS`]; the
/// low bits of the hash pick the slot. The hash is keyed with a random number per
/// filter, so an agent cannot be made to borrow another's verdict; two agents that
/// share a slot merely evict each other. A verdict too large for the bits (a
/// filter with more than 32,766 names) is not cached.
struct Verdicts {
    key: u64,
    slots: Box<[AtomicU64]>,
}

impl Verdicts {
    fn new() -> Self {
        Self {
            key: RandomState::new().hash_one(0xb075_u64),
            slots: (0..VERDICT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A keyed hash of the agent: eight bytes at a time, then a full mix.
    fn hash(&self, ua: &[u8]) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut h = self.key ^ (ua.len() as u64).wrapping_mul(K);
        let mut chunks = ua.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(word))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        mix((h ^ u64::from_le_bytes(tail)).wrapping_mul(K))
    }

    /// The cached verdict on `ua`, or `scan`'s, then cached: `None` for not a
    /// bot, else the index of its name.
    fn get_or(&self, ua: &[u8], scan: impl FnOnce() -> Option<usize>) -> Option<usize> {
        let h = self.hash(ua);
        let tag = (h & !(FILLED | VERDICT_BITS)) | FILLED;
        let slot = &self.slots[h as usize % VERDICT_SLOTS];
        let entry = slot.load(Relaxed);
        if entry & !VERDICT_BITS == tag {
            return (entry & VERDICT_BITS).checked_sub(1).map(|i| i as usize);
        }
        let verdict = scan();
        let bits = verdict.map_or(0, |i| i as u64 + 1);
        if bits <= VERDICT_BITS {
            slot.store(tag | bits, Relaxed);
        }
        verdict
    }
}

impl Default for BotFilter {
    /// The built-in [`DEFAULT_BOT_PATTERNS`] and [`DEFAULT_BOT_EXCEPTIONS`].
    fn default() -> Self {
        let patterns = DEFAULT_BOT_PATTERNS.iter().map(|&(pattern, name)| Rule {
            pattern: pattern.into(),
            name: Some(BotName::from_static(name)),
        });
        let exceptions = DEFAULT_BOT_EXCEPTIONS.iter().map(|&e| Rule {
            pattern: e.into(),
            name: None,
        });
        Self::build(patterns.chain(exceptions).collect())
    }
}

impl BotFilter {
    /// Only these patterns (case-insensitive substrings of the `User-Agent`),
    /// each naming the bot it finds by itself, trimmed; none of the built-in
    /// patterns or exceptions.
    pub fn new<I, P>(patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        Self::build(
            patterns
                .into_iter()
                .map(|p| Rule::named_by_itself(p.as_ref()))
                .collect(),
        )
    }

    /// Nobody is a bot: every anonymous request counts as a visitor.
    pub fn none() -> Self {
        Self::build(Vec::new())
    }

    /// Adds a pattern, naming the bot it finds by the pattern itself, trimmed
    /// (`bot` if that leaves nothing).
    pub fn with_pattern(self, pattern: impl AsRef<str>) -> Self {
        self.with(Rule::named_by_itself(pattern.as_ref()))
    }

    /// Adds a pattern whose bot is called `name` (trimmed; `bot`, or nothing,
    /// makes the pattern generic: a named pattern anywhere in the agent wins over it).
    pub fn with_named_pattern(self, pattern: impl AsRef<str>, name: impl AsRef<str>) -> Self {
        self.with(Rule {
            pattern: pattern.as_ref().into(),
            name: Some(BotName::shared(name.as_ref())),
        })
    }

    /// Adds an exception: text that is never a bot's, hiding the patterns that
    /// start within it, such as a phone model that ends in `bot`. An exception
    /// equal to a pattern drops that pattern.
    pub fn with_exception(self, text: impl AsRef<str>) -> Self {
        self.with(Rule {
            pattern: text.as_ref().into(),
            name: None,
        })
    }

    fn with(self, rule: Rule) -> Self {
        let mut rules = self.inner.rules.clone();
        rules.push(rule);
        Self::build(rules)
    }

    fn build(rules: Vec<Rule>) -> Self {
        let mut names = vec![BotName::GENERIC];
        let mut name_index: HashMap<BotName, usize> = HashMap::new();
        name_index.insert(BotName::GENERIC, GENERIC);
        let mut needles: Vec<Box<[u8]>> = Vec::new();
        let mut kinds = Vec::new();
        let mut needle_index: HashMap<Box<[u8]>, usize> = HashMap::new();
        for rule in &rules {
            if rule.pattern.is_empty() {
                continue;
            }
            let kind = match &rule.name {
                None => Kind::Exception,
                Some(name) => Kind::Bot(*name_index.entry(name.clone()).or_insert_with(|| {
                    names.push(name.clone());
                    names.len() - 1
                })),
            };
            let needle: Box<[u8]> = rule.pattern.to_ascii_lowercase().into_bytes().into();
            match needle_index.get(&needle) {
                Some(&i) => kinds[i] = kind,
                None => {
                    needle_index.insert(needle.clone(), needles.len());
                    needles.push(needle);
                    kinds.push(kind);
                }
            }
        }
        let finds_bots = kinds.iter().any(|k| matches!(k, Kind::Bot(_)));
        let matcher = if finds_bots {
            Self::automaton(&needles, Some(AhoCorasickKind::DFA))
                .or_else(|| Self::automaton(&needles, None))
        } else {
            None
        };
        if finds_bots && matcher.is_none() {
            tracing::warn!("whos-online: bot patterns searched one by one");
        }
        Self {
            inner: Arc::new(Inner {
                rules,
                needles,
                kinds,
                names,
                finds_bots,
                matcher,
                recent: Verdicts::new(),
            }),
        }
    }

    fn automaton(needles: &[Box<[u8]>], kind: Option<AhoCorasickKind>) -> Option<AhoCorasick> {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(kind)
            .build(needles)
            .map_err(|e| tracing::debug!(error = %e, ?kind, "whos-online: bot automaton not built"))
            .ok()
    }

    /// The bot `user_agent` comes from, by name, or `None` if it is not a bot.
    ///
    /// As cheap as [`is_bot`](Self::is_bot): the name is found by the same pass
    /// and cached with the verdict.
    pub fn classify(&self, user_agent: impl AsRef<[u8]>) -> Option<BotName> {
        self.verdict(user_agent.as_ref())
            .map(|i| self.inner.names[i].clone())
    }

    /// Whether `user_agent` comes from a bot: [`classify`](Self::classify) is
    /// `Some`.
    pub fn is_bot(&self, user_agent: impl AsRef<[u8]>) -> bool {
        self.verdict(user_agent.as_ref()).is_some()
    }

    /// The index of the bot's name in `names`, cached.
    fn verdict(&self, ua: &[u8]) -> Option<usize> {
        if !self.inner.finds_bots {
            return None;
        }
        let ua = &ua[..ua.len().min(MAX_AGENT_BYTES)];
        self.inner.recent.get_or(ua, || self.scan(ua))
    }

    /// Reads `ua`, followed by a space, for every pattern and exception.
    fn scan(&self, ua: &[u8]) -> Option<usize> {
        self.scan_by(ua, self.inner.matcher.as_ref())
    }

    /// [`scan`](Self::scan) with `matcher`, or without an automaton.
    fn scan_by(&self, ua: &[u8], matcher: Option<&AhoCorasick>) -> Option<usize> {
        let mut buf = [0u8; MAX_AGENT_BYTES + 1];
        buf[..ua.len()].copy_from_slice(ua);
        buf[ua.len()] = b' ';
        let haystack = &buf[..=ua.len()];
        match matcher {
            Some(m) => self.decide(m.find_iter(haystack).map(|m| m.pattern().as_usize())),
            None => self.decide(plain_search(haystack, &self.inner.needles)),
        }
    }

    /// The verdict from the patterns taken, in order: the first named bot, else
    /// generic if any generic pattern, else none.
    fn decide(&self, taken: impl Iterator<Item = usize>) -> Option<usize> {
        let mut generic = false;
        for p in taken {
            match self.inner.kinds[p] {
                Kind::Bot(GENERIC) => generic = true,
                Kind::Bot(name) => return Some(name),
                Kind::Exception => {}
            }
        }
        generic.then_some(GENERIC)
    }

    /// The bot the request's headers mark, if any.
    pub(crate) fn bot_of(&self, headers: &HeaderMap) -> Option<BotName> {
        headers
            .get(USER_AGENT)
            .and_then(|ua| self.classify(ua.as_bytes()))
    }
}

impl Rule {
    fn named_by_itself(pattern: &str) -> Self {
        Self {
            pattern: pattern.into(),
            name: Some(BotName::shared(pattern)),
        }
    }
}

/// What the automaton takes from `haystack`, the slow way: at each position the
/// longest of `needles` that starts there (ASCII case-insensitively), then on
/// after it. Needles are distinct, so there are no ties.
fn plain_search<'a>(
    haystack: &'a [u8],
    needles: &'a [Box<[u8]>],
) -> impl Iterator<Item = usize> + 'a {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < haystack.len() {
            let rest = &haystack[at..];
            let longest = needles
                .iter()
                .enumerate()
                .filter(|(_, n)| rest.len() >= n.len() && rest[..n.len()].eq_ignore_ascii_case(n))
                .max_by_key(|(_, n)| n.len());
            match longest {
                Some((i, n)) => {
                    at += n.len();
                    return Some(i);
                }
                None => at += 1,
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    const CUBOT: &str = "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 \
                         (KHTML, like Gecko) Chrome/108.0.0.0 Mobile Safari/537.36";

    fn name(f: &BotFilter, ua: &str) -> Option<String> {
        f.classify(ua).map(|n| n.to_string())
    }

    #[test]
    fn well_known_agents() {
        let f = BotFilter::default();
        for (bot, expected) in [
            (
                "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
                "bingbot",
            ),
            (
                "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; +https://openai.com/gptbot)",
                "GPTBot",
            ),
            (
                "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
                "facebookexternalhit",
            ),
            (
                "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
                "YandexBot",
            ),
            (
                "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "Googlebot",
            ),
            ("curl/8.5.0", "curl"),
            ("python-requests/2.31.0", "python-requests"),
            ("Go-http-client/1.1", "Go-http-client"),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
                "HeadlessChrome",
            ),
        ] {
            assert!(f.is_bot(bot), "{bot}");
            assert_eq!(name(&f, bot).as_deref(), Some(expected), "{bot}");
        }
        for browser in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            FIREFOX,
            CUBOT,
            "",
        ] {
            assert!(!f.is_bot(browser), "{browser}");
            assert_eq!(f.classify(browser), None, "{browser}");
        }
    }

    /// A named pattern wins over a generic one wherever each stands; between named
    /// ones, the first in the agent wins.
    #[test]
    fn named_patterns_win_over_generic_ones() {
        let f = BotFilter::default();
        assert_eq!(
            name(&f, "Mozilla/5.0 (compatible; Crawler; Googlebot)").as_deref(),
            Some("Googlebot")
        );
        assert_eq!(
            name(&f, "spider (+http://example.com) python-requests/2.31").as_deref(),
            Some("python-requests")
        );
        assert_eq!(
            name(&f, "TelegramBot (like TwitterBot)").as_deref(),
            Some("TelegramBot")
        );
        assert_eq!(
            name(
                &f,
                "Mozilla/5.0 (compatible; SomeBot/1.0; +https://example.com)"
            )
            .as_deref(),
            Some("bot")
        );
    }

    /// `bot` must end a word, and the end of the agent ends one.
    #[test]
    fn generic_bot_ends_a_word() {
        let f = BotFilter::default();
        for ua in [
            "ExampleBot",
            "Mozilla/5.0 (compatible) ExampleBot",
            "ExampleBot/1.0",
            "Example_Bot_1",
            "examplebot, see example.com",
            "[ExampleBot]",
        ] {
            assert_eq!(name(&f, ua).as_deref(), Some("bot"), "{ua}");
        }
        for ua in [
            "Mozilla/5.0 Robots",
            "Mozilla/5.0 Bottle/1.0",
            "Mozilla/5.0 abbott",
        ] {
            assert_eq!(f.classify(ua), None, "{ua}");
        }
    }

    /// An exception hides only the patterns that start within it.
    #[test]
    fn exceptions_hide_what_starts_within_them() {
        let f = BotFilter::default();
        assert_eq!(f.classify(CUBOT), None);
        assert_eq!(
            f.classify("Mozilla/5.0 (Linux; Android 10; CUBOT_NOTE_20)"),
            None
        );
        assert_eq!(f.classify("cubot"), None);
        // A crawler that also names a CUBOT is still a bot.
        assert_eq!(
            name(&f, &format!("{CUBOT} (compatible; Googlebot/2.1)")).as_deref(),
            Some("Googlebot")
        );
        assert_eq!(
            name(
                &f,
                "Mozilla/5.0 (Linux; Android 9; CUBOT P30; +http://example.com/bot)"
            )
            .as_deref(),
            Some("bot")
        );
        // Without the defaults' exception, the phone is a bot again.
        let plain = BotFilter::new(["bot "]);
        assert_eq!(name(&plain, CUBOT).as_deref(), Some("bot"));
        assert_eq!(plain.with_exception("CUBOT").classify(CUBOT), None);
    }

    #[test]
    fn hosts_name_their_patterns() {
        let f = BotFilter::default()
            .with_pattern("My-Monitor ")
            .with_named_pattern("acme-probe/", "Acme probe")
            .with_named_pattern("example-fetcher", "");
        assert_eq!(name(&f, "my-monitor v2").as_deref(), Some("My-Monitor"));
        assert_eq!(name(&f, "ACME-PROBE/1.0").as_deref(), Some("Acme probe"));
        // An empty name is generic: any named pattern wins over it.
        assert_eq!(name(&f, "example-fetcher/1").as_deref(), Some("bot"));
        assert_eq!(
            name(&f, "example-fetcher/1 curl/8.5.0").as_deref(),
            Some("curl")
        );
        // `new` names each pattern by itself, with no built-in pattern or exception.
        let only = BotFilter::new(["Firefox", "bot "]);
        assert_eq!(name(&only, FIREFOX).as_deref(), Some("Firefox"));
        assert_eq!(name(&only, "SomeBot").as_deref(), Some("bot"));
        assert_eq!(only.classify(GOOGLEBOT), None);
    }

    /// A pattern given again replaces its earlier rule: renamed, dropped by an
    /// exception, or restored.
    #[test]
    fn a_later_rule_for_a_pattern_replaces_the_earlier() {
        let f = BotFilter::default().with_named_pattern("CURL/", "curl (monitoring)");
        assert_eq!(name(&f, "curl/8.5.0").as_deref(), Some("curl (monitoring)"));
        let f = f.with_exception("curl/");
        assert_eq!(f.classify("curl/8.5.0"), None);
        assert!(f.is_bot(GOOGLEBOT));
        let f = f.with_pattern("curl/");
        assert_eq!(name(&f, "curl/8.5.0").as_deref(), Some("curl/"));
        // Exceptions alone find nothing.
        assert!(!BotFilter::none().with_exception("cubot").is_bot(GOOGLEBOT));
        assert!(!BotFilter::new([""]).is_bot(GOOGLEBOT));
    }

    #[test]
    fn names_are_shared_and_compare_as_text() {
        let f = BotFilter::default();
        let a = f.classify(GOOGLEBOT).unwrap();
        let b = f.classify("Googlebot-Image/1.0").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "Googlebot");
        assert_eq!(&*a, "Googlebot");
        assert_eq!(format!("{a} {a:?}"), "Googlebot \"Googlebot\"");
        assert!(!a.is_generic());
        assert!(f.classify("SomeBot/1").unwrap().is_generic());
        let set: std::collections::BTreeSet<BotName> = [a, b, BotName::GENERIC].into();
        assert_eq!(
            set.iter().map(BotName::as_str).collect::<Vec<_>>(),
            ["Googlebot", "bot"]
        );
        // The built-in table gives each name once, whatever the number of patterns.
        let distinct: std::collections::HashSet<&str> =
            DEFAULT_BOT_PATTERNS.iter().map(|(_, n)| *n).collect();
        assert_eq!(f.inner.names.len(), distinct.len());
        // Patterns are lowercase, so that each is spelled one way in the table.
        for (p, _) in DEFAULT_BOT_PATTERNS {
            assert_eq!(*p, p.to_ascii_lowercase());
        }
    }

    /// Cached verdicts are the scan's verdicts, however many agents share slots.
    #[test]
    fn cached_verdicts_match_the_scan() {
        let f = BotFilter::default();
        let agents: Vec<String> = (0..4 * VERDICT_SLOTS)
            .map(|i| match i % 4 {
                0 => format!(
                    "Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0"
                ),
                1 => {
                    format!("Mozilla/5.0 (compatible; Crawler{i}Bot/2.1; +http://example.com/{i})")
                }
                2 => format!("Mozilla/5.0 (compatible; Googlebot/2.{i})"),
                _ => format!("agent-{i}"),
            })
            .collect();
        for _ in 0..3 {
            for a in &agents {
                let scanned = f.scan(a.as_bytes()).map(|i| f.inner.names[i].clone());
                assert_eq!(f.classify(a), scanned, "{a}");
                assert_eq!(f.is_bot(a), scanned.is_some(), "{a}");
            }
        }
        assert_eq!(name(&f, &agents[1]).as_deref(), Some("bot"));
        assert_eq!(name(&f, &agents[2]).as_deref(), Some("Googlebot"));
        assert!(!f.is_bot(&agents[0]));
        // Another filter has its own cache: no verdict carries over.
        let none = BotFilter::new(["nothing-matches-this"]);
        assert!(!none.is_bot(&agents[1]));
        assert!(f.clone().is_bot(&agents[1]));
    }

    /// A name whose index does not fit the cache is found by a scan each time.
    #[test]
    fn names_beyond_the_cache_are_still_found() {
        let f = BotFilter::new((0..=VERDICT_BITS).map(|i| format!("agent-{i:05}/")));
        assert_eq!(f.inner.names.len() as u64, VERDICT_BITS + 2);
        for _ in 0..2 {
            assert_eq!(name(&f, "agent-32767/1").as_deref(), Some("agent-32767/"));
            assert_eq!(name(&f, "agent-00001/1").as_deref(), Some("agent-00001/"));
        }
    }

    #[test]
    fn the_automaton_and_the_plain_search_agree() {
        let f = BotFilter::default()
            .with_pattern("my-monitor")
            .with_exception("not a bot");
        for ua in [
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "CURL/8.5.0",
            "robot",
            "ExampleBot",
            "",
            "\u{e9}t\u{e9} BOT/1",
            CUBOT,
            "not a bot/1.0",
            "AdsBot-Google-Mobile",
            "AdsBot-Google-Mobil",
            "Mozilla/5.0 (compatible; Crawler; Googlebot)",
            "my-monitor",
            "Apache-HttpClient/4.5.14 (Java/17.0.9)",
            "Java-http-client/21",
        ] {
            assert_eq!(
                f.scan(ua.as_bytes()),
                f.scan_by(ua.as_bytes(), None),
                "{ua}"
            );
        }
    }

    #[test]
    fn non_utf8_and_huge_agents_are_fine() {
        let f = BotFilter::default();
        assert!(!f.is_bot(b"\xff\xfe\x00"));
        assert!(!f.is_bot("a".repeat(100_000)));
        assert!(f.is_bot(format!("Googlebot/2.1 {}", "a".repeat(100_000))));
        // Only the first 512 bytes are read.
        assert!(!f.is_bot(format!("{} Googlebot/2.1", "a".repeat(600))));
    }
}
