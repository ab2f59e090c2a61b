//! The gateway's HTTP API against a real nats-server, with tests playing the middleware's part.

mod jobs;
mod numeric;
mod openapi;
mod quota;
mod service;
mod submit;
mod support;
mod wait;
