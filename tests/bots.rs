//! The default bot filter's verdict and name for a corpus of real `User-Agent`s.
//!
//! Each entry is an agent and the name `BotFilter::default().classify` must give
//! it: `Some(name)` for a bot or other non-browser client, `None` for a person's
//! browser. To pin a new agent, add a line; to change a verdict, change the
//! line and say why in the commit.
//!
//! Decisions worth knowing:
//! * In-app browsers (Facebook's `FBAN`/`FB_IAB`, Instagram, TikTok, Telegram,
//!   WeChat, LINE, Snapchat, Pinterest, LinkedIn, X) are people reading a link
//!   inside an app: not bots. The same apps' link-preview fetchers are bots.
//! * Desktop apps on Electron (Slack, Discord) are people: not bots.
//! * Text browsers (Lynx, w3m, Links, ELinks) are people: not bots. Lynx names
//!   `libwww-FM`, which is why the pattern is `libwww-perl`, not `libwww`.
//! * Headless browsers (HeadlessChrome, PhantomJS) and page audits (Lighthouse)
//!   are automation: bots.
//! * Assistants that fetch a page because a person asked (ChatGPT-User,
//!   Google-Read-Aloud) are bots: no person reads the page in a browser.
//! * Apple's iMessage link preview calls itself `facebookexternalhit/1.1 Facebot
//!   Twitterbot/1.0`, and is named by the first: `facebookexternalhit`.
//! * A bare `Mozilla/5.0` (the README's `curl -A Mozilla/5.0`) is not a bot.

use axum_whos_online::{BotFilter, BotName, DEFAULT_BOT_PATTERNS};

/// `(User-Agent, expected name)`.
const CORPUS: &[(&str, Option<&str>)] = &[
    // --- Search engines -------------------------------------------------------
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        Some("Googlebot"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.204 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        Some("Googlebot"),
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/131.0.6778.204 Safari/537.36",
        Some("Googlebot"),
    ),
    (
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        Some("Googlebot"),
    ),
    ("Googlebot-Image/1.0", Some("Googlebot")),
    (
        "AdsBot-Google (+http://www.google.com/adsbot.html)",
        Some("AdsBot-Google"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.204 Mobile Safari/537.36 (compatible; AdsBot-Google-Mobile; +http://www.google.com/mobile/adsbot.html)",
        Some("AdsBot-Google-Mobile"),
    ),
    ("Mediapartners-Google", Some("Mediapartners-Google")),
    (
        "Mozilla/5.0 (compatible; Google-InspectionTool/1.0)",
        Some("Google-InspectionTool"),
    ),
    ("Mozilla/5.0 (compatible; GoogleOther)", Some("GoogleOther")),
    (
        "APIs-Google (+https://developers.google.com/webmasters/APIs-Google.html)",
        Some("APIs-Google"),
    ),
    (
        "FeedFetcher-Google; (+http://www.google.com/feedfetcher.html)",
        Some("FeedFetcher-Google"),
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; Storebot-Google/1.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.88 Safari/537.36",
        Some("Storebot-Google"),
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/49.0.2623.75 Safari/537.36 Google Favicon",
        Some("Google Favicon"),
    ),
    (
        "Mozilla/5.0 (compatible; Google-Read-Aloud; +https://support.google.com/webmasters/answer/1061943)",
        Some("Google-Read-Aloud"),
    ),
    (
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        Some("bingbot"),
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/131.0.0.0 Safari/537.36",
        Some("bingbot"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 7_0 like Mac OS X) AppleWebKit/537.51.1 (KHTML, like Gecko) Version/7.0 Mobile/11A465 Safari/9537.53 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        Some("bingbot"),
    ),
    (
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/534+ (KHTML, like Gecko) BingPreview/1.0b",
        Some("BingPreview"),
    ),
    (
        "msnbot/2.0b (+http://search.msn.com/msnbot.htm)",
        Some("msnbot"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        Some("Applebot"),
    ),
    (
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        Some("YandexBot"),
    ),
    (
        "Mozilla/5.0 (compatible; YandexImages/3.0; +http://yandex.com/bots)",
        Some("YandexImages"),
    ),
    (
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        Some("Baiduspider"),
    ),
    (
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        Some("DuckDuckBot"),
    ),
    (
        "Mozilla/5.0 (compatible; DuckAssistBot/1.0; +http://duckduckgo.com/duckassistbot.html)",
        Some("DuckAssistBot"),
    ),
    (
        "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
        Some("Yahoo! Slurp"),
    ),
    (
        "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
        Some("Sogou"),
    ),
    (
        "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0);  360Spider",
        Some("360Spider"),
    ),
    (
        "Mozilla/5.0 (compatible; SeznamBot/4.0; +https://o-seznam.cz/napoveda/vyhledavani/en/seznambot-crawler/)",
        Some("SeznamBot"),
    ),
    (
        "Mozilla/5.0 (compatible; Yeti/1.1; +https://naver.me/spd)",
        Some("Yeti"),
    ),
    (
        "Mozilla/5.0 (compatible; coccocbot-web/1.0; +http://help.coccoc.com/searchengine)",
        Some("coccocbot"),
    ),
    (
        "Mozilla/5.0 (compatible; Qwantify/2.4w; +https://www.qwant.com/)/2.4w",
        Some("Qwantify"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        Some("PetalBot"),
    ),
    (
        "Mozilla/5.0 (compatible; MojeekBot/0.11; +https://www.mojeek.com/bot.html)",
        Some("MojeekBot"),
    ),
    (
        "Mozilla/5.0 (compatible; Exabot/3.0; +http://www.exabot.com/go/robot)",
        Some("Exabot"),
    ),
    // --- AI crawlers and assistants --------------------------------------------
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        Some("GPTBot"),
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; +https://openai.com/bot",
        Some("ChatGPT-User"),
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; OAI-SearchBot/1.0; +https://openai.com/searchbot",
        Some("OAI-SearchBot"),
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
        Some("ClaudeBot"),
    ),
    ("anthropic-ai", Some("anthropic-ai")),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
        Some("PerplexityBot"),
    ),
    ("CCBot/2.0 (https://commoncrawl.org/faq/)", Some("CCBot")),
    (
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        Some("Bytespider"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 (Amazonbot/0.1; +https://developer.amazon.com/support/amazonbot)",
        Some("Amazonbot"),
    ),
    (
        "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
        Some("meta-externalagent"),
    ),
    // --- SEO and other crawlers --------------------------------------------------
    (
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        Some("SemrushBot"),
    ),
    (
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        Some("AhrefsBot"),
    ),
    (
        "Mozilla/5.0 (compatible; AhrefsSiteAudit/6.1; +http://ahrefs.com/robot/site-audit)",
        Some("AhrefsSiteAudit"),
    ),
    (
        "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
        Some("MJ12bot"),
    ),
    (
        "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)",
        Some("DotBot"),
    ),
    (
        "Mozilla/5.0 (compatible; BLEXBot/1.0; +http://webmeup-crawler.com/)",
        Some("BLEXBot"),
    ),
    (
        "Mozilla/5.0 (compatible; DataForSeoBot/1.0; +https://dataforseo.com/dataforseo-bot)",
        Some("DataForSeoBot"),
    ),
    (
        "Mozilla/5.0 (compatible; Barkrowler/0.9; +https://babbar.tech/crawler)",
        Some("Barkrowler"),
    ),
    (
        "Mozilla/5.0 (compatible; SeekportBot; +https://bot.seekport.com)",
        Some("SeekportBot"),
    ),
    ("Screaming Frog SEO Spider/20.2", Some("Screaming Frog")),
    (
        "ia_archiver (+http://www.alexa.com/site/help/webmasters; crawler@alexa.com)",
        Some("ia_archiver"),
    ),
    (
        "Mozilla/5.0 (compatible; archive.org_bot +http://archive.org/details/archive.org_bot) Zeno/f4a9ef7 warc/v0.8.47",
        Some("archive.org_bot"),
    ),
    // Crawlers the table does not name: found by a generic pattern.
    (
        "Mozilla/5.0 (compatible; Linux x86_64; Mail.RU_Bot/2.0; +https://help.mail.ru/webmaster/indexing/robots)",
        Some("bot"),
    ),
    (
        "Mozilla/5.0 (compatible; Nimbostratus-Bot/v1.3.2; http://cloudsystemnetworks.com)",
        Some("bot"),
    ),
    (
        "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
        Some("bot"),
    ),
    (
        "Mozilla/5.0 (compatible; Daum/4.1; +http://cs.daum.net/faq/15/4118.html?faqId=28966)",
        Some("bot"),
    ),
    // --- Link previews ---------------------------------------------------------
    (
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        Some("facebookexternalhit"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
        Some("facebookexternalhit"),
    ),
    ("Twitterbot/1.0", Some("Twitterbot")),
    (
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        Some("LinkedInBot"),
    ),
    (
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        Some("Slackbot"),
    ),
    (
        "Slackbot 1.0 (+https://api.slack.com/robots)",
        Some("Slackbot"),
    ),
    (
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        Some("Discordbot"),
    ),
    ("WhatsApp/2.23.20.0 A", Some("WhatsApp")),
    ("WhatsApp/2.24.22.79 i", Some("WhatsApp")),
    ("TelegramBot (like TwitterBot)", Some("TelegramBot")),
    (
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
        Some("SkypeUriPreview"),
    ),
    (
        "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
        Some("Pinterestbot"),
    ),
    (
        "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
        Some("redditbot"),
    ),
    (
        "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
        Some("vkShare"),
    ),
    (
        "Mozilla/5.0 (compatible; Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots)",
        Some("Snapchat"),
    ),
    (
        "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
        Some("Bluesky"),
    ),
    (
        "http.rb/5.1.1 (Mastodon/4.2.8; +https://mastodon.social/)",
        Some("Mastodon"),
    ),
    (
        "Iframely/1.3.1 (+https://iframely.com/docs/about)",
        Some("Iframely"),
    ),
    (
        "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
        Some("Embedly"),
    ),
    // --- Monitors, audits, headless browsers --------------------------------------
    (
        "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        Some("UptimeRobot"),
    ),
    (
        "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
        Some("Pingdom"),
    ),
    ("Uptime-Kuma/1.23.15", Some("Uptime-Kuma")),
    (
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        Some("Lighthouse"),
    ),
    (
        "W3C_Validator/1.3 http://validator.w3.org/services",
        Some("W3C_Validator"),
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.6778.85 Safari/537.36",
        Some("HeadlessChrome"),
    ),
    (
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
        Some("PhantomJS"),
    ),
    // --- HTTP libraries and tools ----------------------------------------------------
    ("curl/8.5.0", Some("curl")),
    ("Wget/1.21.4", Some("Wget")),
    ("HTTPie/3.2.4", Some("HTTPie")),
    ("python-requests/2.32.3", Some("python-requests")),
    ("Python-urllib/3.12", Some("Python-urllib")),
    ("python-httpx/0.27.2", Some("python-httpx")),
    ("Python/3.12 aiohttp/3.10.5", Some("aiohttp")),
    ("Scrapy/2.11.2 (+https://scrapy.org)", Some("Scrapy")),
    ("Go-http-client/1.1", Some("Go-http-client")),
    ("Go-http-client/2.0", Some("Go-http-client")),
    ("okhttp/4.12.0", Some("okhttp")),
    ("Java/1.8.0_392", Some("Java")),
    ("Java-http-client/21.0.5", Some("Java")),
    (
        "Apache-HttpClient/4.5.14 (Java/17.0.9)",
        Some("Apache-HttpClient"),
    ),
    ("GuzzleHttp/7", Some("Guzzle")),
    ("PostmanRuntime/7.42.0", Some("PostmanRuntime")),
    ("insomnia/10.1.1", Some("Insomnia")),
    ("axios/1.7.7", Some("axios")),
    (
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        Some("node-fetch"),
    ),
    ("undici", Some("undici")),
    ("Deno/2.0.6", Some("Deno")),
    ("Dart/3.5 (dart:io)", Some("Dart")),
    ("libwww-perl/6.77", Some("libwww-perl")),
    (
        "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.22631; en-US) PowerShell/7.4.6",
        Some("PowerShell"),
    ),
    ("WordPress/6.6.2; https://example.com", Some("WordPress")),
    // --- Desktop browsers -----------------------------------------------------------
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        None,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0",
        None,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        None,
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        None,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        None,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        None,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        None,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
        None,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
        None,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Vivaldi/7.0.3495.18",
        None,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 YaBrowser/24.10.0.0 Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
        None,
    ),
    // Desktop apps on Electron: people.
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.41.98 Chrome/130.0.6723.118 Electron/33.1.0 Safari/537.36 Sonic Slack_SSB/4.41.98",
        None,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) discord/1.0.9171 Chrome/128.0.6613.186 Electron/32.2.2 Safari/537.36",
        None,
    ),
    // Text browsers: people.
    (
        "Lynx/2.9.0dev.12 libwww-FM/2.14 SSL-MM/1.4.1 GNUTLS/3.7.9",
        None,
    ),
    ("w3m/0.5.3+git20230121", None),
    (
        "Links (2.29; Linux 6.1.0-18-amd64 x86_64; GNU C 12.2; text)",
        None,
    ),
    (
        "ELinks/0.16.1.1 (textmode; Linux 6.1.0-18-amd64 x86_64; 80x24-2)",
        None,
    ),
    ("Mozilla/5.0", None),
    // --- iPhone and iPad -------------------------------------------------------------
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        None,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_7_10 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/132.2 Mobile/15E148 Safari/605.1.15",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 EdgiOS/131.2903.54 Mobile/15E148 Safari/605.1.15",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/343.0.695551749 Mobile/15E148 Safari/604.1",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 DuckDuckGo/7 Safari/605.1.15",
        None,
    ),
    // --- Android -------------------------------------------------------------------
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Mobile Safari/537.36",
        None,
    ),
    // Phones whose model name ends in "bot".
    (
        "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 9; CUBOT P30 Build/PPR1.180610.011) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/96.0.4664.104 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; CUBOT_NOTE_20) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30 Build/QP1A.190711.020; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.43 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 9; CUBOT MAX 3) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36 OPR/85.0.0.0",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; U; Android 13; en-us; 2201117TG Build/TKQ1.221114.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/112.0.5615.136 Mobile Safari/537.36 XiaoMi/MiuiBrowser/14.5.3-gn",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; HarmonyOS; ELS-NX9; HMSCore 6.13.0.302) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.5735.196 HuaweiBrowser/15.0.4.312 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; U; Android 11; en-US; RMX2185 Build/RP1A.200720.011) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.58 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.81 Mobile Safari/537.36",
        None,
    ),
    // --- In-app browsers: people reading inside an app ------------------------------------
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S911B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/490.0.0.50.81;]",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/489.0.0.38.107;FBBV/660406420;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.6.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/662149498]",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 353.0.0.22.85 (iPhone16,2; iOS 18_0; en_US; en; scale=3.00; 1290x2796; 654126286; IABMV/1)",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/130.0.6723.107 Mobile Safari/537.36 Instagram 355.0.0.37.103 Android (33/13; 450dpi; 1080x2177; samsung; SM-A536B; a53x; s5e8825; en_GB; 655423451)",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 12; SM-A515F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.193 Mobile Safari/537.36 trill_320403 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/trill app_version/32.4.3 ByteLocale/en ByteFullLocale/en Region/US AppId/1180 Spark/1.4.8.3-bugfix AppVersion/32.4.3 BytedanceWebview/d8a21c6",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S911B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36 Telegram-Android/11.2.3 (Samsung SM-S911B; Android 14; SDK 34; HIGH)",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; V2219A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36 XWEB/5223 MMWEBSDK/20230805 MMWEBID/2391 MicroMessenger/8.0.42.2460(0x28002A58) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.20.0",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Snapchat/13.7.0.45 (like Safari/8618.2.12.10.3, panda)",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [LinkedInApp]/9.28.6491",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Twitter for iPhone/10.50",
        None,
    ),
    // --- Tablets, TVs, consoles, readers, headsets, feature phones ------------------------
    (
        "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/131.3.2 like Chrome/131.0.6778.39 Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15",
        None,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edge/44.18363.8131",
        None,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; Quest 3) AppleWebKit/537.36 (KHTML, like Gecko) OculusBrowser/31.0.0.4.63.553062143 Chrome/120.0.6099.233 VR Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i; Android; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5",
        None,
    ),
    (
        "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
        None,
    ),
];

/// Every agent of the corpus gets its name, on a fresh filter and from the cache.
#[test]
fn every_agent_of_the_corpus_gets_its_verdict() {
    let filter = BotFilter::default();
    let mut wrong = Vec::new();
    for round in ["scanned", "cached"] {
        for &(agent, expected) in CORPUS {
            let got = filter.classify(agent);
            if got.as_deref() != expected {
                wrong.push(format!(
                    "{round}: {agent:?}: got {got:?}, want {expected:?}"
                ));
            }
            if filter.is_bot(agent) != expected.is_some() {
                wrong.push(format!("{round}: {agent:?}: is_bot disagrees"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The corpus has both sides in numbers, and no agent twice.
#[test]
fn the_corpus_is_broad() {
    let bots = CORPUS.iter().filter(|(_, n)| n.is_some()).count();
    let browsers = CORPUS.len() - bots;
    assert!(
        bots >= 40 && browsers >= 30,
        "{bots} bots, {browsers} browsers"
    );
    let mut agents: Vec<&str> = CORPUS.iter().map(|(a, _)| *a).collect();
    agents.sort_unstable();
    let before = agents.len();
    agents.dedup();
    assert_eq!(agents.len(), before, "an agent is listed twice");
}

/// Every name the corpus expects is one of the table's, so a typo in either
/// shows.
#[test]
fn expected_names_come_from_the_table() {
    for (agent, name) in CORPUS {
        if let Some(name) = name {
            assert!(
                DEFAULT_BOT_PATTERNS.iter().any(|(_, n)| n == name),
                "{name} ({agent}) is not a name of DEFAULT_BOT_PATTERNS"
            );
        }
    }
    assert_eq!(BotName::GENERIC, "bot");
}

/// Names are the table's spelling, whatever the agent's case.
#[test]
fn names_do_not_follow_the_agents_case() {
    let filter = BotFilter::default();
    assert_eq!(filter.classify("GOOGLEBOT/2.1").unwrap(), "Googlebot");
    assert_eq!(filter.classify("CURL/8.5.0").unwrap(), "curl");
    assert_eq!(filter.classify("whatsapp/2.23.20.0 A").unwrap(), "WhatsApp");
}
