//! Who is asking: the [`Authenticated`] extractor and the pluggable [`Authenticator`]s behind it.
//!
//! Handlers only ever see `Authenticated(user)`. Where the user comes from is up to the chain of
//! authenticators in the state: a bearer API token. The browser session deliberately is not in
//! this chain: a cookie never authorizes a JSON API call (so the API needs no CSRF defence);
//! the pages have their own extractor, [`crate::pages::SignedIn`].
//!
//! Tokens already checked are kept in a [`TokenCache`], so that a request with a known token
//! costs no NATS round trip; one watch per gateway process on the `cola-tokens` bucket
//! ([`watch_tokens`]) forgets a token as soon as it is revoked or changed, through any gateway.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use async_nats::jetstream::kv;
use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};
use cola_wire::UserId;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::{GatewayError, connection::Reconnects, tokens};

/// One way of recognising the user behind a request.
pub trait Authenticator: Send + Sync {
    /// The user the request's credentials name; `None` when it carries no valid credentials of
    /// this kind (the next authenticator is asked). An `Err` is a failure to check (e.g. the
    /// token store is unreachable), not a refusal.
    fn authenticate<'a>(
        &'a self,
        request: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<UserId>, GatewayError>>;
}

/// The authenticators a gateway tries, in order; the first that names a user wins.
#[derive(Clone)]
pub struct Authenticators(Arc<[Arc<dyn Authenticator>]>);

impl Authenticators {
    pub fn new(chain: Vec<Arc<dyn Authenticator>>) -> Self {
        Self(chain.into())
    }

    /// The user behind `request`, or [`GatewayError::Unauthorized`].
    pub async fn authenticate(&self, request: &Parts) -> Result<UserId, GatewayError> {
        for authenticator in self.0.iter() {
            if let Some(user) = authenticator.authenticate(request).await? {
                return Ok(user);
            }
        }
        Err(GatewayError::Unauthorized)
    }
}

/// `Authorization: Bearer <token>` with a token from the `cola-tokens` bucket.
pub struct BearerTokens {
    tokens: kv::Store,
    cache: TokenCache,
}

impl BearerTokens {
    /// Tokens read from `tokens`, kept in `cache` (which [`watch_tokens`] keeps honest).
    pub fn new(tokens: kv::Store, cache: TokenCache) -> Self {
        Self { tokens, cache }
    }
}

impl Authenticator for BearerTokens {
    fn authenticate<'a>(
        &'a self,
        request: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<UserId>, GatewayError>> {
        Box::pin(async move {
            let Some(token) = bearer_token(request) else {
                return Ok(None);
            };
            let key = tokens::key_of(token);
            if let Some(user) = self.cache.get(&key) {
                return Ok(Some(user));
            }
            let generation = self.cache.generation();
            let user = tokens::lookup(&self.tokens, token)
                .await?
                .map(|record| record.user);
            if let (Some(user), Some(generation)) = (&user, generation) {
                self.cache.insert(key, user.clone(), generation);
            }
            Ok(user)
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(request: &Parts) -> Option<&str> {
    let value = request.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The user a request comes from. Extracting it answers `401` when nobody is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub UserId);

impl<S> FromRequestParts<S> for Authenticated
where
    Authenticators: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        if let Some(known) = parts.extensions.get::<Authenticated>() {
            return Ok(known.clone());
        }
        let user = Authenticators::from_ref(state).authenticate(parts).await?;
        tracing::Span::current().record("user", tracing::field::display(&user));
        let known = Authenticated(user);
        parts.extensions.insert(known.clone());
        Ok(known)
    }
}

/// Most tokens kept at once; when full, the cache starts again empty.
const MAX_CACHED_TOKENS: usize = 10_000;
/// A cached token is read again after this long, whatever the watch says.
const MAX_CACHED_AGE: Duration = Duration::from_secs(300);
/// Longest pause between two attempts to watch the tokens again.
const MAX_REWATCH_BACKOFF: Duration = Duration::from_secs(5);

/// API tokens already checked (by the hash that is their key), with their users.
///
/// An entry is only added while the watch of the bucket runs, and only if no change was seen
/// between the read it comes from and its insertion; every change seen forgets its key. While
/// the watch is down, the cache is empty and every request reads the bucket.
#[derive(Clone, Default)]
pub struct TokenCache {
    state: Arc<Mutex<CacheState>>,
}

#[derive(Default)]
struct CacheState {
    /// Whether the watch runs (entries may be kept).
    live: bool,
    /// Counts the changes seen: an entry read before a change is not added after it.
    generation: u64,
    entries: HashMap<String, (UserId, Instant)>,
}

impl TokenCache {
    fn state(&self) -> MutexGuard<'_, CacheState> {
        // Every update is a single step: a panicking holder leaves a consistent map.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user of the token whose key is `key`, if it was checked lately.
    pub fn get(&self, key: &str) -> Option<UserId> {
        let state = self.state();
        let (user, since) = state.entries.get(key)?;
        (state.live && since.elapsed() < MAX_CACHED_AGE).then(|| user.clone())
    }

    /// The generation to hand to [`insert`](Self::insert) after a read; `None` while nothing
    /// may be cached.
    pub fn generation(&self) -> Option<u64> {
        let state = self.state();
        state.live.then_some(state.generation)
    }

    /// Keeps `key` → `user`, read at `generation`, unless something changed since.
    pub fn insert(&self, key: String, user: UserId, generation: u64) {
        let mut state = self.state();
        if !state.live || state.generation != generation {
            return;
        }
        if state.entries.len() >= MAX_CACHED_TOKENS {
            state.entries.clear();
        }
        state.entries.insert(key, (user, Instant::now()));
    }

    /// Forgets the token whose key is `key` (it was revoked or changed).
    pub fn forget(&self, key: &str) {
        let mut state = self.state();
        state.generation += 1;
        state.entries.remove(key);
    }

    fn set_live(&self, live: bool) {
        let mut state = self.state();
        state.live = live;
        state.generation += 1;
        state.entries.clear();
    }

    /// How many tokens are kept (for tests).
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Watches the `cola-tokens` bucket until `shutdown`, forgetting every token that changes; the
/// cache holds entries only while the watch runs, and starts again empty after the watch fails
/// or NATS reconnects (a restarted server forgets watches).
pub async fn watch_tokens(
    tokens: kv::Store,
    cache: TokenCache,
    mut reconnects: Reconnects,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut watch = tokio::select! {
            () = shutdown.cancelled() => return,
            watch = tokens.watch_all() => match watch {
                Ok(watch) => watch,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot watch API tokens; not caching them");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_REWATCH_BACKOFF);
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        reconnects.borrow_and_update();
        cache.set_live(true);
        tracing::debug!("watching API tokens: caching them");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = reconnects.changed() => {
                    if changed.is_err() {
                        // No more reconnect signals: the client is gone.
                        cache.set_live(false);
                        return;
                    }
                    tracing::info!("NATS reconnected, watching API tokens again");
                    break;
                }
                entry = watch.next() => match entry {
                    Some(Ok(entry)) => {
                        tracing::debug!(key = %entry.key, "API token changed: forgetting it");
                        cache.forget(&entry.key);
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "API token watch failed, watching again");
                        break;
                    }
                    None => break,
                },
            }
        }
        cache.set_live(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut request = Request::builder().uri("/");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        assert_eq!(
            bearer_token(&parts(Some("Bearer cola_abc"))),
            Some("cola_abc")
        );
        assert_eq!(
            bearer_token(&parts(Some("bearer  cola_abc "))),
            Some("cola_abc")
        );
        assert_eq!(bearer_token(&parts(Some("Basic dXNlcjpwdw=="))), None);
        assert_eq!(bearer_token(&parts(Some("Bearer "))), None);
        assert_eq!(bearer_token(&parts(None)), None);
    }

    struct Fixed(Option<&'static str>);

    impl Authenticator for Fixed {
        fn authenticate<'a>(
            &'a self,
            _: &'a Parts,
        ) -> BoxFuture<'a, Result<Option<UserId>, GatewayError>> {
            Box::pin(async move { Ok(self.0.map(|u| UserId::parse(u).unwrap())) })
        }
    }

    #[tokio::test]
    async fn the_first_authenticator_that_knows_the_user_wins() {
        let chain = Authenticators::new(vec![
            Arc::new(Fixed(None)),
            Arc::new(Fixed(Some("alice"))),
            Arc::new(Fixed(Some("bob"))),
        ]);
        let user = chain.authenticate(&parts(None)).await.unwrap();
        assert_eq!(user.as_str(), "alice");
        let nobody = Authenticators::new(vec![Arc::new(Fixed(None))]);
        assert!(matches!(
            nobody.authenticate(&parts(None)).await,
            Err(GatewayError::Unauthorized)
        ));
    }

    #[test]
    fn the_token_cache_keeps_nothing_read_before_a_change_or_while_not_watching() {
        let cache = TokenCache::default();
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(cache.generation(), None, "not watching: nothing is cached");
        cache.insert("k".into(), alice.clone(), 0);
        assert_eq!(cache.get("k"), None);
        cache.set_live(true);
        let before = cache.generation().unwrap();
        cache.insert("k".into(), alice.clone(), before);
        assert_eq!(cache.get("k"), Some(alice.clone()));
        // Revoked: forgotten, and a read that started before the change is not kept.
        let racing = cache.generation().unwrap();
        cache.forget("k");
        assert_eq!(cache.get("k"), None);
        cache.insert("k".into(), alice.clone(), racing);
        assert_eq!(cache.get("k"), None);
        // The watch stopped: everything goes.
        let now = cache.generation().unwrap();
        cache.insert("k".into(), alice, now);
        cache.set_live(false);
        assert!(cache.is_empty() && cache.get("k").is_none());
    }
}
