//! `vigil admin audit`: who changed what, and every login decision.

use chrono::{DateTime, Duration, Utc};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use vigil_proto::v1::{AuditEntry, AuditKind, ListAuditRequest};

use crate::{
    Global,
    gateway::{Admin, rpc_error},
    output::{self, emit},
};

#[derive(Args)]
pub struct AuditArgs {
    /// Provider id (`prv_…`); a provider admin token always sees its own.
    #[arg(long)]
    provider: Option<String>,
    /// Only this user (username or `usr_…`).
    #[arg(long)]
    user: Option<String>,
    /// From this time on: RFC 3339 (`2026-11-28T06:00:00Z`) or an age (`30m`, `2h`, `7d`).
    #[arg(long, value_parser = when)]
    since: Option<DateTime<Utc>>,
    /// Before this time (same forms as --since).
    #[arg(long, value_parser = when)]
    until: Option<DateTime<Utc>>,
    /// Only admin changes or only authentication decisions.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Only this action, e.g. `agent_deleted`, `user_updated`, `authenticate`.
    #[arg(long)]
    action: Option<String>,
    /// Entries per page (at most 500).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// The `next page` token a previous run printed.
    #[arg(long)]
    page_token: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Admin,
    Authentication,
}

/// RFC 3339, or an age before now: `45s`, `30m`, `2h`, `7d`.
fn when(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || format!("{text:?} is neither RFC 3339 nor an age like 30m, 2h, 7d");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    Utc::now().checked_sub_signed(age).ok_or_else(bad)
}

fn kind_name(kind: i32) -> &'static str {
    match AuditKind::try_from(kind).unwrap_or(AuditKind::Unspecified) {
        AuditKind::Admin => "admin",
        AuditKind::Authentication => "authentication",
        AuditKind::Unspecified => "",
    }
}

fn entry_json(e: &AuditEntry) -> Value {
    let authentication = e.kind == AuditKind::Authentication as i32;
    json!({
        "id": e.id, "at": output::time(e.at.as_ref()), "kind": kind_name(e.kind), "provider_id": e.provider_id,
        "action": e.action, "outcome": e.outcome, "actor": e.actor, "target": e.target, "username": e.username,
        "detail": e.detail, "source": e.source,
        "decision": authentication.then(|| output::decision(e.decision)),
        "reason": authentication.then(|| output::reason(e.reason)),
    })
}

/// One line: time, action, outcome or verdict, who, what, and the rest.
fn entry_line(e: &AuditEntry) -> String {
    let result = if e.kind == AuditKind::Authentication as i32 {
        output::verdict(e.decision, e.reason, "")
    } else {
        e.outcome.clone()
    };
    let dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    let what = [e.username.as_str(), e.target.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut line = format!(
        "{} {:<22} {:<24} by {} on {}",
        output::time(e.at.as_ref()).unwrap_or_default(),
        e.action,
        result,
        dash(&e.actor),
        dash(&what),
    );
    for (label, value) in [("from", &e.source), ("", &e.detail)] {
        if !value.is_empty() {
            line.push_str(&format!(" {label}{}{value}", if label.is_empty() { "" } else { " " }));
        }
    }
    line.push('\n');
    line
}

pub async fn run(global: &Global, admin: &Admin, args: AuditArgs) -> anyhow::Result<()> {
    let request = ListAuditRequest {
        provider_id: args.provider.unwrap_or_default(),
        user: args.user.unwrap_or_default(),
        since: args.since.map(|t| vigil_proto::to_timestamp(t.into())),
        until: args.until.map(|t| vigil_proto::to_timestamp(t.into())),
        kind: match args.kind {
            None => AuditKind::Unspecified,
            Some(KindArg::Admin) => AuditKind::Admin,
            Some(KindArg::Authentication) => AuditKind::Authentication,
        } as i32,
        action: args.action.unwrap_or_default(),
        page_size: args.limit,
        page_token: args.page_token.unwrap_or_default(),
    };
    let page = admin
        .client
        .clone()
        .list_audit(admin.request(request)?)
        .await
        .map_err(rpc_error("ListAudit"))?
        .into_inner();
    let value = json!({
        "entries": page.entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    });
    emit(global, &value, || {
        let mut text: String = page.entries.iter().map(entry_line).collect();
        if page.entries.is_empty() {
            text.push_str("no audit entries match\n");
        }
        if !page.next_page_token.is_empty() {
            text.push_str(&format!("next page: --page-token {}\n", page.next_page_token));
        }
        text
    });
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_an_age() {
        assert_eq!(
            when("2026-11-28T06:00:00Z").unwrap().to_rfc3339(),
            "2026-11-28T06:00:00+00:00"
        );
        let before = Utc::now();
        let two_hours_ago = when("2h").unwrap();
        let after = Utc::now();
        assert!(before - Duration::hours(2) <= two_hours_ago && two_hours_ago <= after - Duration::hours(2));
        for bad in ["", "h", "2w", "yesterday", "-"] {
            assert!(when(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_shows_who_did_what() {
        let e = AuditEntry {
            action: "agent_deleted".into(),
            outcome: "ok".into(),
            actor: "operator".into(),
            target: "agt_1".into(),
            detail: "name=\"vpn\"".into(),
            kind: AuditKind::Admin as i32,
            ..Default::default()
        };
        let line = entry_line(&e);
        assert!(line.contains("agent_deleted"), "{line}");
        assert!(line.contains("by operator on agt_1"), "{line}");
        assert!(line.ends_with("name=\"vpn\"\n"), "{line}");
    }
}
