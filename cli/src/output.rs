//! How answers are shown: enum names without their prefixes, aligned fields
//! for people, JSON for scripts, and errors with their gRPC code.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use vigil_proto::v1::{ChallengeState, Decision, Factor, Reason, UsageModel, UserStatus};

use crate::Global;

/// `DECISION_DENY` → `DENY`; an unknown number stays visible as `UNKNOWN(n)`.
fn strip(name: Option<&'static str>, prefix: &str, value: i32) -> String {
    match name {
        Some(name) => name.strip_prefix(prefix).unwrap_or(name).to_owned(),
        None => format!("UNKNOWN({value})"),
    }
}

pub fn decision(value: i32) -> String {
    strip(
        Decision::try_from(value).ok().map(|v| v.as_str_name()),
        "DECISION_",
        value,
    )
}

pub fn reason(value: i32) -> String {
    strip(Reason::try_from(value).ok().map(|v| v.as_str_name()), "REASON_", value)
}

pub fn state(value: i32) -> String {
    strip(
        ChallengeState::try_from(value).ok().map(|v| v.as_str_name()),
        "CHALLENGE_STATE_",
        value,
    )
}

pub fn factor(value: i32) -> String {
    strip(Factor::try_from(value).ok().map(|v| v.as_str_name()), "FACTOR_", value)
}

pub fn usage_model(value: i32) -> String {
    strip(
        UsageModel::try_from(value).ok().map(|v| v.as_str_name()),
        "USAGE_MODEL_",
        value,
    )
}

pub fn user_status(value: i32) -> String {
    strip(
        UserStatus::try_from(value).ok().map(|v| v.as_str_name()),
        "USER_STATUS_",
        value,
    )
}

/// `DENY / UNKNOWN_USER: the user is not enrolled in Vigil`
pub fn verdict(decision_value: i32, reason_value: i32, message: &str) -> String {
    let head = format!("{} / {}", decision(decision_value), reason(reason_value));
    if message.is_empty() {
        head
    } else {
        format!("{head}: {message}")
    }
}

/// RFC 3339 in UTC, or `None` when the field is absent or out of range.
pub fn time(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    vigil_proto::from_timestamp(ts).map(|t| DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// `label:  value` lines with the values aligned; empty values are left out.
pub fn fields(rows: &[(&str, String)]) -> String {
    let shown: Vec<_> = rows.iter().filter(|(_, value)| !value.is_empty()).collect();
    let width = shown.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 1;
    shown
        .into_iter()
        .map(|(label, value)| format!("  {:<width$} {value}\n", format!("{label}:")))
        .collect()
}

/// Prints `value` as JSON with `--json`, otherwise the human text.
pub fn emit(global: &Global, value: &Value, human: impl FnOnce() -> String) {
    if global.json {
        println!("{}", pretty(value));
    } else {
        print!("{}", human());
    }
}

pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Canonical gRPC code names, as other gRPC tools print them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Prints an error and its causes on stderr; a gRPC status shows its code.
pub fn print_error(error: &anyhow::Error, json: bool) {
    let status = error.chain().find_map(|cause| cause.downcast_ref::<tonic::Status>());
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let part = match cause.downcast_ref::<tonic::Status>() {
            Some(status) => format!("gRPC {}: {}", code_name(status.code()), status.message()),
            None => cause.to_string(),
        };
        // Transport errors often repeat their source's text word for word.
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    let text = parts.join(": ");
    let admin_call = error
        .chain()
        .any(|cause| ADMIN_RPCS.contains(&cause.to_string().as_str()));
    if json {
        let value = json!({
            "error": text,
            "grpc_code": status.map(|s| code_name(s.code())),
        });
        eprintln!("{value}");
    } else {
        eprintln!("error: {text}");
        if let Some(hint) = status.and_then(|s| hint(s.code(), admin_call)) {
            eprintln!("hint: {hint}");
        }
    }
}

/// The admin API's RPC names, as `gateway::rpc_error` labels them.
const ADMIN_RPCS: [&str; 4] = ["CreateProvider", "GetProvider", "CreateAgent", "CreateUser"];

fn hint(code: tonic::Code, admin_call: bool) -> Option<&'static str> {
    match code {
        tonic::Code::Unauthenticated if admin_call => {
            Some("check the admin token (--admin-token / VIGIL_ADMIN_TOKEN; `scripts/dev env` prints the local one)")
        }
        tonic::Code::Unauthenticated => {
            Some("check the agent credentials (--agent-id/--agent-key, VIGIL_AGENT_ID/VIGIL_AGENT_KEY)")
        }
        tonic::Code::Unavailable => Some("is the gateway running? `scripts/dev status` shows the local stack"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_prefix() {
        assert_eq!(decision(Decision::Deny as i32), "DENY");
        assert_eq!(reason(Reason::UnknownUser as i32), "UNKNOWN_USER");
        assert_eq!(state(ChallengeState::Approved as i32), "APPROVED");
        assert_eq!(factor(Factor::Sms as i32), "SMS");
        assert_eq!(usage_model(UsageModel::PerAuthentication as i32), "PER_AUTHENTICATION");
        assert_eq!(user_status(UserStatus::Enabled as i32), "ENABLED");
        assert_eq!(reason(999), "UNKNOWN(999)");
    }

    #[test]
    fn verdict_reads_as_one_line() {
        assert_eq!(
            verdict(Decision::Deny as i32, Reason::UnknownUser as i32, "no such user"),
            "DENY / UNKNOWN_USER: no such user"
        );
        assert_eq!(
            verdict(Decision::Allow as i32, Reason::Approved as i32, ""),
            "ALLOW / APPROVED"
        );
    }

    #[test]
    fn fields_align_and_skip_empty_values() {
        let text = fields(&[
            ("id", "p1".into()),
            ("display name", String::new()),
            ("usage model", "X".into()),
        ]);
        assert_eq!(text, "  id:          p1\n  usage model: X\n");
    }

    #[test]
    fn grpc_errors_show_code_and_call() {
        let error = anyhow::Error::new(tonic::Status::unauthenticated("bad token")).context("CreateProvider");
        let status = error.chain().find_map(|c| c.downcast_ref::<tonic::Status>());
        assert_eq!(status.map(|s| code_name(s.code())), Some("UNAUTHENTICATED"));
    }
}
