//! The challenge service: owns users, factors and challenges, answers the
//! fast questions over NATS request/reply, and drives each challenge's state
//! machine from the delivery events telephony emits.

mod app;
mod audit;
mod caps;
mod challenges;
mod codes;
mod config;
mod delivery_answers;
mod delivery_status;
mod expiry;
mod login;
mod otp_factors;
mod policy;
mod push;
pub mod ratelimit;
pub mod retention;
mod service;
mod state;
mod store;
mod unlocked_logins;
mod users;

pub use app::run;
pub use config::Config;
pub use state::ChallengeState;
