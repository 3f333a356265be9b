//! Who a request came from: the crate's core value, as the layer hands it on.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

/// Where a request is, as the host's place hook named it (cut to
/// [`MAX_PLACE_LEN`](crate::MAX_PLACE_LEN) bytes, never empty).
pub(crate) type Place = Box<str>;

/// A user, a visitor or a bot; a request is one of them, never two.
#[derive(Debug)]
pub(crate) enum Who {
    /// `ip`: the address the request came from (grouped like a visitor's),
    /// whose visitor entry the user's report removes: a guest who logs in is
    /// counted once.
    User {
        name: String,
        hidden: bool,
        ip: Option<IpAddr>,
    },
    Visitor(IpAddr),
    Bot(IpAddr, BotName),
}

/// The display name of a bot, from [`BotFilter::classify`](crate::BotFilter::classify): `Googlebot`,
/// `bingbot`, `WhatsApp`, `curl`, ...; [`bot`](Self::GENERIC) for a bot that only
/// a generic pattern found.
///
/// It comes from the filter's table, never from the agent's own text, so a
/// client cannot put words of its choosing into a list of bots, and a filter
/// gives at most one name per pattern. Cheap to clone (the built-in names are
/// `&'static str`); compares, orders and hashes as its text.
#[derive(Clone)]
pub struct BotName(Name);

/// A name from the built-in table, or one a host gave.

#[derive(Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl BotName {
    /// `bot`: the name of a bot found only by a generic pattern.
    pub const GENERIC: BotName = BotName(Name::Static("bot"));

    /// A name of the built-in table.
    pub(crate) const fn from_static(name: &'static str) -> Self {
        Self(Name::Static(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }

    /// Whether this is [`GENERIC`](Self::GENERIC): a bot the filter could not name.
    pub fn is_generic(&self) -> bool {
        self.as_str() == Self::GENERIC.as_str()
    }

    /// The name a host gave, trimmed; empty is [`GENERIC`](Self::GENERIC).
    pub(crate) fn shared(name: &str) -> Self {
        match name.trim() {
            "" => Self::GENERIC,
            n => Self(Name::Shared(n.into())),
        }
    }
}

impl std::ops::Deref for BotName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for BotName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for BotName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for BotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for BotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for BotName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for BotName {}

impl PartialEq<str> for BotName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for BotName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for BotName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BotName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for BotName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}
