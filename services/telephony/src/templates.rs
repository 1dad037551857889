//! Providers' message templates: learnt from the provider events the gateway
//! publishes, and used to render the SMS carrying a code and the greeting a
//! call speaks. Without a template (or before the provider's events arrived)
//! the text the challenge service wrote is sent as it is.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use vigil_bus::{Handler, HandlerError, Received, envelope};
use vigil_proto::events::{Channel, DeliveryRequested, ProviderCreated, ProviderUpdated};

/// Durable name of the provider-events consumer.
pub const CONSUMER: &str = "telephony-providers";

/// Stores the name and templates of each provider, newest revision wins.
pub struct ProviderEvents;

async fn upsert(
    tx: &mut PgConnection,
    provider_id: &str,
    name: &str,
    sms: &str,
    voice: &str,
    revision: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO provider_templates AS t (provider_id, name, sms_template, voice_template, revision)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (provider_id) DO UPDATE SET name = EXCLUDED.name, sms_template = EXCLUDED.sms_template,
             voice_template = EXCLUDED.voice_template, revision = EXCLUDED.revision
         WHERE EXCLUDED.revision > t.revision",
    )
    .bind(provider_id)
    .bind(name)
    .bind(sms)
    .bind(voice)
    .bind(revision)
    .execute(tx)
    .await?;
    Ok(())
}

impl Handler for ProviderEvents {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let envelope = event.envelope;
        if envelope.r#type.ends_with(".ProviderUpdated") {
            let e: ProviderUpdated = envelope::unwrap(envelope)?;
            upsert(
                tx,
                &e.provider_id,
                &e.name,
                &e.sms_template,
                &e.voice_template,
                e.revision,
            )
            .await?;
        } else if envelope.r#type.ends_with(".ProviderCreated") {
            let e: ProviderCreated = envelope::unwrap(envelope)?;
            // Revision 0: a provider starts with the default texts.
            upsert(tx, &e.provider_id, &e.name, "", "", 0).await?;
        }
        // Other provider events say nothing telephony uses.
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    sms_template: String,
    voice_template: String,
}

/// `template` with each `{name}` replaced; the values are never re-scanned.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        match values.iter().find(|(name, _)| tail.starts_with(&format!("{{{name}}}"))) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &tail[name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `request` as the provider wants it worded: the SMS body from its
/// template (when the request carries the code) and the call's greeting.
pub async fn apply(
    connection: &mut PgConnection,
    provider_id: &str,
    request: &DeliveryRequested,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<DeliveryRequested, sqlx::Error> {
    let mut request = request.clone();
    let channel = Channel::try_from(request.channel).unwrap_or_default();
    if !matches!(channel, Channel::Sms | Channel::Voice) {
        return Ok(request);
    }
    let row: Option<Row> =
        sqlx::query_as("SELECT name, sms_template, voice_template FROM provider_templates WHERE provider_id = $1")
            .bind(provider_id)
            .fetch_optional(connection)
            .await?;
    let Some(row) = row else {
        return Ok(request);
    };
    if channel == Channel::Sms && !row.sms_template.is_empty() && !request.code.is_empty() {
        let minutes = ((expires_at - now).num_seconds().max(0) + 59) / 60;
        request.body = render(
            &row.sms_template,
            &[
                ("code", &request.code),
                ("provider", &row.name),
                ("minutes", &minutes.to_string()),
            ],
        );
    }
    if channel == Channel::Voice && !row.voice_template.is_empty() {
        request.body = render(
            &row.voice_template,
            &[("provider", &row.name), ("username", &request.username)],
        );
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once() {
        let values = [("code", "123456"), ("provider", "{code} Corp")];
        assert_eq!(
            render("{provider}: your code is {code}", &values),
            "{code} Corp: your code is 123456",
            "a value is never scanned again"
        );
        assert_eq!(render("{unknown} {code", &values), "{unknown} {code");
        assert_eq!(render("no placeholders", &values), "no placeholders");
        assert_eq!(render("", &values), "");
    }
}
