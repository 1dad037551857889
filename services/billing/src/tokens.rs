//! Per-provider read-only API tokens: `vbt_<id>_<secret>`. The operator
//! creates them; billing keeps only the SHA-256 of the secret, and compares
//! digests in constant time.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use subtle::ConstantTimeEq;
use uuid::Uuid;

const PREFIX: &str = "vbt_";

/// A token as issued: the secret text is shown once, never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token_id: Uuid,
    pub token: String,
}

fn digest(secret: &[u8]) -> Vec<u8> {
    Sha256::digest(secret).to_vec()
}

/// Splits `vbt_<32 hex>_<64 hex>` into id and secret.
fn parse(token: &str) -> Option<(Uuid, Vec<u8>)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    if id.len() != 32 || secret.len() != 64 {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, hex::decode(secret).ok()?))
}

/// Issues a new token for `provider_id`.
pub async fn issue(
    pool: &PgPool,
    provider_id: &str,
    label: &str,
    now: DateTime<Utc>,
) -> Result<IssuedToken, sqlx::Error> {
    let token_id = Uuid::now_v7();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    sqlx::query(
        "INSERT INTO api_tokens (token_id, provider_id, secret_sha256, label, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_id)
    .bind(provider_id)
    .bind(digest(&secret))
    .bind(label)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(IssuedToken {
        token_id,
        token: format!("{PREFIX}{}_{}", token_id.simple(), hex::encode(secret)),
    })
}

/// The provider a presented token reads, if it is a live token.
pub async fn provider_of(pool: &PgPool, presented: &str) -> Result<Option<String>, sqlx::Error> {
    let Some((token_id, secret)) = parse(presented) else {
        return Ok(None);
    };
    let Some(row) =
        sqlx::query("SELECT provider_id, secret_sha256 FROM api_tokens WHERE token_id = $1 AND revoked_at IS NULL")
            .bind(token_id)
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };
    let stored: Vec<u8> = row.try_get("secret_sha256")?;
    let matches: bool = digest(&secret).ct_eq(&stored).into();
    matches.then(|| row.try_get("provider_id")).transpose()
}

/// Revokes a token of `provider_id`; `false` if there is no such live token.
pub async fn revoke(pool: &PgPool, provider_id: &str, token_id: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $3 WHERE token_id = $1 AND provider_id = $2 AND revoked_at IS NULL",
    )
    .bind(token_id)
    .bind(provider_id)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(revoked == 1)
}

/// Whether `presented` looks like a provider token at all.
pub fn looks_like_provider_token(presented: &str) -> bool {
    presented.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_well_formed_tokens() {
        let id = Uuid::now_v7();
        let good = format!("vbt_{}_{}", id.simple(), "ab".repeat(32));
        assert_eq!(parse(&good).map(|(i, s)| (i, s.len())), Some((id, 32)));
        for bad in [
            String::new(),
            "vbt_".into(),
            format!("vbt_{}", id.simple()),
            format!("vbt_{}_{}", id.simple(), "zz".repeat(32)),
            format!("xyz_{}_{}", id.simple(), "ab".repeat(32)),
            format!("vbt_{}_{}", id.simple(), "ab".repeat(31)),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
    }
}
