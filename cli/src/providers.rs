//! `vigil providers …`: a provider's guards — toll-fraud caps on SMS and
//! calls per destination prefix (admin token).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};
use vigil_proto::v1::{Provider, UpdateProviderRequest};

use crate::{
    Global,
    gateway::{Admin, rpc_error},
    output::{emit, fields},
};

#[derive(Subcommand)]
pub enum ProvidersCommand {
    /// Show or set the toll-fraud caps: SMS and calls per destination prefix
    /// and hour (0 is no cap). Without options, shows them.
    Caps {
        /// Provider id (`prv_…`).
        provider: String,
        /// SMS per destination prefix and hour.
        #[arg(long)]
        sms_per_hour: Option<u32>,
        /// Voice calls per destination prefix and hour.
        #[arg(long)]
        voice_per_hour: Option<u32>,
        /// How many digits of the E.164 number make a prefix (1 to 15).
        #[arg(long)]
        prefix_digits: Option<u32>,
    },
}

pub async fn run(global: &Global, command: ProvidersCommand) -> anyhow::Result<ExitCode> {
    let mut admin = Admin::connect(global).await?;
    match command {
        ProvidersCommand::Caps {
            provider,
            sms_per_hour,
            voice_per_hour,
            prefix_digits,
        } => {
            let p = update(
                &mut admin,
                UpdateProviderRequest {
                    provider_id: provider,
                    sms_cap_per_hour: sms_per_hour,
                    voice_cap_per_hour: voice_per_hour,
                    cap_prefix_digits: prefix_digits,
                    ..Default::default()
                },
            )
            .await?;
            emit(global, &caps_json(&p), || caps_text(&p));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// UpdateProvider with only what was given: nothing given changes nothing
/// and returns the provider as it is.
async fn update(admin: &mut Admin, request: UpdateProviderRequest) -> anyhow::Result<Provider> {
    let request = admin.request(request)?;
    Ok(admin
        .client
        .update_provider(request)
        .await
        .map_err(rpc_error("UpdateProvider"))?
        .into_inner())
}

fn cap(n: u32) -> String {
    if n == 0 { "no cap".into() } else { n.to_string() }
}

pub fn caps_json(p: &Provider) -> Value {
    json!({
        "id": p.id,
        "sms_cap_per_hour": p.sms_cap_per_hour,
        "voice_cap_per_hour": p.voice_cap_per_hour,
        "cap_prefix_digits": p.cap_prefix_digits,
    })
}

fn caps_text(p: &Provider) -> String {
    format!(
        "provider {}\n{}",
        p.id,
        fields(&[
            ("SMS per prefix and hour", cap(p.sms_cap_per_hour)),
            ("calls per prefix and hour", cap(p.voice_cap_per_hour)),
            ("prefix digits", p.cap_prefix_digits.to_string()),
        ])
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::Cli;

    #[test]
    fn caps_parse() -> Result<(), clap::Error> {
        Cli::try_parse_from([
            "vigil",
            "providers",
            "caps",
            "prv_1",
            "--sms-per-hour",
            "10",
            "--prefix-digits",
            "5",
        ])?;
        assert!(Cli::try_parse_from(["vigil", "providers", "caps", "prv_1", "--sms-per-hour", "-1"]).is_err());
        Ok(())
    }
}
