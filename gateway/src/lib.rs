//! cola gateway.
