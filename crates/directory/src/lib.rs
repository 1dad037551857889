//! LDAP and Active Directory for Vigil, over the `ldap3` crate: a paged
//! search that reads a provider's users for an import, and (for RADIUS
//! password-and-code logins) a password check by binding as the user.
//!
//! Every wait is bounded by [`Server::timeout`], and every failure is a
//! [`DirectoryError`] with a stable code, so an operator sees "the directory
//! refused the bind as cn=reader,...: invalidCredentials (49)" instead of a
//! transport error.

mod connect;
mod error;
mod password;
mod search;

use std::time::Duration;

pub use error::DirectoryError;
pub use password::{Directory, PasswordCheck, USERNAME, UserBind, bind_dn};
pub use search::{AD_USER_FILTER, Entry, MAX_ENTRIES, Mapping, PAGE_SIZE, SearchQuery, search_users};

/// Where a directory is, and how long to wait for any one answer from it.
#[derive(Debug, Clone)]
pub struct Server {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    pub timeout: Duration,
}

impl Server {
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        Self {
            url: url.into(),
            timeout,
        }
    }
}
