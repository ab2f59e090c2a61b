//! The live streams (`GET /events`) open on this gateway, counted per session, so that the end
//! of a session (a logout, a new login) ends its streams at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio_util::sync::CancellationToken;
use tower_sessions::session::Id;

/// The live streams open on this gateway, per session, so that the end of a session ends
/// them at once.
#[derive(Clone, Default)]
pub struct LiveStreams {
    /// Per session: what ends its streams, and how many are open.
    open: Arc<Mutex<HashMap<Id, (CancellationToken, usize)>>>,
}

impl LiveStreams {
    fn sessions(&self) -> MutexGuard<'_, HashMap<Id, (CancellationToken, usize)>> {
        // Every update is one insert, change or remove: the map stays consistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stream of session `id` opens; it ends when the guard's token is cancelled.
    pub fn open(&self, id: Id) -> StreamGuard {
        let mut sessions = self.sessions();
        let (ended, count) = sessions.entry(id).or_default();
        *count += 1;
        StreamGuard {
            streams: self.clone(),
            id,
            ended: ended.clone(),
        }
    }

    /// Ends every live stream of session `id` (it was logged out, or logged in again).
    pub fn close(&self, id: &Id) {
        if let Some((ended, _)) = self.sessions().remove(id) {
            ended.cancel();
        }
    }
}

/// One open stream of a session; dropping it counts the stream out.
pub struct StreamGuard {
    streams: LiveStreams,
    pub id: Id,
    pub ended: CancellationToken,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.ended.is_cancelled() {
            // Closed: the entry is gone already.
            return;
        }
        let mut sessions = self.streams.sessions();
        if let Some((_, count)) = sessions.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                sessions.remove(&self.id);
            }
        }
    }
}
