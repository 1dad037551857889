//! `SetDirectory` / `GetDirectory`: the directory a provider's passwords are
//! checked against. The service account's password is write-only.

use std::time::SystemTime;

use vigil_core::ProviderId;
use vigil_proto::v1 as api;

use super::providers::existing;
use crate::{
    app::Gateway,
    audit,
    auth::AdminScope,
    directory::{self, DirectoryRow, password_aad},
    error::GatewayError,
};

fn to_api(provider_id: uuid::Uuid, row: Option<&DirectoryRow>) -> api::Directory {
    let Some(row) = row else {
        return api::Directory {
            provider_id: ProviderId::from_uuid(provider_id).to_string(),
            ..Default::default()
        };
    };
    api::Directory {
        provider_id: ProviderId::from_uuid(provider_id).to_string(),
        configured: true,
        url: row.url.clone(),
        bind_dn_template: row.bind_dn_template.clone(),
        search_bind_dn: row.search_bind_dn.clone(),
        search_base_dn: row.search_base_dn.clone(),
        username_attribute: row.username_attribute.clone(),
        updated_at: Some(vigil_proto::to_timestamp(SystemTime::from(row.updated_at))),
    }
}

fn invalid(message: &str) -> GatewayError {
    GatewayError::InvalidArgument(message.into())
}

pub async fn get(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::GetDirectoryRequest,
) -> Result<api::Directory, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let mut conn = gateway.pool.acquire().await?;
    Ok(to_api(
        provider.id,
        directory::get(&mut conn, provider.id).await?.as_ref(),
    ))
}

pub async fn set(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::SetDirectoryRequest,
) -> Result<api::Directory, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let now = gateway.clock.now();
    let (actor, target) = (scope.actor(), ProviderId::from_uuid(provider.id).to_string());
    let url = req.url.trim();
    let mut tx = gateway.pool.begin().await?;
    if url.is_empty() {
        directory::remove(&mut tx, provider.id).await?;
        let event = audit::Event::ok(provider.id, "directory_removed", &actor, &target);
        audit::record(&mut tx, event, now).await?;
        tx.commit().await?;
        gateway.directories.forget(provider.id);
        return Ok(to_api(provider.id, None));
    }
    if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
        return Err(invalid("url must start with ldap:// or ldaps://"));
    }
    let template = req.bind_dn_template.trim();
    let search_dn = req.search_bind_dn.trim();
    let ciphertext = match (template.is_empty(), search_dn.is_empty()) {
        (false, true) => {
            vigil_directory::bind_dn(template, "x").map_err(|e| GatewayError::InvalidArgument(e.to_string()))?;
            None
        }
        (true, false) => {
            if req.search_bind_password.is_empty() || req.search_base_dn.trim().is_empty() {
                return Err(invalid(
                    "a search needs search_bind_password and search_base_dn as well",
                ));
            }
            let sealed = gateway
                .keyring
                .encrypt(
                    &mut rand::rng(),
                    req.search_bind_password.as_bytes(),
                    &password_aad(provider.id),
                )
                .map_err(|e| GatewayError::Secret(e.to_string()))?;
            Some(sealed)
        }
        _ => {
            return Err(invalid(
                "set either bind_dn_template (with {username}) or search_bind_dn, not both",
            ));
        }
    };
    let attribute = req.username_attribute.trim();
    let row = DirectoryRow {
        provider_id: provider.id,
        url: url.to_owned(),
        bind_dn_template: template.to_owned(),
        search_bind_dn: search_dn.to_owned(),
        search_password_ciphertext: ciphertext,
        search_base_dn: if search_dn.is_empty() {
            String::new()
        } else {
            req.search_base_dn.trim().to_owned()
        },
        username_attribute: if attribute.is_empty() {
            "sAMAccountName".into()
        } else {
            attribute.to_owned()
        },
        updated_at: now,
    };
    directory::put(&mut tx, &row).await?;
    let detail = if template.is_empty() {
        format!(
            "url={url} search_bind_dn={search_dn:?} search_base_dn={:?} username_attribute={}",
            row.search_base_dn, row.username_attribute
        )
    } else {
        format!("url={url} bind_dn_template={template:?}")
    };
    let event = audit::Event::ok(provider.id, "directory_updated", &actor, &target).detail(&detail);
    audit::record(&mut tx, event, now).await?;
    tx.commit().await?;
    gateway.directories.forget(provider.id);
    Ok(to_api(provider.id, Some(&row)))
}
