//! `vigil`: the operator's and developer's command line for Vigil.
//!
//! Administers providers, agents and users over the gateway's admin API, acts
//! as a login agent, drives the carrier simulator, reads billing usage and runs
//! the end-to-end demo that `scripts/dev up` shows a new user.

mod admin;
mod agent;
mod audit;
mod billing;
mod demo;
mod directory;
mod gateway;
mod http;
mod manage;
mod output;
mod providers;
mod radius_clients;
mod sim;
mod users;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

/// Exit status when a command ran but the login it asked about was refused
/// (`vigil agent login`): distinct from 1 (an error) and 2 (a usage error).
pub const EXIT_DENIED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Vigil's command line: administer providers, act as a login agent, drive the carrier simulator, read usage",
    after_help = "Against the local dev stack, run `eval \"$(scripts/dev env)\"` first to set the URLs and tokens."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts; each falls back to an environment variable.
#[derive(Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The auth gateway's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "VIGIL_GATEWAY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub gateway: String,
    /// Operator token for `admin` commands and the demo.
    #[arg(long, global = true, env = "VIGIL_ADMIN_TOKEN", hide_env_values = true, value_parser = secret)]
    pub admin_token: Option<SecretString>,
    /// Agent id (`agt_…`) for `agent` commands.
    #[arg(long, global = true, env = "VIGIL_AGENT_ID")]
    pub agent_id: Option<String>,
    /// Agent key for `agent` commands.
    #[arg(long, global = true, env = "VIGIL_AGENT_KEY", hide_env_values = true, value_parser = secret)]
    pub agent_key: Option<SecretString>,
    /// The carrier simulator's base URL.
    #[arg(long, global = true, env = "VIGIL_SIM_URL", default_value = "http://127.0.0.1:4010")]
    pub sim_url: String,
    /// The billing service's base URL.
    #[arg(
        long,
        global = true,
        env = "VIGIL_BILLING_URL",
        default_value = "http://127.0.0.1:8084"
    )]
    pub billing_url: String,
    /// Bearer token of the billing API.
    #[arg(long, global = true, env = "VIGIL_BILLING_TOKEN", hide_env_values = true, value_parser = secret)]
    pub billing_token: Option<SecretString>,
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    pub json: bool,
}

fn secret(value: &str) -> Result<SecretString, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(value))
}

#[derive(Subcommand)]
enum Command {
    /// Operator commands: providers, agents, users (needs the admin token).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Act as a login agent: preauth, authenticate, verify (needs agent credentials).
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Drive the carrier simulator's phones.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Read metered usage from the billing service.
    #[command(subcommand)]
    Billing(billing::BillingCommand),
    /// Walk through a whole login against a running stack, checking every answer.
    Demo(demo::DemoArgs),
    /// Activation, registration, agent and user policy, CSV import (admin token; `register` needs none).
    #[command(subcommand)]
    Manage(manage::ManageCommand),
    /// Explain what would happen if a user logged in now, and list their last attempts.
    Doctor(manage::DoctorArgs),
    /// A provider's guards and wording: toll-fraud caps, message templates, the signed fraud webhook, the
    /// directory that checks RADIUS passwords (admin token).
    #[command(subcommand)]
    Providers(providers::ProvidersCommand),
    /// Users: import from a directory, enrol factors (admin token), send a test challenge (agent credentials).
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// RADIUS clients (NPS, RD Gateway, VPN): create, list, delete (admin token).
    #[command(subcommand)]
    RadiusClients(radius_clients::RadiusClientsCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let result = match cli.command {
        Command::Admin(cmd) => admin::run(&cli.global, cmd).await,
        Command::Agent(cmd) => agent::run(&cli.global, cmd).await,
        Command::Sim(cmd) => sim::run(&cli.global, cmd).await,
        Command::Billing(cmd) => billing::run(&cli.global, cmd).await,
        Command::Demo(args) => demo::run(&cli.global, args).await,
        Command::Manage(cmd) => manage::run(&cli.global, cmd).await,
        Command::Doctor(args) => manage::doctor(&cli.global, args).await,
        Command::Providers(cmd) => providers::run(&cli.global, cmd).await,
        Command::Users(cmd) => users::run(&cli.global, cmd).await,
        Command::RadiusClients(cmd) => radius_clients::run(&cli.global, cmd).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            output::print_error(&error, json);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enrolling_a_phone_factor_needs_the_phone() {
        let base = ["vigil", "users", "enroll", "alice", "--provider", "prv_1"];
        assert!(Cli::try_parse_from(base.iter().chain(&["sms"])).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["voice", "--phone", "+15551234567"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["push"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["fax"])).is_err());
    }

    #[test]
    fn global_options_go_anywhere() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["vigil", "agent", "status", "chl_1", "--json", "--gateway", "http://h:1"])?;
        assert!(cli.global.json);
        assert_eq!(cli.global.gateway, "http://h:1");
        Ok(())
    }
}
