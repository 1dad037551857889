//! `vigil billing …`: metered usage from the billing service's HTTP API.

use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset};
use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::output::{emit, fields};
use crate::{Global, http};

#[derive(Subcommand)]
pub enum BillingCommand {
    /// A provider's usage over a period (the billing service's default period when left out).
    Usage {
        /// Provider id (`prv_…`).
        provider_id: String,
        /// Start of the period, RFC 3339 (e.g. 2025-01-01T00:00:00Z).
        #[arg(long, value_parser = rfc3339)]
        from: Option<DateTime<FixedOffset>>,
        /// End of the period, RFC 3339.
        #[arg(long, value_parser = rfc3339)]
        to: Option<DateTime<FixedOffset>>,
    },
}

fn rfc3339(value: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(value).map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2025-01-01T00:00:00Z"))
}

/// `GET /v1/providers/{id}/usage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Usage {
    pub provider_id: String,
    pub usage_model: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    pub authentications: u64,
}

/// Where and how to reach the billing API.
pub struct Billing {
    client: reqwest::Client,
    base: String,
    token: SecretString,
}

impl Billing {
    pub fn new(global: &Global) -> anyhow::Result<Billing> {
        let Some(token) = global.billing_token.clone() else {
            bail!("no billing token: pass --billing-token or set VIGIL_BILLING_TOKEN (`scripts/dev env` prints it)");
        };
        Ok(Billing {
            client: http::client()?,
            base: global.billing_url.clone(),
            token,
        })
    }

    pub async fn usage(
        &self,
        provider_id: &str,
        from: Option<&DateTime<FixedOffset>>,
        to: Option<&DateTime<FixedOffset>>,
    ) -> anyhow::Result<Usage> {
        let mut url = http::url(&self.base, &["v1", "providers", provider_id, "usage"])?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(from) = from {
                query.append_pair("from", &from.to_rfc3339());
            }
            if let Some(to) = to {
                query.append_pair("to", &to.to_rfc3339());
            }
        }
        // `query_pairs_mut` leaves a bare `?` when nothing was appended.
        if url.query() == Some("") {
            url.set_query(None);
        }
        let request = self.client.get(url).bearer_auth(self.token.expose_secret());
        http::send("billing usage", request)
            .await
            .with_context(|| format!("reading the usage of provider {provider_id}"))
    }
}

pub async fn run(global: &Global, command: BillingCommand) -> anyhow::Result<ExitCode> {
    let billing = Billing::new(global)?;
    match command {
        BillingCommand::Usage { provider_id, from, to } => {
            if from.zip(to).is_some_and(|(from, to)| from > to) {
                bail!("--from must not be after --to");
            }
            let usage = billing.usage(&provider_id, from.as_ref(), to.as_ref()).await?;
            emit(global, &json!(usage), || usage_text(&usage));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn usage_text(u: &Usage) -> String {
    format!(
        "provider {}\n{}",
        u.provider_id,
        fields(&[
            ("usage model", u.usage_model.clone()),
            ("from", u.from.clone().unwrap_or_default()),
            ("to", u.to.clone().unwrap_or_default()),
            ("authentications", u.authentications.to_string()),
        ])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usage_answer() -> anyhow::Result<()> {
        let usage: Usage = serde_json::from_str(
            r#"{"provider_id":"prv_1","usage_model":"per_authentication",
                "from":"2025-01-01T00:00:00Z","to":"2025-02-01T00:00:00Z","authentications":3}"#,
        )?;
        assert_eq!(usage.authentications, 3);
        assert!(usage_text(&usage).contains("authentications: 3"));
        Ok(())
    }

    #[test]
    fn times_must_be_rfc3339() {
        assert!(rfc3339("2025-01-01T00:00:00Z").is_ok());
        assert!(rfc3339("2025-01-01").is_err());
    }
}
