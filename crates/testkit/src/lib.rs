//! Test support for real-process tests.
//!
//! Tests talk to a real `nats-server -js`, a real PostgreSQL and, for the
//! directory import, a real OpenLDAP `slapd` that this kit
//! starts itself: one fresh server per fixture, on free ports, in temp dirs,
//! all removed on `Drop`. Nothing here touches a PostgreSQL or NATS the
//! machine may already run (5432/4222): a new user's machine and CI may not
//! have them.
//!
//! Every child process is spawned with `PR_SET_PDEATHSIG(SIGKILL)` from a
//! long-lived spawner thread, so children also die when the test process
//! dies without running destructors (panic=abort, Ctrl-C, a `static` fixture);
//! temp dirs such a death leaves behind are removed by the next fixture.

mod bins;
mod ids;
mod nats;
mod plans;
mod ports;
mod postgres;
mod process;
pub mod radclient;
mod scratch;
mod slapd;
mod wait;

pub use bins::workspace_bin;
pub use ids::uuid_v7_at;
pub use nats::NatsServer;
pub use plans::{prepared_plans, retention_batch_plans};
pub use ports::{free_port, free_udp_port};
pub use postgres::PgServer;
pub use process::ServiceProcess;
pub use slapd::{SlapdOptions, SlapdServer};
pub use wait::{Attempt, init_test_logging, wait_until};
