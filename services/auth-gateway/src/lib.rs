//! The auth gateway: agents ask it whether a user may log in; operators
//! manage providers, agents and users through its admin API. Decisions that
//! need user state are asked of the challenge service over NATS
//! request/reply, with a deadline: no answer is a deny, never an allow.

mod admin;
mod agent_api;
mod app;
mod audit;
mod auth;
mod config;
mod directory;
mod error;
mod fraud_webhook;
mod known_agents;
mod metrics;
mod radius;
mod recent;
mod registration;
mod retention;
mod store;
mod watch;

pub use app::run;
pub use config::Config;
