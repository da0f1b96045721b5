//! Posthorn's integration tests: one binary, the real server on port 0, a
//! fresh database per test.

mod auth;
mod binary;
mod contract;
mod crash;
mod delivery;
mod echo;
mod fault_smtp;
mod gateway;
mod grpc_web;
mod health;
mod helpers;
mod limits;
mod messages;
mod relay;
mod rest;
mod retries;
mod scale;
mod send;
mod shutdown;
mod storage;
mod templates;
