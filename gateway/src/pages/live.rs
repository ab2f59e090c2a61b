//! `GET /events`: the session user's job changes as Server-Sent Events, fed by the process's
//! one KV watch ([`crate::events`]) and never by a consumer per connection.
//!
//! Each connection first subscribes, then sends the current state of the user's newest jobs
//! (so a page that reconnects catches up on whatever it missed), then every change as it
//! happens. Events: `job` (a [`JobRow`] as JSON, with its KV revision: a page keeps the
//! newest), `removed` (a job id). The stream ends when the gateway stops (browsers reconnect)
//! and when its session ends: at once at a logout (or a new login) on this gateway, and within
//! [`SESSION_RECHECK`] when the session is gone otherwise (logged out on another replica,
//! expired), found by reading it again from the store.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use cola_wire::UserId;
use futures::Stream;
use tokio::time::{Instant, Interval, interval_at};
use tower_sessions::{Session, SessionStore as _, session::Id};

use crate::{
    events::{JobEvent, UserEvents},
    jobs::{DEFAULT_PAGE_SIZE, recent},
    pages::view::JobRow,
    session::{LOGIN_KEY, Login},
    state::AppState,
    streams::StreamGuard,
};

/// How long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(2);
/// How often a live stream reads its session again, to end when it is gone.
pub const SESSION_RECHECK: Duration = Duration::from_secs(5);

/// `GET /events`. Without a session: `401` (an event stream does not follow a login redirect,
/// and a browser stops reconnecting on it).
pub async fn events(
    State(app): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    let login = match session.get::<Login>(LOGIN_KEY).await {
        Ok(Some(login)) => login,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "log in first").into_response(),
        Err(error) => {
            tracing::error!(%error, "session store failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Some(id) = session.id() else {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    };
    let user = login.user;
    tracing::debug!(user = %user, "live updates connected");
    let events = app.events.subscribe(&user);
    let guard = app.web.live.open(id);
    Sse::new(stream(app, user, events, guard))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct Live {
    app: AppState,
    user: UserId,
    events: UserEvents,
    pending: VecDeque<Event>,
    catch_up: bool,
    session: StreamGuard,
    recheck: Interval,
}

fn stream(
    app: AppState,
    user: UserId,
    events: UserEvents,
    session: StreamGuard,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let live = Live {
        app,
        user,
        events,
        pending: VecDeque::from([Event::default().event("hello").data("").retry(RETRY)]),
        catch_up: true,
        session,
        recheck: interval_at(Instant::now() + SESSION_RECHECK, SESSION_RECHECK),
    };
    futures::stream::unfold(live, |mut live| async move {
        loop {
            if live.session.ended.is_cancelled() {
                return None;
            }
            if let Some(event) = live.pending.pop_front() {
                return Some((Ok(event), live));
            }
            if live.catch_up {
                live.catch_up = false;
                match recent(&live.app, &live.user, None, DEFAULT_PAGE_SIZE).await {
                    Ok((records, _)) => {
                        // Oldest first, so that a page inserting new rows on top keeps the order.
                        live.pending.extend(
                            records.iter().rev().map(|(record, revision)| {
                                job_event(&JobRow::new(record, *revision))
                            }),
                        );
                    }
                    Err(error) => {
                        // End the stream: the browser reconnects and tries again.
                        tracing::warn!(%error, user = %live.user, "live updates: cannot list jobs");
                        return None;
                    }
                }
                continue;
            }
            let next = tokio::select! {
                biased;
                () = live.app.shutdown.cancelled() => return None,
                () = live.session.ended.cancelled() => return None,
                _ = live.recheck.tick() => {
                    if !session_lives(&live.app, &live.session.id).await {
                        tracing::debug!(user = %live.user, "live updates: the session is gone");
                        return None;
                    }
                    continue;
                }
                next = live.events.next() => next,
            };
            match next {
                JobEvent::Updated {
                    record, revision, ..
                } => live
                    .pending
                    .push_back(job_event(&JobRow::new(&record, revision))),
                JobEvent::Removed { id, .. } => live
                    .pending
                    .push_back(Event::default().event("removed").data(id.to_string())),
                JobEvent::Resync => live.catch_up = true,
            }
        }
    })
}

/// Whether session `id` is still in the store, logged in. A store that cannot answer ends the
/// stream too: the browser reconnects, and its session is checked again then.
async fn session_lives(app: &AppState, id: &Id) -> bool {
    match app.web.sessions.load(id).await {
        Ok(record) => record.is_some_and(|r| r.data.contains_key(LOGIN_KEY)),
        Err(error) => {
            tracing::warn!(%error, "live updates: cannot read the session");
            false
        }
    }
}

fn job_event(row: &JobRow) -> Event {
    Event::default()
        .event("job")
        .data(serde_json::to_string(row).expect("a job row always serializes"))
}
