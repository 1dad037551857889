//! Checking a user's password by binding as the user: the directory, not
//! Vigil, knows passwords. Used by RADIUS password-and-code logins, whose
//! clients send the password and the code in one field.

use std::time::Duration;

use deadpool::managed;
use ldap3::{Ldap, Scope, SearchEntry, dn_escape, ldap_escape};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    DirectoryError, Server,
    connect::{bind, bounded, connect},
};

/// Placeholder for the username in a bind DN template.
pub const USERNAME: &str = "{username}";

/// How to find the DN to bind as.
#[derive(Debug, Clone)]
pub enum UserBind {
    /// A template with `{username}`: `uid={username},ou=people,dc=example,dc=org`,
    /// or Active Directory's `{username}@corp.example.com` / `CORP\{username}`.
    Template(String),
    /// Bind as a service account, find the entry whose `username_attribute`
    /// is the username under `base_dn`, then bind as that entry.
    Search {
        bind_dn: String,
        bind_password: SecretString,
        base_dn: String,
        username_attribute: String,
    },
}

/// The directory's verdict on a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Accepted,
    /// Wrong password, or (search form) no such user: callers must not tell
    /// the two apart to the person logging in.
    Refused,
}

/// `template` with the username in place; DN templates get it DN-escaped so
/// a username cannot add a component of its own.
pub fn bind_dn(template: &str, username: &str) -> Result<String, DirectoryError> {
    if !template.contains(USERNAME) {
        return Err(DirectoryError::InvalidSettings(format!(
            "the bind DN template must contain {USERNAME}"
        )));
    }
    let value = if template.contains('=') {
        dn_escape(username).into_owned()
    } else {
        username.to_owned()
    };
    Ok(template.replace(USERNAME, &value))
}

fn invalid_credentials(e: &DirectoryError) -> bool {
    matches!(e, DirectoryError::BindRefused { code: 49, .. })
}

/// How long a connection may sit idle in the pool and still be used: servers
/// drop idle connections (Active Directory after 15 minutes), and one that
/// was dropped unseen would fail the login that drew it.
const MAX_IDLE: Duration = Duration::from_secs(30);

/// Connections open at once per directory; a check waits (at most the
/// server's timeout) for one beyond that.
const MAX_CONNECTIONS: usize = 32;

/// Opens the pool's connections and turns away the ones not worth reusing.
struct Connector {
    server: Server,
}

impl managed::Manager for Connector {
    type Type = Ldap;
    type Error = DirectoryError;

    async fn create(&self) -> Result<Ldap, DirectoryError> {
        connect(&self.server).await
    }

    async fn recycle(&self, ldap: &mut Ldap, metrics: &managed::Metrics) -> managed::RecycleResult<DirectoryError> {
        if ldap.is_closed() || metrics.last_used() > MAX_IDLE {
            return Err(managed::RecycleError::message("closed, or idle too long"));
        }
        Ok(())
    }
}

/// A provider's directory, as used for password checks: its settings and
/// connections kept open between checks, so a login does not pay a TCP
/// connect (and for ldaps:// a TLS handshake), round trips included, before
/// its bind. A bind on a kept connection replaces whatever identity it had,
/// and each check holds its connection alone, so one login's bind never
/// serves another.
pub struct Directory {
    server: Server,
    how: UserBind,
    pool: managed::Pool<Connector>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.server.url)
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub fn new(server: Server, how: UserBind) -> Result<Self, DirectoryError> {
        let connector = Connector { server: server.clone() };
        let pool = managed::Pool::builder(connector)
            .max_size(MAX_CONNECTIONS)
            .build()
            // Fails only for timeouts set without a runtime, and none is set.
            .map_err(|e| DirectoryError::InvalidSettings(format!("connection pool: {e}")))?;
        Ok(Self { server, how, pool })
    }

    /// Whether `password` is `username`'s. An empty password is refused
    /// without asking: LDAP would take it for an unauthenticated bind and say yes.
    pub async fn check_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<PasswordCheck, DirectoryError> {
        if password.expose_secret().is_empty() || username.trim().is_empty() {
            return Ok(PasswordCheck::Refused);
        }
        let mut ldap = self.connection().await?;
        let reused = managed::Object::metrics(&ldap).recycle_count > 0;
        match check_on(&self.server, &self.how, &mut ldap, username, password).await {
            Ok(verdict) => Ok(verdict),
            Err(e) => {
                // An operation failed or timed out on it: it may still have
                // one outstanding, so it is never handed out again.
                drop(managed::Object::take(ldap));
                if reused && matches!(e, DirectoryError::Unreachable { .. }) {
                    // Closed by the server while idle, unseen until now: once
                    // more on a new connection rather than fail the login.
                    let mut fresh = connect(&self.server).await?;
                    return check_on(&self.server, &self.how, &mut fresh, username, password).await;
                }
                Err(e)
            }
        }
    }

    async fn connection(&self) -> Result<managed::Object<Connector>, DirectoryError> {
        match tokio::time::timeout(self.server.timeout, self.pool.get()).await {
            Ok(Ok(ldap)) => Ok(ldap),
            Ok(Err(managed::PoolError::Backend(e))) => Err(e),
            Ok(Err(e)) => Err(DirectoryError::Unreachable {
                url: self.server.url.clone(),
                reason: e.to_string(),
            }),
            Err(_) => Err(DirectoryError::Timeout(self.server.timeout)),
        }
    }
}

/// One password check on a connection held alone.
async fn check_on(
    server: &Server,
    how: &UserBind,
    ldap: &mut Ldap,
    username: &str,
    password: &SecretString,
) -> Result<PasswordCheck, DirectoryError> {
    let dn = match how {
        UserBind::Template(template) => bind_dn(template, username)?,
        UserBind::Search {
            bind_dn,
            bind_password,
            base_dn,
            username_attribute,
        } => {
            bind(server, ldap, bind_dn, bind_password.expose_secret()).await?;
            let filter = format!("({username_attribute}={})", ldap_escape(username));
            let found = bounded(server, ldap.search(base_dn, Scope::Subtree, &filter, vec!["1.1"])).await?;
            let (entries, result) = (found.0, found.1);
            if result.rc != 0 {
                return Err(DirectoryError::SearchFailed {
                    code: result.rc,
                    message: result.text,
                });
            }
            match entries.as_slice() {
                [] => return Ok(PasswordCheck::Refused),
                [entry] => SearchEntry::construct(entry.clone()).dn,
                _ => {
                    return Err(DirectoryError::SearchFailed {
                        code: 0,
                        message: format!("{} entries have {username_attribute}={username}", entries.len()),
                    });
                }
            }
        }
    };
    match bind(server, ldap, &dn, password.expose_secret()).await {
        Ok(()) => Ok(PasswordCheck::Accepted),
        Err(e) if invalid_credentials(&e) => Ok(PasswordCheck::Refused),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_escaped_into_dns_only() {
        assert_eq!(
            bind_dn("uid={username},ou=people,dc=example,dc=org", "ann").ok(),
            Some("uid=ann,ou=people,dc=example,dc=org".into())
        );
        assert_eq!(
            bind_dn("uid={username},dc=example,dc=org", "x,ou=admins").ok(),
            Some("uid=x\\2cou\\3dadmins,dc=example,dc=org".into())
        );
        assert_eq!(
            bind_dn("{username}@corp.example.com", "ann").ok(),
            Some("ann@corp.example.com".into())
        );
        assert!(bind_dn("cn=fixed,dc=example,dc=org", "ann").is_err());
    }
}
