//! Providers (tenants): created with a usage model that never changes.

use uuid::Uuid;
use vigil_core::ProviderId;
use vigil_proto::{
    events::{ProviderCreated, ProviderUpdated},
    v1::{self as api, UsageModel},
};

use super::convert::{self, parse_provider, usage_model_name};
use crate::{app::Gateway, audit, auth::AdminScope, error::GatewayError, store};

const MAX_PAGE_SIZE: u32 = 500;
/// Highest settable cap per hour: beyond it a cap protects nothing.
const MAX_CAP: u32 = 1_000_000;

/// The provider, if it exists and `scope` may see it.
pub async fn existing(gateway: &Gateway, scope: AdminScope, id: &str) -> Result<store::ProviderRow, GatewayError> {
    let provider = parse_provider(id)?;
    scope.require_provider(provider.as_uuid())?;
    let mut conn = gateway.pool.acquire().await?;
    store::get_provider(&mut conn, provider.as_uuid())
        .await?
        .ok_or_else(|| GatewayError::NotFound(format!("provider {provider} does not exist")))
}

fn valid_name(name: &str) -> Result<&str, GatewayError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(GatewayError::InvalidArgument("name must be 1 to 200 characters".into()));
    }
    Ok(name)
}

fn valid_networks(networks: &[String]) -> Result<Vec<String>, GatewayError> {
    networks
        .iter()
        .map(|n| {
            n.trim()
                .parse::<ipnet::IpNet>()
                .map(|net| net.trunc().to_string())
                .map_err(|_| {
                    GatewayError::InvalidArgument(format!("trusted network {n:?} is not a CIDR like 10.0.0.0/8"))
                })
        })
        .collect()
}

/// A cap per hour (0 is none) or prefix length as stored.
fn valid_count(
    value: Option<u32>,
    what: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Option<i32>, GatewayError> {
    match value {
        None => Ok(None),
        Some(v) if range.contains(&v) => Ok(i32::try_from(v).ok()),
        Some(v) => Err(GatewayError::InvalidArgument(format!(
            "{what} must be between {} and {} (got {v})",
            range.start(),
            range.end()
        ))),
    }
}

/// A template: at most `max` characters, no control characters, only the
/// placeholders in `allowed`, and each of `required`.
fn valid_template<'a>(
    field: &str,
    text: &'a str,
    max: usize,
    allowed: &[&str],
    required: &[&str],
) -> Result<&'a str, GatewayError> {
    let text = text.trim();
    let refuse = |why: String| Err(GatewayError::InvalidArgument(format!("{field}: {why}")));
    if text.is_empty() {
        return Ok(text);
    }
    if text.chars().count() > max {
        return refuse(format!("at most {max} characters"));
    }
    if text.chars().any(char::is_control) {
        return refuse("no control characters".into());
    }
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return refuse("a { is not closed".into());
        };
        let name = &rest[open..open + close + 1];
        if !allowed.contains(&name) {
            return refuse(format!("unknown placeholder {name} (allowed: {})", allowed.join(" ")));
        }
        rest = &rest[open + close + 1..];
    }
    match required.iter().find(|r| !text.contains(**r)) {
        Some(missing) => refuse(format!("must contain {missing}")),
        None => Ok(text),
    }
}

/// Two SMS segments at most; the code must be in it.
fn valid_sms_template(text: &str) -> Result<&str, GatewayError> {
    valid_template(
        "sms_template",
        text,
        320,
        &["{code}", "{provider}", "{minutes}"],
        &["{code}"],
    )
}

fn valid_voice_template(text: &str) -> Result<&str, GatewayError> {
    valid_template("voice_template", text, 500, &["{provider}", "{username}"], &[])
}

fn valid_webhook(url: &str) -> Result<String, GatewayError> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(String::new());
    }
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(url.to_owned()),
        _ => Err(GatewayError::InvalidArgument(format!(
            "fraud_webhook_url {url:?} must be an http(s) URL"
        ))),
    }
}

pub async fn create(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::CreateProviderRequest,
) -> Result<api::Provider, GatewayError> {
    scope.require_operator()?;
    let name = valid_name(&req.name)?;
    let model = UsageModel::try_from(req.usage_model).unwrap_or(UsageModel::Unspecified);
    let model_name = usage_model_name(model).ok_or_else(|| {
        GatewayError::InvalidArgument(
            "usage_model must be per_enabled_user or per_authentication; it cannot be changed later".into(),
        )
    })?;
    let row = store::ProviderRow {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        usage_model: model_name.to_owned(),
        created_at: gateway.clock.now(),
        block_user_on_fraud: true,
        fraud_webhook_url: String::new(),
        trusted_networks: vec![],
        caps: store::DeliveryCapsRow::DEFAULT,
        has_webhook_secret: false,
        sms_template: String::new(),
        voice_template: String::new(),
        revision: 0,
    };
    let provider_id = ProviderId::from_uuid(row.id).to_string();
    let mut tx = gateway.pool.begin().await?;
    store::insert_provider(&mut tx, &row).await?;
    let actor = scope.actor();
    let detail = format!("name={:?} usage_model={model_name}", row.name);
    let audited = audit::Event::ok(row.id, "provider_created", &actor, &provider_id).detail(&detail);
    audit::record(&mut tx, audited, row.created_at).await?;
    let event = ProviderCreated {
        provider_id: provider_id.clone(),
        name: row.name.clone(),
        usage_model: model as i32,
    };
    gateway.outbox.enqueue(&mut tx, &provider_id, &event).await?;
    tx.commit().await?;
    gateway.outbox.notify();
    tracing::info!(%provider_id, usage_model = model_name, "provider created");
    Ok(convert::provider(&row))
}

pub async fn get(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::GetProviderRequest,
) -> Result<api::Provider, GatewayError> {
    Ok(convert::provider(&existing(gateway, scope, &req.provider_id).await?))
}

pub async fn list(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ListProvidersRequest,
) -> Result<api::ListProvidersResponse, GatewayError> {
    if req.page_size > MAX_PAGE_SIZE {
        return Err(GatewayError::InvalidArgument(format!(
            "page_size is at most {MAX_PAGE_SIZE}"
        )));
    }
    let size = if req.page_size == 0 { 50 } else { req.page_size };
    let after = if req.page_token.is_empty() {
        Uuid::nil()
    } else {
        parse_provider(&req.page_token)?.as_uuid()
    };
    let only = match scope {
        AdminScope::Operator => None,
        AdminScope::Provider { provider_id, .. } => Some(provider_id),
    };
    let mut conn = gateway.pool.acquire().await?;
    let mut rows = store::list_providers(&mut conn, after, only, i64::from(size) + 1).await?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    Ok(api::ListProvidersResponse {
        next_page_token: match rows.last() {
            Some(last) if more => ProviderId::from_uuid(last.id).to_string(),
            _ => String::new(),
        },
        providers: rows.iter().map(convert::provider).collect(),
    })
}

pub async fn update(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::UpdateProviderRequest,
) -> Result<api::Provider, GatewayError> {
    let current = existing(gateway, scope, &req.provider_id).await?;
    if let Some(model) = req.usage_model {
        let asked = usage_model_name(UsageModel::try_from(model).unwrap_or(UsageModel::Unspecified));
        if asked != Some(current.usage_model.as_str()) {
            return Err(GatewayError::FailedPrecondition(format!(
                "the usage model of a provider is fixed at creation ({}); create a new provider for another model",
                current.usage_model
            )));
        }
    }
    let name = req.name.as_deref().map(valid_name).transpose()?;
    let webhook = req.fraud_webhook_url.as_deref().map(valid_webhook).transpose()?;
    let networks = if req.set_trusted_networks {
        Some(valid_networks(&req.trusted_networks)?)
    } else {
        None
    };
    let change = store::ProviderUpdate {
        name,
        block_user_on_fraud: req.block_user_on_fraud,
        fraud_webhook_url: webhook.as_deref(),
        trusted_networks: networks.as_deref(),
        sms_cap_per_hour: valid_count(req.sms_cap_per_hour, "sms_cap_per_hour", 0..=MAX_CAP)?,
        voice_cap_per_hour: valid_count(req.voice_cap_per_hour, "voice_cap_per_hour", 0..=MAX_CAP)?,
        // E.164 numbers have at most 15 digits.
        cap_prefix_digits: valid_count(req.cap_prefix_digits, "cap_prefix_digits", 1..=15)?,
        sms_template: req.sms_template.as_deref().map(valid_sms_template).transpose()?,
        voice_template: req.voice_template.as_deref().map(valid_voice_template).transpose()?,
    };
    let mut tx = gateway.pool.begin().await?;
    let row = store::update_provider(&mut tx, current.id, &change)
        .await?
        .ok_or_else(|| GatewayError::NotFound("no such provider".into()))?;
    let actor = scope.actor();
    let target = ProviderId::from_uuid(row.id).to_string();
    let detail = provider_changes(&current, &row);
    let audited = audit::Event::ok(row.id, "provider_updated", &actor, &target).detail(&detail);
    audit::record(&mut tx, audited, gateway.clock.now()).await?;
    // Telephony renders messages with the provider's name and templates.
    let event = ProviderUpdated {
        provider_id: target.clone(),
        name: row.name.clone(),
        sms_template: row.sms_template.clone(),
        voice_template: row.voice_template.clone(),
        revision: row.revision,
    };
    gateway.outbox.enqueue(&mut tx, &target, &event).await?;
    tx.commit().await?;
    gateway.outbox.notify();
    // Every agent carries its provider's trusted networks and caps.
    gateway.agents.forget_all();
    Ok(convert::provider(&row))
}

/// What an update changed, for the audit log. The webhook URL is named, not
/// quoted: such URLs often carry a token in their path.
fn provider_changes(before: &store::ProviderRow, after: &store::ProviderRow) -> String {
    let mut changes = Vec::new();
    if before.name != after.name {
        changes.push(format!("name={:?}", after.name));
    }
    if before.block_user_on_fraud != after.block_user_on_fraud {
        changes.push(format!("block_user_on_fraud={}", after.block_user_on_fraud));
    }
    if before.fraud_webhook_url != after.fraud_webhook_url {
        changes.push(if after.fraud_webhook_url.is_empty() {
            "fraud_webhook_url removed".to_owned()
        } else {
            "fraud_webhook_url changed".to_owned()
        });
    }
    if before.trusted_networks != after.trusted_networks {
        changes.push(format!("trusted_networks={}", after.trusted_networks.join(",")));
    }
    if before.sms_template != after.sms_template {
        changes.push("sms_template changed".to_owned());
    }
    if before.voice_template != after.voice_template {
        changes.push("voice_template changed".to_owned());
    }
    if before.caps != after.caps {
        let caps = after.caps;
        changes.push(format!(
            "sms_cap_per_hour={} voice_cap_per_hour={} cap_prefix_digits={}",
            caps.sms_cap_per_hour, caps.voice_cap_per_hour, caps.cap_prefix_digits
        ));
    }
    if changes.is_empty() {
        "no change".to_owned()
    } else {
        changes.join(" ")
    }
}

pub async fn create_admin_token(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::CreateAdminTokenRequest,
) -> Result<api::CreateAdminTokenResponse, GatewayError> {
    scope.require_operator()?;
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let (token, hash) = crate::auth::new_admin_token(gateway);
    let id = Uuid::now_v7();
    let now = gateway.clock.now();
    let mut tx = gateway.pool.begin().await?;
    store::insert_admin_token(&mut tx, id, provider.id, &hash, req.description.trim(), now).await?;
    let actor = scope.actor();
    let target = format!("admin_token:{id}");
    let detail = format!("description={:?}", req.description.trim());
    let audited = audit::Event::ok(provider.id, "admin_token_created", &actor, &target).detail(&detail);
    audit::record(&mut tx, audited, now).await?;
    tx.commit().await?;
    Ok(api::CreateAdminTokenResponse {
        token_id: id.to_string(),
        token: secrecy::ExposeSecret::expose_secret(&token).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_normalised_and_bad_ones_refused() {
        let ok = valid_networks(&["10.1.2.3/8".into(), " 2001:db8::/32".into()]).unwrap_or_default();
        assert_eq!(ok, vec!["10.0.0.0/8".to_owned(), "2001:db8::/32".to_owned()]);
        assert!(valid_networks(&["10.0.0.0".into()]).is_err());
        assert!(valid_networks(&["banana/8".into()]).is_err());
        assert!(valid_webhook("ftp://x").is_err());
        assert!(valid_webhook("https://hooks.example.com/vigil").is_ok());
        assert!(valid_count(Some(0), "x", 1..=15).is_err());
        assert!(valid_count(Some(16), "x", 1..=15).is_err());
        assert_eq!(valid_count(Some(0), "x", 0..=MAX_CAP).ok(), Some(Some(0)));
        assert_eq!(valid_count(None, "x", 0..=MAX_CAP).ok(), Some(None));
    }

    #[test]
    fn templates_are_validated() {
        assert_eq!(
            valid_sms_template(" {provider}: your code is {code} ").ok(),
            Some("{provider}: your code is {code}")
        );
        assert_eq!(valid_sms_template("").ok(), Some(""), "back to the default");
        assert!(valid_sms_template("your code").is_err(), "no {{code}}");
        assert!(valid_sms_template("{code} {pin}").is_err(), "unknown placeholder");
        assert!(valid_sms_template("{code").is_err());
        assert!(
            valid_sms_template(&format!("{{code}}{}", "x".repeat(320))).is_err(),
            "too long"
        );
        assert!(valid_sms_template("{code}\n").is_ok(), "trimmed");
        assert!(valid_sms_template("{code}\u{7}x").is_err());
        assert!(valid_voice_template("{provider}: {username} is signing in.").is_ok());
        assert!(valid_voice_template("{code}").is_err(), "a call has no code");
    }
}
