//! `vigil providers …`: a provider's guards — toll-fraud caps on SMS and
//! calls per destination prefix, message templates, the signed fraud webhook
//! (admin token).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};
use vigil_proto::v1::{
    ListWebhookDeliveriesRequest, Provider, RotateWebhookSecretRequest, UpdateProviderRequest, WebhookDelivery,
};

use crate::{
    Global,
    gateway::{Admin, rpc_error},
    output::{self, emit, fields},
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
    /// Show or set the message templates ("" goes back to Vigil's default).
    Templates {
        provider: String,
        /// The SMS with the code: {code} (required), {provider}, {minutes}.
        #[arg(long)]
        sms: Option<String>,
        /// What a call says first: {provider}, {username}.
        #[arg(long)]
        voice: Option<String>,
    },
    /// Show or set where fraud notifications are posted ("" removes it).
    Webhook {
        provider: String,
        #[arg(long)]
        url: Option<String>,
    },
    /// Make a new webhook signing secret and print it, once; the old one stops working.
    RotateWebhookSecret { provider: String },
    /// The last fraud notifications and whether the webhook took them.
    WebhookDeliveries {
        provider: String,
        /// How many, newest first (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show or set the directory (LDAP / Active Directory) that checks the passwords of
    /// RADIUS password-code logins.
    Directory(crate::directory::DirectoryArgs),
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
        ProvidersCommand::Templates { provider, sms, voice } => {
            let p = update(
                &mut admin,
                UpdateProviderRequest {
                    provider_id: provider,
                    sms_template: sms,
                    voice_template: voice,
                    ..Default::default()
                },
            )
            .await?;
            let value = json!({"id": p.id, "sms_template": p.sms_template, "voice_template": p.voice_template});
            emit(global, &value, || {
                let shown = |t: &str| {
                    if t.is_empty() {
                        "(Vigil's default)".to_owned()
                    } else {
                        t.to_owned()
                    }
                };
                format!(
                    "provider {}\n{}",
                    p.id,
                    fields(&[("SMS", shown(&p.sms_template)), ("voice", shown(&p.voice_template))])
                )
            });
        }
        ProvidersCommand::Webhook { provider, url } => {
            let p = update(
                &mut admin,
                UpdateProviderRequest {
                    provider_id: provider,
                    fraud_webhook_url: url,
                    ..Default::default()
                },
            )
            .await?;
            let value = json!({"id": p.id, "fraud_webhook_url": p.fraud_webhook_url, "has_webhook_secret": p.has_webhook_secret});
            emit(global, &value, || {
                let hint = if p.has_webhook_secret || p.fraud_webhook_url.is_empty() {
                    ""
                } else {
                    "No signing secret yet: nothing is sent until `vigil providers rotate-webhook-secret` makes one.\n"
                };
                format!("{}\n{hint}", output::pretty(&value))
            });
        }
        ProvidersCommand::RotateWebhookSecret { provider } => {
            let request = admin.request(RotateWebhookSecretRequest { provider_id: provider })?;
            let secret = admin
                .client
                .rotate_webhook_secret(request)
                .await
                .map_err(rpc_error("RotateWebhookSecret"))?
                .into_inner();
            emit(
                global,
                &json!({"provider_id": secret.provider_id, "secret": secret.secret}),
                || {
                    format!(
                        "webhook secret of {}\n  {}\nShown only this once: give it to the webhook's receiver, which checks \
                         `webhook-signature` with it (Standard Webhooks).\n",
                        secret.provider_id, secret.secret
                    )
                },
            );
        }
        ProvidersCommand::WebhookDeliveries { provider, limit } => {
            let request = admin.request(ListWebhookDeliveriesRequest {
                provider_id: provider,
                limit,
            })?;
            let list = admin
                .client
                .list_webhook_deliveries(request)
                .await
                .map_err(rpc_error("ListWebhookDeliveries"))?
                .into_inner();
            let value = Value::Array(list.deliveries.iter().map(delivery_json).collect());
            emit(global, &value, || {
                if list.deliveries.is_empty() {
                    "no fraud notifications\n".into()
                } else {
                    list.deliveries.iter().map(delivery_text).collect()
                }
            });
        }
        ProvidersCommand::Directory(args) => crate::directory::run(global, &admin, args).await?,
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

fn delivery_json(d: &WebhookDelivery) -> Value {
    json!({
        "id": d.id,
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "challenge_id": d.challenge_id,
        "created_at": output::time(d.created_at.as_ref()),
        "delivered_at": output::time(d.delivered_at.as_ref()),
        "next_attempt_at": output::time(d.next_attempt_at.as_ref()),
    })
}

fn delivery_text(d: &WebhookDelivery) -> String {
    format!(
        "{} {}\n{}",
        d.id,
        d.status,
        fields(&[
            ("challenge", d.challenge_id.clone()),
            ("attempts", d.attempts.to_string()),
            ("last error", d.last_error.clone()),
            ("created at", output::time(d.created_at.as_ref()).unwrap_or_default()),
            (
                "next attempt",
                output::time(d.next_attempt_at.as_ref()).unwrap_or_default()
            ),
        ])
    )
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
        Cli::try_parse_from(["vigil", "providers", "webhook", "prv_1", "--url", "https://h.example/x"])?;
        Cli::try_parse_from(["vigil", "providers", "rotate-webhook-secret", "prv_1"])?;
        Cli::try_parse_from([
            "vigil",
            "providers",
            "templates",
            "prv_1",
            "--sms",
            "{provider}: {code}",
        ])?;
        Cli::try_parse_from(["vigil", "providers", "webhook-deliveries", "prv_1", "--limit", "5"])?;
        Ok(())
    }
}
