//! Checking a user's password by binding as the user: the directory, not
//! Vigil, knows passwords. Used by RADIUS password-and-code logins, whose
//! clients send the password and the code in one field.

use ldap3::{Scope, SearchEntry, dn_escape, ldap_escape};
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

/// Whether `password` is `username`'s. An empty password is refused without
/// asking: LDAP would take it for an unauthenticated bind and say yes.
pub async fn check_password(
    server: &Server,
    how: &UserBind,
    username: &str,
    password: &SecretString,
) -> Result<PasswordCheck, DirectoryError> {
    if password.expose_secret().is_empty() || username.trim().is_empty() {
        return Ok(PasswordCheck::Refused);
    }
    let mut ldap = connect(server).await?;
    let dn = match how {
        UserBind::Template(template) => bind_dn(template, username)?,
        UserBind::Search {
            bind_dn,
            bind_password,
            base_dn,
            username_attribute,
        } => {
            bind(server, &mut ldap, bind_dn, bind_password.expose_secret()).await?;
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
    let verdict = match bind(server, &mut ldap, &dn, password.expose_secret()).await {
        Ok(()) => PasswordCheck::Accepted,
        Err(e) if invalid_credentials(&e) => PasswordCheck::Refused,
        Err(e) => return Err(e),
    };
    let _ = ldap.unbind().await;
    Ok(verdict)
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
