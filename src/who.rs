//! Who a request came from: the crate's core value, as the layer hands it on.

use std::net::IpAddr;

/// A user, a visitor or a bot; a request is one of them, never two.
#[derive(Debug)]
pub(crate) enum Who {
    User { name: String, hidden: bool },
    Visitor(IpAddr),
    Bot(IpAddr),
}
