//! Who is asking: the [`Authenticated`] extractor and the pluggable [`Authenticator`]s behind it.
//!
//! Handlers only ever see `Authenticated(user)`. Where the user comes from is up to the chain of
//! authenticators in the state: a bearer API token. The browser session deliberately is not in
//! this chain: a cookie never authorizes a JSON API call (so the API needs no CSRF defence);
//! the pages have their own extractor, [`crate::pages::SignedIn`].

use std::sync::Arc;

use async_nats::jetstream::kv;
use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};
use cola_wire::UserId;
use futures::future::BoxFuture;

use crate::{GatewayError, tokens};

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
}

impl BearerTokens {
    pub fn new(tokens: kv::Store) -> Self {
        Self { tokens }
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
            Ok(tokens::lookup(&self.tokens, token)
                .await?
                .map(|record| record.user))
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
}
