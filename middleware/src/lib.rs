//! cola middleware.
