//! `vigil agent …`: what a login agent (RDP, RADIUS front end, app) asks Vigil.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use vigil_proto::v1::{
    AuthStatus, AuthenticateRequest, AuthenticateResponse, Decision, Factor, GetAuthStatusRequest, PreauthRequest,
    PreauthResponse, Reason, VerifyPasscodeRequest, VerifyPasscodeResponse,
};

use vigil_agent_auth::methods;

use crate::gateway::{Agent, rpc_error};
use crate::output::{self, emit, fields, verdict};
use crate::{EXIT_DENIED, Global};

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Would this user be challenged, and with which factors? Sends nothing.
    Preauth {
        username: String,
        /// Address of the client logging in, for trusted-network policies.
        #[arg(long)]
        client_ip: Option<String>,
    },
    /// Start a second-factor challenge for a user.
    Authenticate {
        username: String,
        /// Factor to challenge; the user's default when left out.
        #[arg(long, value_enum)]
        factor: Option<FactorArg>,
        #[arg(long)]
        client_ip: Option<String>,
        /// A TOTP, HOTP or backup code the user typed with the login: the
        /// challenge is answered at once and the answer is final.
        #[arg(long)]
        passcode: Option<String>,
    },
    /// Show the state of a challenge.
    Status { challenge_id: String },
    /// Answer a challenge with the code the user received.
    Verify { challenge_id: String, code: String },
    /// Log a user in interactively: authenticate, ask for the code, verify.
    ///
    /// Exits 0 when the login is let through, 3 when it is refused.
    Login {
        username: String,
        #[arg(long, value_enum)]
        factor: Option<FactorArg>,
        #[arg(long)]
        client_ip: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FactorArg {
    Default,
    Sms,
    Voice,
    Push,
    Totp,
    Hotp,
    BackupCode,
}

impl From<FactorArg> for Factor {
    fn from(arg: FactorArg) -> Self {
        match arg {
            FactorArg::Default => Factor::Default,
            FactorArg::Sms => Factor::Sms,
            FactorArg::Voice => Factor::Voice,
            FactorArg::Push => Factor::Push,
            FactorArg::Totp => Factor::Totp,
            FactorArg::Hotp => Factor::Hotp,
            FactorArg::BackupCode => Factor::BackupCode,
        }
    }
}

fn factor(arg: Option<FactorArg>) -> Factor {
    arg.map_or(Factor::Default, Factor::from)
}

pub async fn run(global: &Global, command: AgentCommand) -> anyhow::Result<ExitCode> {
    let mut agent = Agent::connect(global).await?;
    match command {
        AgentCommand::Preauth { username, client_ip } => {
            let response = preauth(&mut agent, username, client_ip.unwrap_or_default()).await?;
            emit(global, &preauth_json(&response), || preauth_text(&response));
        }
        AgentCommand::Authenticate {
            username,
            factor: f,
            client_ip,
            passcode,
        } => {
            let login = Login {
                username,
                factor: factor(f),
                client_ip: client_ip.unwrap_or_default(),
                passcode: passcode.unwrap_or_default(),
            };
            let response = authenticate(&mut agent, login).await?;
            emit(global, &authenticate_json(&response), || authenticate_text(&response));
        }
        AgentCommand::Status { challenge_id } => {
            let response = status(&mut agent, challenge_id).await?;
            emit(global, &status_json(&response), || status_text(&response));
        }
        AgentCommand::Verify { challenge_id, code } => {
            let response = verify(&mut agent, challenge_id, code).await?;
            emit(global, &verify_json(&response), || verify_text(&response));
        }
        AgentCommand::Login {
            username,
            factor: f,
            client_ip,
        } => return login(global, &mut agent, username, factor(f), client_ip.unwrap_or_default()).await,
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn preauth(agent: &mut Agent, username: String, client_ip: String) -> anyhow::Result<PreauthResponse> {
    let request = agent.request(methods::PREAUTH, PreauthRequest { username, client_ip })?;
    Ok(agent
        .client
        .preauth(request)
        .await
        .map_err(rpc_error("Preauth"))?
        .into_inner())
}

/// What an Authenticate asks for.
pub struct Login {
    pub username: String,
    pub factor: Factor,
    pub client_ip: String,
    /// Empty unless the user typed the code with the login.
    pub passcode: String,
}

impl Login {
    /// A login to be challenged, from no particular address.
    pub fn challenge(username: String, factor: Factor) -> Self {
        Self {
            username,
            factor,
            client_ip: String::new(),
            passcode: String::new(),
        }
    }
}

pub async fn authenticate(agent: &mut Agent, login: Login) -> anyhow::Result<AuthenticateResponse> {
    let request = agent.request(
        methods::AUTHENTICATE,
        AuthenticateRequest {
            username: login.username,
            factor: login.factor as i32,
            client_ip: login.client_ip,
            passcode: login.passcode,
        },
    )?;
    Ok(agent
        .client
        .authenticate(request)
        .await
        .map_err(rpc_error("Authenticate"))?
        .into_inner())
}

pub async fn status(agent: &mut Agent, challenge_id: String) -> anyhow::Result<AuthStatus> {
    let request = agent.request(methods::GET_AUTH_STATUS, GetAuthStatusRequest { challenge_id })?;
    Ok(agent
        .client
        .get_auth_status(request)
        .await
        .map_err(rpc_error("GetAuthStatus"))?
        .into_inner())
}

pub async fn verify(
    agent: &mut Agent,
    challenge_id: String,
    passcode: String,
) -> anyhow::Result<VerifyPasscodeResponse> {
    let request = agent.request(
        methods::VERIFY_PASSCODE,
        VerifyPasscodeRequest { challenge_id, passcode },
    )?;
    Ok(agent
        .client
        .verify_passcode(request)
        .await
        .map_err(rpc_error("VerifyPasscode"))?
        .into_inner())
}

async fn login(
    global: &Global,
    agent: &mut Agent,
    username: String,
    factor: Factor,
    client_ip: String,
) -> anyhow::Result<ExitCode> {
    let login = Login {
        client_ip,
        ..Login::challenge(username, factor)
    };
    let started = authenticate(agent, login).await?;
    if !global.json {
        print!("{}", authenticate_text(&started));
    }
    let mut attempts = Vec::new();
    let allowed = match Decision::try_from(started.decision) {
        Ok(Decision::Allow) => true,
        Ok(Decision::Challenge) => loop {
            let Some(code) = prompt_code(&started.challenge_id).await? else {
                bail!("no code entered (end of input); the challenge stays open until it expires");
            };
            let answer = verify(agent, started.challenge_id.clone(), code).await?;
            if !global.json {
                print!("{}", verify_text(&answer));
            }
            let decision = answer.decision;
            let retry = answer.reason == Reason::WrongCode as i32 && answer.attempts_remaining > 0;
            attempts.push(verify_json(&answer));
            if decision == Decision::Allow as i32 {
                break true;
            }
            if !retry {
                break false;
            }
        },
        _ => false,
    };
    if global.json {
        let value = json!({
            "allowed": allowed,
            "authenticate": authenticate_json(&started),
            "verify": attempts,
        });
        println!("{}", output::pretty(&value));
    } else if allowed {
        println!("login allowed");
    } else {
        println!("login refused");
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENIED)
    })
}

/// Asks on the terminal for the code; `None` at end of input. Blank lines ask again.
async fn prompt_code(challenge_id: &str) -> anyhow::Result<Option<String>> {
    let prompt = format!("Enter the code for challenge {challenge_id}: ");
    // Reading stdin blocks; keep it off the runtime's only thread.
    tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
        let stdin = std::io::stdin();
        loop {
            // The prompt goes to stderr so stdout stays clean for --json.
            eprint!("{prompt}");
            std::io::stderr().flush().context("writing the prompt")?;
            let mut line = String::new();
            if stdin.lock().read_line(&mut line).context("reading the code")? == 0 {
                return Ok(None);
            }
            let code = line.trim();
            if !code.is_empty() {
                return Ok(Some(code.to_owned()));
            }
        }
    })
    .await
    .context("reading the code")?
}

pub fn preauth_json(r: &PreauthResponse) -> Value {
    json!({
        "decision": output::decision(r.decision),
        "reason": output::reason(r.reason),
        "message": r.message,
        "factors": r.factors.iter().map(|f| output::factor(*f)).collect::<Vec<_>>(),
    })
}

pub fn preauth_text(r: &PreauthResponse) -> String {
    let factors = r
        .factors
        .iter()
        .map(|f| output::factor(*f))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{}\n{}",
        verdict(r.decision, r.reason, &r.message),
        fields(&[("factors", factors)])
    )
}

pub fn authenticate_json(r: &AuthenticateResponse) -> Value {
    json!({
        "decision": output::decision(r.decision),
        "reason": output::reason(r.reason),
        "message": r.message,
        "challenge_id": r.challenge_id,
        "state": output::state(r.state),
        "expires_at": output::time(r.expires_at.as_ref()),
        "match_number": r.match_number,
        "attempts_remaining": r.attempts_remaining,
    })
}

pub fn authenticate_text(r: &AuthenticateResponse) -> String {
    let challenged = !r.challenge_id.is_empty();
    format!(
        "{}\n{}",
        verdict(r.decision, r.reason, &r.message),
        fields(&[
            ("challenge id", r.challenge_id.clone()),
            (
                "state",
                if challenged {
                    output::state(r.state)
                } else {
                    String::new()
                }
            ),
            ("expires at", output::time(r.expires_at.as_ref()).unwrap_or_default()),
            (
                "match number",
                if r.match_number > 0 {
                    r.match_number.to_string()
                } else {
                    String::new()
                }
            ),
            (
                "attempts remaining",
                if r.attempts_remaining > 0 {
                    r.attempts_remaining.to_string()
                } else {
                    String::new()
                }
            ),
        ])
    )
}

pub fn status_json(r: &AuthStatus) -> Value {
    json!({
        "challenge_id": r.challenge_id,
        "state": output::state(r.state),
        "reason": output::reason(r.reason),
        "message": r.message,
        "expires_at": output::time(r.expires_at.as_ref()),
    })
}

pub fn status_text(r: &AuthStatus) -> String {
    let head = if r.message.is_empty() {
        format!("{} / {}", output::state(r.state), output::reason(r.reason))
    } else {
        format!(
            "{} / {}: {}",
            output::state(r.state),
            output::reason(r.reason),
            r.message
        )
    };
    format!(
        "{head}\n{}",
        fields(&[
            ("challenge id", r.challenge_id.clone()),
            ("expires at", output::time(r.expires_at.as_ref()).unwrap_or_default()),
        ])
    )
}

pub fn verify_json(r: &VerifyPasscodeResponse) -> Value {
    json!({
        "decision": output::decision(r.decision),
        "reason": output::reason(r.reason),
        "message": r.message,
        "state": output::state(r.state),
        "attempts_remaining": r.attempts_remaining,
    })
}

pub fn verify_text(r: &VerifyPasscodeResponse) -> String {
    let remaining = if r.reason == Reason::WrongCode as i32 {
        r.attempts_remaining.to_string()
    } else {
        String::new()
    };
    format!(
        "{}\n{}",
        verdict(r.decision, r.reason, &r.message),
        fields(&[("state", output::state(r.state)), ("attempts left", remaining)])
    )
}
