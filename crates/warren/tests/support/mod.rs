//! Shared test support for the `warren` binary's integration tests (each test crate uses a
//! part of it).
#![allow(dead_code)]

pub mod cluster;
