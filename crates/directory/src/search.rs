//! Reading a directory's users for an import: a paged subtree search, so a
//! directory larger than the server's size limit (Active Directory's
//! MaxPageSize is 1000, OpenLDAP's default sizelimit 500) comes back whole.

use ldap3::{
    Scope, SearchEntry,
    adapters::{Adapter, EntriesOnly, PagedResults},
};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    DirectoryError, Server,
    connect::{bind, bounded, connect},
};

/// Entries per page: under Active Directory's default MaxPageSize (1000).
pub const PAGE_SIZE: i32 = 500;
/// More than this is refused rather than held in memory.
pub const MAX_ENTRIES: usize = 100_000;
/// Active Directory's users: people that are user accounts (not contacts,
/// not computers, whose objectClass also derives from user).
pub const AD_USER_FILTER: &str = "(&(objectCategory=person)(objectClass=user))";

/// Which attribute holds what. The defaults are Active Directory's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub username: String,
    pub display_name: String,
    /// The first of these an entry has is its phone.
    pub phone: Vec<String>,
    pub email: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            username: "sAMAccountName".into(),
            display_name: "displayName".into(),
            phone: vec!["mobile".into(), "telephoneNumber".into()],
            email: "mail".into(),
        }
    }
}

impl Mapping {
    fn attributes(&self) -> Vec<String> {
        [&self.username, &self.display_name, &self.email]
            .into_iter()
            .chain(&self.phone)
            .filter(|a| !a.is_empty())
            .cloned()
            .collect()
    }
}

/// What to read, and as whom. An empty bind DN is an anonymous search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub bind_dn: String,
    pub bind_password: SecretString,
    pub base_dn: String,
    pub filter: String,
    pub mapping: Mapping,
}

/// One directory entry, mapped. Values are the attribute's first value,
/// trimmed; "" when the entry lacks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    /// `None` when the entry has no username attribute: the caller reports
    /// it as rejected rather than dropping it silently.
    pub username: Option<String>,
    pub display_name: String,
    pub phone: String,
    pub email: String,
}

fn first(entry: &SearchEntry, attribute: &str) -> Option<String> {
    if attribute.is_empty() {
        return None;
    }
    // Attribute names are case-insensitive; servers answer in their own case.
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .and_then(|(_, values)| values.iter().map(|v| v.trim()).find(|v| !v.is_empty()))
        .map(str::to_owned)
}

fn mapped(entry: &SearchEntry, mapping: &Mapping) -> Entry {
    Entry {
        dn: entry.dn.clone(),
        username: first(entry, &mapping.username),
        display_name: first(entry, &mapping.display_name).unwrap_or_default(),
        phone: mapping.phone.iter().find_map(|a| first(entry, a)).unwrap_or_default(),
        email: first(entry, &mapping.email).unwrap_or_default(),
    }
}

/// Every entry under `base_dn` matching `filter`, page by page.
pub async fn search_users(server: &Server, query: &SearchQuery) -> Result<Vec<Entry>, DirectoryError> {
    if query.base_dn.trim().is_empty() {
        return Err(DirectoryError::InvalidSettings("the base DN must not be empty".into()));
    }
    if query.mapping.username.trim().is_empty() {
        return Err(DirectoryError::InvalidSettings(
            "the username attribute must not be empty".into(),
        ));
    }
    let filter = if query.filter.trim().is_empty() {
        AD_USER_FILTER
    } else {
        query.filter.trim()
    };
    let mut ldap = connect(server).await?;
    if !query.bind_dn.is_empty() {
        bind(server, &mut ldap, &query.bind_dn, query.bind_password.expose_secret()).await?;
    }
    let adapters: Vec<Box<dyn Adapter<_, _>>> =
        vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(PAGE_SIZE))];
    let mut stream = bounded(
        server,
        ldap.streaming_search_with(
            adapters,
            query.base_dn.trim(),
            Scope::Subtree,
            filter,
            query.mapping.attributes(),
        ),
    )
    .await?;
    let mut entries = Vec::new();
    while let Some(entry) = bounded(server, stream.next()).await? {
        if entries.len() == MAX_ENTRIES {
            return Err(DirectoryError::TooManyEntries(MAX_ENTRIES));
        }
        entries.push(mapped(&SearchEntry::construct(entry), &query.mapping));
    }
    let done = bounded(server, async { Ok(stream.finish().await) }).await?;
    if done.rc != 0 {
        return Err(DirectoryError::SearchFailed {
            code: done.rc,
            message: done.text,
        });
    }
    // Best effort: the server drops the connection with the handle anyway.
    let _ = ldap.unbind().await;
    tracing::info!(entries = entries.len(), base_dn = %query.base_dn, "directory searched");
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "cn=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn attributes_map_case_insensitively_with_phone_fallbacks() {
        let e = mapped(
            &entry(&[
                ("samaccountname", &["Ann"]),
                ("displayName", &[" Ann Example "]),
                ("telephoneNumber", &["+15551230002"]),
                ("mobile", &[" "]),
            ]),
            &Mapping::default(),
        );
        assert_eq!(e.username.as_deref(), Some("Ann"));
        assert_eq!(e.display_name, "Ann Example");
        assert_eq!(e.phone, "+15551230002", "a blank mobile falls back to telephoneNumber");
        assert_eq!(e.email, "");
        assert_eq!(mapped(&entry(&[]), &Mapping::default()).username, None);
    }

    #[test]
    fn empty_mappings_are_not_asked_for() {
        let mapping = Mapping {
            email: String::new(),
            ..Mapping::default()
        };
        assert_eq!(
            mapping.attributes(),
            vec!["sAMAccountName", "displayName", "mobile", "telephoneNumber"]
        );
    }
}
