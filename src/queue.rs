//! The queue between the layer and the reporter: what travels on it.

use tokio::sync::oneshot;

use crate::who::{Place, Who};

/// What travels on the queue: reports, and flush requests that ride behind them so
/// a flush covers everything queued before it.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A report, and the place of its request when the host names places.
    Seen(Who, Option<Place>),
    /// A user logged out: removed from the sets in the next write, after
    /// every report of them queued before.
    Left(String),
    Flush(Ack),
}

/// Answers a flush request with the outcome of the write that covered it.
pub(crate) type Ack = oneshot::Sender<crate::Result<()>>;
