//! Integration tests for vigil-radius: one binary (link time) with a module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod props;
mod radclient;
mod support;
mod udp;
