//! cola executors.
