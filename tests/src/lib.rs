//! The whole Vigil stack as real processes — the four services and the
//! carrier simulator — on a NATS server and a PostgreSQL cluster of its own,
//! all on free ports and removed when the [`Stack`] is dropped.

pub mod clients;
pub mod collector;
mod stack;
mod tenant;

pub use clients::{Admin, AgentClient, admin_client, agent_client, registration_client};
pub use stack::{Stack, StackOptions};
pub use tenant::Tenant;
