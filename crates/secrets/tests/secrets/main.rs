//! One integration-test binary for vigil-secrets (link time on a 2-core CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keyring;
mod password;
mod token;
