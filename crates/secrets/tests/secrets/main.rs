//! One integration-test binary for vigil-secrets (link time on a 2-core CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz;
mod keyring;
mod password;
mod token;
