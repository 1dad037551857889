//! `vigil demo`: one whole login against a running stack, every answer checked.
//!
//! It is what a new user sees after `scripts/dev up`, and a smoke test: any
//! step that does not give the expected answer stops it with a non-zero exit.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use tokio::time::{Instant, sleep};
use vigil_proto::v1::{AgentKind, ChallengeState, Decision, Factor, Reason, UsageModel};

use crate::billing::Billing;
use crate::gateway::{Admin, Agent};
use crate::output::{self, fields, verdict};
use crate::{Global, admin, agent, http, sim};

/// How long the SMS and the usage count may take to show up.
const WAIT: Duration = Duration::from_secs(10);
const SMS_POLL: Duration = Duration::from_millis(200);
const USAGE_POLL: Duration = Duration::from_millis(500);
const CODE_LEN: usize = 6;

#[derive(Args)]
pub struct DemoArgs {
    /// Phone number of the demo user's SMS factor: a simulated phone.
    #[arg(long, default_value = "+15550100001")]
    phone: String,
}

/// Numbered progress lines for people; silent with `--json`.
struct Progress {
    quiet: bool,
    step: usize,
    title: &'static str,
}

impl Progress {
    fn step(&mut self, title: &'static str) {
        self.step += 1;
        self.title = title;
        if !self.quiet {
            println!("[{}] {title}", self.step);
        }
    }

    fn show(&self, text: &str) {
        if !self.quiet {
            print!("{text}");
        }
    }

    fn failed(&self, error: anyhow::Error) -> anyhow::Error {
        error.context(format!("demo failed at step {} ({})", self.step, self.title))
    }
}

fn expect(ok: bool, wanted: &str, got: impl FnOnce() -> String) -> anyhow::Result<()> {
    if ok {
        Ok(())
    } else {
        bail!("expected {wanted}, got {}", got())
    }
}

pub async fn run(global: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut progress = Progress {
        quiet: global.json,
        step: 0,
        title: "",
    };
    match walk(global, &args, &mut progress).await {
        Ok(summary) => {
            if global.json {
                println!("{}", output::pretty(&summary));
            } else {
                println!("demo: login challenged and approved");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(progress.failed(error)),
    }
}

async fn walk(global: &Global, args: &DemoArgs, progress: &mut Progress) -> anyhow::Result<serde_json::Value> {
    // Checked before anything is created, so a missing token costs nothing.
    let billing = Billing::new(global)?;
    let mut admin = Admin::connect(global).await?;
    let http = http::client()?;
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis();
    let username = format!("demo-{run_id}");

    progress.step("create a provider billed per authentication");
    let provider = admin::create_provider(&mut admin, format!("demo-{run_id}"), UsageModel::PerAuthentication).await?;
    progress.show(&admin::provider_text(&provider));

    progress.step("register an RDP agent");
    let registered = admin::create_agent(
        &mut admin,
        provider.id.clone(),
        format!("demo-rdp-{run_id}"),
        AgentKind::Rdp,
    )
    .await?;
    progress.show(&fields(&[
        ("agent id", registered.agent_id.clone()),
        ("agent key", "(kept in memory for this demo, not shown)".into()),
    ]));
    let mut agent = Agent::with_credentials(&global.gateway, &registered.agent_id, registered.agent_key.into()).await?;

    progress.step("create a user with an SMS factor");
    let user = admin::create_user(
        &mut admin,
        provider.id.clone(),
        username.clone(),
        "Demo User".into(),
        args.phone.clone(),
    )
    .await?;
    progress.show(&admin::user_text(&user));

    // Messages already in the phone's inbox (earlier runs) are not this run's.
    let earlier: HashSet<String> = sim::inbox(&http, &global.sim_url, &args.phone)
        .await?
        .into_iter()
        .map(|m| m.sid)
        .collect();

    progress.step("the RDP agent asks Vigil to authenticate the user by SMS");
    let started = agent::authenticate(&mut agent, agent::Login::challenge(username.clone(), Factor::Sms)).await?;
    progress.show(&agent::authenticate_text(&started));
    expect(
        started.decision == Decision::Challenge as i32
            && !started.challenge_id.is_empty()
            && matches!(
                ChallengeState::try_from(started.state),
                Ok(ChallengeState::Pending | ChallengeState::Delivered)
            ),
        "CHALLENGE with a pending challenge",
        || verdict(started.decision, started.reason, &started.message),
    )?;
    let challenge_id = started.challenge_id.clone();

    progress.step("wait for the SMS on the simulated phone");
    let body = wait_for_sms(&http, &global.sim_url, &args.phone, &earlier).await?;
    progress.show(&format!("  received SMS: {}\n", mask_codes(&body)));

    progress.step("read the code from the SMS, as the user would");
    let code = extract_code(&body).with_context(|| format!("no {CODE_LEN}-digit code in the SMS {body:?}"))?;
    progress.show(&format!("  code: {code}\n"));

    progress.step("the agent verifies the code the user typed");
    let verified = agent::verify(&mut agent, challenge_id.clone(), code.clone()).await?;
    progress.show(&agent::verify_text(&verified));
    expect(
        verified.decision == Decision::Allow as i32 && verified.reason == Reason::Approved as i32,
        "ALLOW / APPROVED",
        || verdict(verified.decision, verified.reason, &verified.message),
    )?;

    progress.step("the challenge's status");
    let status = agent::status(&mut agent, challenge_id.clone()).await?;
    progress.show(&agent::status_text(&status));
    expect(
        status.state == ChallengeState::Approved as i32,
        "state APPROVED",
        || output::state(status.state),
    )?;

    progress.step("the same code again is refused");
    let replayed = agent::verify(&mut agent, challenge_id.clone(), code).await?;
    progress.show(&agent::verify_text(&replayed));
    expect(
        replayed.decision == Decision::Deny as i32 && replayed.reason == Reason::AlreadyUsed as i32,
        "DENY / ALREADY_USED",
        || verdict(replayed.decision, replayed.reason, &replayed.message),
    )?;

    progress.step("a user Vigil does not know is refused");
    let stranger = agent::authenticate(
        &mut agent,
        agent::Login::challenge(format!("{username}-nobody"), Factor::Sms),
    )
    .await?;
    progress.show(&agent::authenticate_text(&stranger));
    expect(
        stranger.decision == Decision::Deny as i32 && stranger.reason == Reason::UnknownUser as i32,
        "DENY / UNKNOWN_USER",
        || verdict(stranger.decision, stranger.reason, &stranger.message),
    )?;

    progress.step("billing counts the one authentication");
    let authentications = wait_for_usage(&billing, &provider.id).await?;
    progress.show(&fields(&[("authentications", authentications.to_string())]));

    Ok(json!({
        "ok": true,
        "provider_id": provider.id,
        "agent_id": registered.agent_id,
        "user_id": user.id,
        "username": username,
        "challenge_id": challenge_id,
        "authentications": authentications,
    }))
}

/// The body of the first message not in `earlier` that carries a code.
async fn wait_for_sms(
    http: &reqwest::Client,
    sim_url: &str,
    phone: &str,
    earlier: &HashSet<String>,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let inbox = sim::inbox(http, sim_url, phone).await?;
        if let Some(message) = inbox.into_iter().find(|m| !earlier.contains(&m.sid)) {
            return Ok(message.body);
        }
        if Instant::now() >= deadline {
            bail!(
                "no SMS reached {phone} within {}s (see `scripts/dev logs telephony` and `scripts/dev logs challenge`)",
                WAIT.as_secs()
            );
        }
        sleep(SMS_POLL).await;
    }
}

/// Polls until the provider's usage shows an authentication; exactly one is expected.
async fn wait_for_usage(billing: &Billing, provider_id: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + WAIT;
    loop {
        // Billing learns of the provider from an event, so early answers may
        // be errors (unknown provider) as well as zero.
        let last = billing.usage(provider_id, None, None).await;
        match &last {
            Ok(usage) if usage.authentications == 1 => return Ok(1),
            Ok(usage) if usage.authentications > 1 => {
                bail!("expected 1 authentication, billing counted {}", usage.authentications)
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return match last {
                Ok(usage) => bail!(
                    "expected 1 authentication, billing still counts {} after {}s (see `scripts/dev logs billing`)",
                    usage.authentications,
                    WAIT.as_secs()
                ),
                Err(error) => Err(error.context(format!("billing gave no usage within {}s", WAIT.as_secs()))),
            };
        }
        sleep(USAGE_POLL).await;
    }
}

/// Runs of ASCII digits in `text`, with their byte ranges.
fn digit_runs(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        Some(start..i)
    })
}

/// The first run of exactly six digits: the one-time code.
fn extract_code(text: &str) -> Option<String> {
    digit_runs(text)
        .find(|run| run.len() == CODE_LEN)
        .map(|run| text[run].to_owned())
}

/// The text with every code-length digit run starred out, for showing an SMS
/// without its secret.
fn mask_codes(text: &str) -> String {
    let mut masked = text.to_owned();
    for run in digit_runs(text).filter(|run| run.len() == CODE_LEN).collect::<Vec<_>>() {
        masked.replace_range(run, &"*".repeat(CODE_LEN));
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMS: &str = "Your Vigil verification code is 123456. It expires in 2 min.";

    #[test]
    fn finds_the_six_digit_code() {
        assert_eq!(extract_code(SMS).as_deref(), Some("123456"));
        assert_eq!(
            extract_code("call 5551234567 then use 004211").as_deref(),
            Some("004211")
        );
        assert_eq!(extract_code("no code here, 12345 or 1234567"), None);
    }

    #[test]
    fn masks_the_code_only() {
        assert_eq!(
            mask_codes(SMS),
            "Your Vigil verification code is ******. It expires in 2 min."
        );
        assert_eq!(mask_codes("ids 1234567 and 42"), "ids 1234567 and 42");
    }
}
