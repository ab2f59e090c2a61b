//! The web app's handlers, driven with `tower::ServiceExt::oneshot` against a real nats-server
//! and, for the login, a small OpenID provider served by the test itself (real HTTP, real RSA
//! signatures).

mod auth;
mod host;
mod numeric;
mod pages;
mod provider;
mod support;
