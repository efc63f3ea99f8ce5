//! The perfpipe node and its commands, as a library the `perfpipe` binary drives: settings,
//! the commands (`serve`, `ingest`, `parse`, `namespace-token`), cluster routing, the
//! plugins' cache and state manager, and access to the stores. The
//! formats live in `parsers/*` and the stores in `backends/*`; this crate wires them.
//!
//! Errors reach the binary as `anyhow::Error` (this is the application edge); the crates below
//! keep typed errors.

pub mod adopt;
pub mod aggregate_store;
pub mod api;
pub mod cachemanager;
pub mod carbon;
pub mod check;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod enqueuer;
pub mod expr;
pub mod fastpath;
pub mod graphite;
pub mod handoff;
pub mod https;
pub mod ingest;
pub mod intake;
pub mod lastvalues;
pub mod listener;
pub mod parse;
pub mod protocols;
pub mod rename;
pub mod rollup;
pub mod routing;
pub mod server;
pub mod storage;
pub mod trash;
pub mod wal;
