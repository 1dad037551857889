//! A provider's directory (LDAP / Active Directory), where the passwords of
//! RADIUS password-and-code logins are checked by binding as the user.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_directory::{PasswordCheck, Server, UserBind};
use vigil_secrets::Aad;

use crate::{app::Gateway, error::GatewayError};

/// How long a login waits for any one answer of the directory.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DirectoryRow {
    pub provider_id: Uuid,
    pub url: String,
    pub bind_dn_template: String,
    pub search_bind_dn: String,
    pub search_password_ciphertext: Option<Vec<u8>>,
    pub search_base_dn: String,
    pub username_attribute: String,
    pub updated_at: DateTime<Utc>,
}

pub fn password_aad(provider_id: Uuid) -> Aad {
    Aad::new("directory_bind_password").with("provider", provider_id.to_string())
}

pub async fn get(conn: &mut PgConnection, provider_id: Uuid) -> Result<Option<DirectoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT provider_id, url, bind_dn_template, search_bind_dn, search_password_ciphertext, search_base_dn,
                username_attribute, updated_at
         FROM provider_directories WHERE provider_id = $1",
    )
    .bind(provider_id)
    .fetch_optional(conn)
    .await
}

pub async fn put(conn: &mut PgConnection, row: &DirectoryRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO provider_directories (provider_id, url, bind_dn_template, search_bind_dn,
             search_password_ciphertext, search_base_dn, username_attribute, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (provider_id) DO UPDATE SET url = $2, bind_dn_template = $3, search_bind_dn = $4,
             search_password_ciphertext = $5, search_base_dn = $6, username_attribute = $7, updated_at = $8",
    )
    .bind(row.provider_id)
    .bind(&row.url)
    .bind(&row.bind_dn_template)
    .bind(&row.search_bind_dn)
    .bind(&row.search_password_ciphertext)
    .bind(&row.search_base_dn)
    .bind(&row.username_attribute)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remove(conn: &mut PgConnection, provider_id: Uuid) -> Result<bool, sqlx::Error> {
    let removed = sqlx::query("DELETE FROM provider_directories WHERE provider_id = $1")
        .bind(provider_id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(removed == 1)
}

/// The directory's answer for a login, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Refused,
    NotConfigured,
    /// The directory could not answer (unreachable, refused the service bind, ...).
    Unavailable(String),
}

/// Checks `username`'s `password` against the provider's directory.
pub async fn check(gateway: &Gateway, provider_id: Uuid, username: &str, password: SecretString) -> Verdict {
    let row = match gateway.pool.acquire().await {
        Ok(mut conn) => get(&mut conn, provider_id).await,
        Err(e) => Err(e),
    };
    let row = match row {
        Ok(Some(row)) => row,
        Ok(None) => return Verdict::NotConfigured,
        Err(e) => {
            tracing::error!(error = %e, "reading the provider's directory failed");
            return Verdict::Unavailable("Vigil could not read the directory settings".into());
        }
    };
    let how = if row.bind_dn_template.is_empty() {
        let secret = match row.search_password_ciphertext.as_deref().map(|c| {
            gateway
                .keyring
                .decrypt(c, &password_aad(provider_id))
                .map_err(|e| GatewayError::Secret(e.to_string()))
        }) {
            Some(Ok(secret)) => String::from_utf8_lossy(secret.expose_secret()).into_owned(),
            Some(Err(e)) => {
                tracing::error!(error = %e, "decrypting the directory password failed");
                return Verdict::Unavailable("Vigil could not use the directory settings".into());
            }
            None => String::new(),
        };
        UserBind::Search {
            bind_dn: row.search_bind_dn,
            bind_password: SecretString::from(secret),
            base_dn: row.search_base_dn,
            username_attribute: row.username_attribute,
        }
    } else {
        UserBind::Template(row.bind_dn_template)
    };
    let server = Server::new(row.url, TIMEOUT);
    match vigil_directory::check_password(&server, &how, username, &password).await {
        Ok(PasswordCheck::Accepted) => Verdict::Accepted,
        Ok(PasswordCheck::Refused) => Verdict::Refused,
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "directory password check failed");
            Verdict::Unavailable(format!("{}: {e}", e.code()))
        }
    }
}
