//! Posthorn: a self-hosted transactional email service, gRPC-first.
//!
//! One core, many doors: `api` (gRPC and gRPC-Web) in front of `domain`
//! (use cases) in front of `storage` (SeaORM over SQLite or PostgreSQL).

pub mod api;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod mcp;
pub mod proto;
pub mod serve;
pub mod startup;
pub mod storage;
pub mod telemetry;
