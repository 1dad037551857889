//! Opening a connection and binding, each bounded by the server's timeout.

use std::future::Future;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};

use crate::{DirectoryError, Server};

/// Runs one directory operation within the server's timeout.
pub(crate) async fn bounded<T>(
    server: &Server,
    op: impl Future<Output = Result<T, LdapError>>,
) -> Result<T, DirectoryError> {
    match tokio::time::timeout(server.timeout, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(unreachable(server, e)),
        Err(_) => Err(DirectoryError::Timeout(server.timeout)),
    }
}

pub(crate) fn unreachable(server: &Server, e: LdapError) -> DirectoryError {
    match e {
        LdapError::FilterParsing => DirectoryError::InvalidSettings("the LDAP filter does not parse".into()),
        other => DirectoryError::Unreachable {
            url: server.url.clone(),
            reason: other.to_string(),
        },
    }
}

/// A connection to `server`; the connection task ends when the handle is dropped.
pub(crate) async fn connect(server: &Server) -> Result<Ldap, DirectoryError> {
    let scheme = server.url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("ldap" | "ldaps")) {
        return Err(DirectoryError::InvalidSettings(format!(
            "directory URL {:?} must start with ldap:// or ldaps://",
            server.url
        )));
    }
    let settings = LdapConnSettings::new().set_conn_timeout(server.timeout);
    let (conn, ldap) = bounded(server, LdapConnAsync::with_settings(settings, &server.url)).await?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// A simple bind. An empty password is refused here: LDAP treats a DN with
/// an empty password as an unauthenticated bind, which "succeeds".
pub(crate) async fn bind(server: &Server, ldap: &mut Ldap, dn: &str, password: &str) -> Result<(), DirectoryError> {
    if password.is_empty() {
        return Err(DirectoryError::InvalidSettings(format!(
            "binding as {dn:?} needs a password"
        )));
    }
    let result = bounded(server, ldap.simple_bind(dn, password)).await?;
    if result.rc == 0 {
        Ok(())
    } else {
        Err(DirectoryError::BindRefused {
            dn: dn.to_owned(),
            code: result.rc,
            message: result.text,
        })
    }
}
