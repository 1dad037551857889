//! A provider's directory (LDAP / Active Directory), where the passwords of
//! RADIUS password-and-code logins are checked by binding as the user.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_directory::{Directory, PasswordCheck, Server, UserBind};
use vigil_secrets::Aad;

use crate::{app::Gateway, error::GatewayError, recent::Recent};

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

/// How long a provider's directory settings are used before they are read
/// again. The admin API forgets them at once on the replica that changed
/// them; other replicas see the change within this.
const SETTINGS_FRESH_FOR: Duration = Duration::from_secs(5);

/// The providers' directories as last read, each with its open connections:
/// while they are fresh a password check reads no settings from the
/// database, and it binds on an idle open connection when there is one.
/// `None`: the provider has no directory.
#[derive(Debug)]
pub struct Directories(Recent<Option<Arc<Configured>>>);

impl Default for Directories {
    fn default() -> Self {
        Self(Recent::new(SETTINGS_FRESH_FOR))
    }
}

#[derive(Debug)]
struct Configured {
    updated_at: DateTime<Utc>,
    directory: Directory,
}

impl Directories {
    /// The directory read before, if its settings are still `updated_at`'s:
    /// reused with its connections.
    fn unchanged(&self, provider_id: Uuid, updated_at: DateTime<Utc>) -> Option<Arc<Configured>> {
        self.0
            .any_age(provider_id)
            .flatten()
            .filter(|configured| configured.updated_at == updated_at)
    }

    /// Drops what is known of a provider's directory (and closes its kept
    /// connections once no check holds them): its settings just changed.
    pub fn forget(&self, provider_id: Uuid) {
        self.0.forget(provider_id);
    }
}

/// The provider's directory: from memory while fresh, else read (and
/// remembered); `Err` is the verdict when it cannot be known.
async fn directory_of(gateway: &Gateway, provider_id: Uuid) -> Result<Option<Arc<Configured>>, Verdict> {
    if let Some(known) = gateway.directories.0.fresh(provider_id) {
        return Ok(known);
    }
    let row = match gateway.pool.acquire().await {
        Ok(mut conn) => get(&mut conn, provider_id).await,
        Err(e) => Err(e),
    };
    let settings = match row {
        Ok(None) => None,
        Ok(Some(row)) => match gateway.directories.unchanged(provider_id, row.updated_at) {
            Some(same) => Some(same),
            None => Some(Arc::new(configure(gateway, row)?)),
        },
        Err(e) => {
            tracing::error!(error = %e, "reading the provider's directory failed");
            return Err(Verdict::Unavailable(
                "Vigil could not read the directory settings".into(),
            ));
        }
    };
    gateway.directories.0.remember(provider_id, settings.clone());
    Ok(settings)
}

fn configure(gateway: &Gateway, row: DirectoryRow) -> Result<Configured, Verdict> {
    let how = if row.bind_dn_template.is_empty() {
        let secret = match row.search_password_ciphertext.as_deref().map(|c| {
            gateway
                .keyring
                .decrypt(c, &password_aad(row.provider_id))
                .map_err(|e| GatewayError::Secret(e.to_string()))
        }) {
            Some(Ok(secret)) => String::from_utf8_lossy(secret.expose_secret()).into_owned(),
            Some(Err(e)) => {
                tracing::error!(error = %e, "decrypting the directory password failed");
                return Err(Verdict::Unavailable(
                    "Vigil could not use the directory settings".into(),
                ));
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
    let directory = Directory::new(Server::new(row.url, TIMEOUT), how).map_err(|e| {
        tracing::error!(code = e.code(), error = %e, "the directory cannot be set up");
        Verdict::Unavailable(format!("{}: {e}", e.code()))
    })?;
    Ok(Configured {
        updated_at: row.updated_at,
        directory,
    })
}

/// Checks `username`'s `password` against the provider's directory.
pub async fn check(gateway: &Gateway, provider_id: Uuid, username: &str, password: SecretString) -> Verdict {
    let configured = match directory_of(gateway, provider_id).await {
        Ok(Some(configured)) => configured,
        Ok(None) => return Verdict::NotConfigured,
        Err(verdict) => return verdict,
    };
    match configured.directory.check_password(username, &password).await {
        Ok(PasswordCheck::Accepted) => Verdict::Accepted,
        Ok(PasswordCheck::Refused) => Verdict::Refused,
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "directory password check failed");
            Verdict::Unavailable(format!("{}: {e}", e.code()))
        }
    }
}
