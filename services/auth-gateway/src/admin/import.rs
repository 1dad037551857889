//! Importing users, from a CSV file or from LDAP / Active Directory. Both
//! turn their source into rows for the challenge service, which creates or
//! updates each one idempotently, and both return the same per-row report.

use std::{collections::HashMap, time::Duration};

use secrecy::SecretString;
use vigil_bus::subjects;
use vigil_directory::{DirectoryError, Mapping, SearchQuery, Server};
use vigil_proto::{rpc, v1 as api};

use super::users::{ask_within, provider_text};
use crate::{app::Gateway, audit, auth::AdminScope, error::GatewayError};

/// The largest CSV accepted in one import.
const MAX_CSV_BYTES: usize = 4 * 1024 * 1024;
/// Rows per request to the challenge service (each row is a transaction there).
const BATCH: usize = 500;
/// How long a batch may take; far above the login deadline, since nobody waits at a login prompt.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for any one answer of a directory.
const DIRECTORY_TIMEOUT: Duration = Duration::from_secs(15);

fn rejected(line: u32, username: &str, reason: String) -> api::ImportRowResult {
    api::ImportRowResult {
        line,
        username: username.to_owned(),
        outcome: "rejected".into(),
        reason,
    }
}

/// Parses the CSV: a header naming the columns (any order; `username`
/// required), then one user per line. Lines that do not parse are reported
/// as rejected and the rest still go through.
fn parse_csv(csv_text: &str) -> Result<(Vec<rpc::ImportRow>, Vec<api::ImportRowResult>), GatewayError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(csv_text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| GatewayError::InvalidArgument(format!("csv header: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect::<Vec<_>>();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let username = column("username").ok_or_else(|| {
        GatewayError::InvalidArgument(
            "csv header must name a username column (username,display_name,phone,email,default_method)".into(),
        )
    })?;
    let (display, phone, email, method) = (
        column("display_name"),
        column("phone"),
        column("email"),
        column("default_method"),
    );
    // Columns the file lacks are left alone on existing users.
    let absent: Vec<String> = [
        ("display_name", display),
        ("phone", phone),
        ("email", email),
        ("default_method", method),
    ]
    .into_iter()
    .filter(|(_, column)| column.is_none())
    .map(|(name, _)| name.to_owned())
    .collect();
    let mut rows = Vec::new();
    let mut refused = Vec::new();
    for (index, record) in reader.records().enumerate() {
        // Line 1 is the header.
        let line = u32::try_from(index + 2).unwrap_or(u32::MAX);
        match record {
            Ok(r) => {
                let field = |i: Option<usize>| i.and_then(|i| r.get(i)).unwrap_or("").to_owned();
                rows.push(rpc::ImportRow {
                    line,
                    username: field(Some(username)),
                    display_name: field(display),
                    phone: field(phone),
                    email: field(email),
                    default_method: field(method),
                    absent: absent.clone(),
                });
            }
            Err(e) => refused.push(rejected(line, "", format!("not valid CSV: {e}"))),
        }
    }
    Ok((rows, refused))
}

/// Sends `rows` in batches, merges the answers with the rows refused before
/// sending, audits the import, and counts the outcomes.
async fn run(
    gateway: &Gateway,
    scope: AdminScope,
    provider_id: &str,
    rows: Vec<rpc::ImportRow>,
    mut results: Vec<api::ImportRowResult>,
    source: &str,
) -> Result<api::ImportUsersResponse, GatewayError> {
    for batch in rows.chunks(BATCH) {
        let reply: rpc::ImportUsersReply = ask_within(
            gateway,
            subjects::RPC_CHALLENGE_IMPORT_USERS,
            &rpc::ImportUsersRequest {
                provider_id: provider_id.to_owned(),
                rows: batch.to_vec(),
                actor: scope.actor(),
            },
            gateway.rpc_timeout.max(BATCH_TIMEOUT),
        )
        .await?;
        results.extend(reply.results.into_iter().map(|r| {
            api::ImportRowResult {
                line: r.line,
                username: r.username,
                outcome: match rpc::ImportOutcome::try_from(r.outcome).unwrap_or_default() {
                    rpc::ImportOutcome::Created => "created",
                    rpc::ImportOutcome::Updated => "updated",
                    rpc::ImportOutcome::Unchanged => "unchanged",
                    _ => "rejected",
                }
                .into(),
                reason: r.reason,
            }
        }));
    }
    results.sort_by_key(|r| r.line);
    let count = |o: &str| u32::try_from(results.iter().filter(|r| r.outcome == o).count()).unwrap_or(u32::MAX);
    let report = api::ImportUsersResponse {
        created: count("created"),
        updated: count("updated"),
        unchanged: count("unchanged"),
        rejected: count("rejected"),
        rows: results,
    };
    let detail = format!(
        "{source} created={} updated={} unchanged={} rejected={}",
        report.created, report.updated, report.unchanged, report.rejected
    );
    let provider = vigil_core::ProviderId::parse(provider_id)
        .map_err(|e| GatewayError::InvalidArgument(e.to_string()))?
        .as_uuid();
    let actor = scope.actor();
    let mut conn = gateway.pool.acquire().await?;
    audit::record(
        &mut conn,
        audit::Event::ok(provider, "users_imported", &actor, "").detail(&detail),
        gateway.clock.now(),
    )
    .await?;
    Ok(report)
}

pub async fn csv(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ImportUsersRequest,
) -> Result<api::ImportUsersResponse, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    if req.csv.len() > MAX_CSV_BYTES {
        return Err(GatewayError::InvalidArgument(format!(
            "csv is larger than {MAX_CSV_BYTES} bytes; split it"
        )));
    }
    let (rows, refused) = parse_csv(&req.csv)?;
    run(gateway, scope, &provider_id, rows, refused, "source=csv").await
}

/// A directory's phone number as E.164: directories hold "+1 (555) 123-4567".
/// Numbers without a country code are left for the challenge service to refuse.
fn phone(text: &str) -> String {
    let text = text.trim();
    if text.starts_with('+') {
        text.chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '/'))
            .collect()
    } else {
        text.to_owned()
    }
}

fn mapping(attributes: Option<api::LdapAttributes>) -> Mapping {
    let defaults = Mapping::default();
    let Some(a) = attributes else {
        return defaults;
    };
    let or = |asked: String, default: String| {
        let asked = asked.trim().to_owned();
        if asked.is_empty() { default } else { asked }
    };
    let phone: Vec<String> = a
        .phone
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    Mapping {
        username: or(a.username, defaults.username),
        display_name: or(a.display_name, defaults.display_name),
        phone: if phone.is_empty() { defaults.phone } else { phone },
        email: or(a.email, defaults.email),
    }
}

pub fn directory_error(e: DirectoryError) -> GatewayError {
    let message = format!("{}: {e}", e.code());
    match e {
        DirectoryError::InvalidSettings(_) => GatewayError::InvalidArgument(message),
        DirectoryError::BindRefused { .. }
        | DirectoryError::SearchFailed { .. }
        | DirectoryError::TooManyEntries(_) => GatewayError::FailedPrecondition(message),
        DirectoryError::Unreachable { .. } | DirectoryError::Timeout(_) => GatewayError::Unavailable(message),
    }
}

/// Directory entries as import rows, numbered in DN order. Entries without a
/// username, and a username that two entries share, are refused here.
fn ldap_rows(
    mut entries: Vec<vigil_directory::Entry>,
    mapping: &Mapping,
) -> (Vec<rpc::ImportRow>, Vec<api::ImportRowResult>) {
    entries.sort_by(|a, b| a.dn.cmp(&b.dn));
    let mut rows = Vec::new();
    let mut refused = Vec::new();
    let mut first_dn: HashMap<String, String> = HashMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let Some(username) = entry.username else {
            refused.push(rejected(
                line,
                "",
                format!("{}: the entry has no {} attribute", entry.dn, mapping.username),
            ));
            continue;
        };
        if let Some(other) = first_dn.insert(username.to_lowercase(), entry.dn.clone()) {
            refused.push(rejected(
                line,
                &username,
                format!("{}: username {username:?} is also that of {other}", entry.dn),
            ));
            continue;
        }
        rows.push(rpc::ImportRow {
            line,
            username,
            display_name: entry.display_name,
            phone: phone(&entry.phone),
            email: entry.email,
            default_method: String::new(),
            // A directory has no default method: the one set in Vigil stays.
            absent: vec!["default_method".into()],
        });
    }
    (rows, refused)
}

pub async fn ldap(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ImportLdapRequest,
) -> Result<api::ImportUsersResponse, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    let mapping = mapping(req.attributes);
    let query = SearchQuery {
        bind_dn: req.bind_dn.trim().to_owned(),
        bind_password: SecretString::from(req.bind_password),
        base_dn: req.base_dn.trim().to_owned(),
        filter: req.filter,
        mapping: mapping.clone(),
    };
    let server = Server::new(req.url.trim(), DIRECTORY_TIMEOUT);
    let entries = vigil_directory::search_users(&server, &query)
        .await
        .map_err(directory_error)?;
    let (rows, refused) = ldap_rows(entries, &mapping);
    let source = format!(
        "source=ldap url={} base_dn={:?} entries={}",
        server.url,
        query.base_dn,
        rows.len() + refused.len()
    );
    run(gateway, scope, &provider_id, rows, refused, &source).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_in_any_order_and_bad_lines_reported() {
        let (rows, rejected) =
            parse_csv("Email,username,phone\nann@example.com,Ann,+15551234567\n\"broken,bob\n").unwrap_or_default();
        // The csv crate is lenient with an unclosed quote: the line is either
        // a row (rejected later if its fields are bad) or reported, never lost.
        assert_eq!(rows.len() + rejected.len(), 2);
        assert_eq!(rows[0].username, "Ann");
        assert_eq!(rows[0].email, "ann@example.com");
        assert_eq!(rows[0].line, 2);
        assert_eq!(
            rows[0].absent,
            vec!["display_name".to_owned(), "default_method".to_owned()]
        );
        assert!(parse_csv("name,phone\nann,+1555\n").is_err());
    }

    #[test]
    fn directory_phones_are_normalised_and_mappings_default_to_ad() {
        assert_eq!(phone(" +1 (555) 123-4567 "), "+15551234567");
        assert_eq!(phone("+49 30/1234.567"), "+49301234567");
        assert_eq!(phone("555-1234"), "555-1234");
        assert_eq!(mapping(None), Mapping::default());
        let uid = mapping(Some(api::LdapAttributes {
            username: " uid ".into(),
            phone: vec![" ".into()],
            ..Default::default()
        }));
        assert_eq!(uid.username, "uid");
        assert_eq!(uid.phone, Mapping::default().phone);
        assert_eq!(uid.email, "mail");
    }

    #[test]
    fn entries_without_or_sharing_a_username_are_refused() {
        let entry = |dn: &str, username: Option<&str>| vigil_directory::Entry {
            dn: dn.into(),
            username: username.map(str::to_owned),
            display_name: String::new(),
            phone: String::new(),
            email: String::new(),
        };
        let (rows, refused) = ldap_rows(
            vec![
                entry("cn=c", Some("Ann")),
                entry("cn=a", Some("ann")),
                entry("cn=b", None),
            ],
            &Mapping::default(),
        );
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].line, rows[0].username.as_str()), (1, "ann"));
        assert_eq!(rows[0].absent, vec!["default_method".to_owned()]);
        let reasons: Vec<_> = refused.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(
            reasons,
            vec![
                (2, "cn=b: the entry has no sAMAccountName attribute"),
                (3, "cn=c: username \"Ann\" is also that of cn=a"),
            ]
        );
    }
}
