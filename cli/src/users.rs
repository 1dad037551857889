//! `vigil users …`: bringing a provider's users in from a directory,
//! enrolling a user's factors (push code and QR payload, TOTP / HOTP,
//! backup codes, phone for SMS and voice), and the operator's "test user"
//! button: a test challenge on the user's default factor, followed with
//! WatchAuth to the user's answer.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use vigil_agent_auth::methods;
use vigil_proto::v1::{
    AuthStatus, ChallengeState, Decision, EnrollFactorRequest, EnrollFactorResponse, Factor, ImportLdapRequest,
    LdapAttributes, UpdateUserRequest, WatchAuthRequest,
};

use crate::{
    EXIT_DENIED, Global,
    agent::{FactorArg, Login, authenticate, authenticate_json, authenticate_text, status_json, status_text},
    gateway::{Admin, Agent, rpc_error},
    manage::import_report,
    output::{self, emit, fields},
};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Import users from LDAP / Active Directory (paged search); running it again changes nothing
    /// that did not change in the directory. Prints the same per-row report as `manage import-users`.
    ImportLdap(ImportLdapArgs),
    /// Enrol a factor. push: a one-time code (10 minutes, usable once) and
    /// its QR payload for the user's app; totp / hotp: the otpauth URI and
    /// secret; backup-codes: ten new codes; sms / voice: the phone number.
    Enroll {
        /// User id or username.
        user: String,
        #[arg(value_enum)]
        factor: EnrollArg,
        /// Provider id (`prv_…`).
        #[arg(long, env = "VIGIL_PROVIDER_ID")]
        provider: String,
        /// sms / voice: the user's phone, E.164.
        #[arg(long, required_if_eq_any = [("factor", "sms"), ("factor", "voice")])]
        phone: Option<String>,
        /// Also write the QR code (PNG) to this file.
        #[arg(long)]
        qr: Option<std::path::PathBuf>,
    },
    /// Send the user a test challenge through their default factor (or
    /// `--factor`) and wait for the answer (needs agent credentials). With
    /// `--passcode`, the code the user read off their authenticator app or
    /// backup list answers it at once.
    ///
    /// Exits 0 when the user approved, 3 when they did not.
    Test {
        /// Username.
        user: String,
        #[arg(long, value_enum)]
        factor: Option<FactorArg>,
        /// A TOTP, HOTP or backup code: the test is one call, no waiting.
        #[arg(long)]
        passcode: Option<String>,
    },
}

#[derive(Args)]
pub struct ImportLdapArgs {
    /// Provider id (`prv_…`).
    #[arg(long)]
    provider: String,
    /// Directory URL: `ldap://dc1.corp.example.com` or `ldaps://dc1.corp.example.com:636`.
    #[arg(long)]
    url: String,
    /// DN to bind as, e.g. `CN=vigil-reader,OU=Service,DC=corp,DC=example,DC=com`; leave out to search anonymously.
    #[arg(long)]
    bind_dn: Option<String>,
    /// Its password; used for this import only, never stored.
    #[arg(long, env = "VIGIL_LDAP_BIND_PASSWORD", hide_env_values = true)]
    bind_password: Option<String>,
    /// Where to search, e.g. `OU=Staff,DC=corp,DC=example,DC=com`.
    #[arg(long)]
    base_dn: String,
    /// LDAP filter; default: Active Directory's users, `(&(objectCategory=person)(objectClass=user))`.
    #[arg(long)]
    filter: Option<String>,
    /// Attribute holding the username [default: sAMAccountName; OpenLDAP: uid].
    #[arg(long)]
    username_attribute: Option<String>,
    /// Attribute holding the display name [default: displayName].
    #[arg(long)]
    display_name_attribute: Option<String>,
    /// Attribute holding the phone; repeat for fallbacks [default: mobile, then telephoneNumber].
    #[arg(long = "phone-attribute")]
    phone_attributes: Vec<String>,
    /// Attribute holding the email address [default: mail].
    #[arg(long)]
    email_attribute: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnrollArg {
    Push,
    Totp,
    Hotp,
    BackupCodes,
    Sms,
    Voice,
}

pub async fn run(global: &Global, command: UsersCommand) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Enroll {
            user,
            factor,
            provider,
            phone,
            qr,
        } => enroll(global, user, factor, provider, phone, qr).await,
        UsersCommand::Test { user, factor, passcode } => {
            let login = Login {
                passcode: passcode.unwrap_or_default(),
                ..Login::challenge(user, factor.map_or(Factor::Default, Factor::from))
            };
            test(global, login).await
        }
        UsersCommand::ImportLdap(args) => import_ldap(global, args).await,
    }
}

async fn import_ldap(global: &Global, args: ImportLdapArgs) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(global).await?;
    let ImportLdapArgs {
        provider,
        url,
        bind_dn,
        bind_password,
        base_dn,
        filter,
        username_attribute,
        display_name_attribute,
        phone_attributes,
        email_attribute,
    } = args;
    let request = ImportLdapRequest {
        provider_id: provider,
        url,
        bind_dn: bind_dn.unwrap_or_default(),
        bind_password: bind_password.unwrap_or_default(),
        base_dn,
        filter: filter.unwrap_or_default(),
        attributes: Some(LdapAttributes {
            username: username_attribute.unwrap_or_default(),
            display_name: display_name_attribute.unwrap_or_default(),
            phone: phone_attributes,
            email: email_attribute.unwrap_or_default(),
        }),
    };
    let report = admin
        .client
        .clone()
        .import_ldap(admin.request(request)?)
        .await
        .map_err(rpc_error("ImportLdap"))?
        .into_inner();
    import_report(global, &report);
    Ok(ExitCode::SUCCESS)
}

async fn enroll(
    global: &Global,
    user: String,
    factor: EnrollArg,
    provider_id: String,
    phone: Option<String>,
    qr: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut admin = Admin::connect(global).await?;
    let wire = match factor {
        EnrollArg::Push => Factor::Push,
        EnrollArg::Totp => Factor::Totp,
        EnrollArg::Hotp => Factor::Hotp,
        EnrollArg::BackupCodes => Factor::BackupCode,
        // SMS and voice are the user's phone: setting it enrols both.
        EnrollArg::Sms | EnrollArg::Voice => {
            let request = admin.request(UpdateUserRequest {
                provider_id,
                user,
                phone,
                ..Default::default()
            })?;
            let updated = admin
                .client
                .update_user(request)
                .await
                .map_err(rpc_error("UpdateUser"))?
                .into_inner();
            emit(global, &crate::admin::user_json(&updated), || {
                crate::admin::user_text(&updated)
            });
            return Ok(ExitCode::SUCCESS);
        }
    };
    let request = admin.request(EnrollFactorRequest {
        provider_id,
        user,
        factor: wire as i32,
    })?;
    let enrolled = admin
        .client
        .enroll_factor(request)
        .await
        .map_err(rpc_error("EnrollFactor"))?
        .into_inner();
    if let Some(path) = &qr {
        if enrolled.qr_png.is_empty() {
            anyhow::bail!("this factor has no QR code");
        }
        std::fs::write(path, &enrolled.qr_png).with_context(|| format!("writing {}", path.display()))?;
    }
    emit(global, &enrolled_json(&enrolled), || {
        enrolled_text(&enrolled, qr.as_deref())
    });
    Ok(ExitCode::SUCCESS)
}

fn enrolled_json(e: &EnrollFactorResponse) -> Value {
    json!({
        "factor": output::factor(e.factor),
        "enrollment_code": e.enrollment_code,
        "enrollment_uri": e.enrollment_uri,
        "enrollment_expires_at": output::time(e.enrollment_expires_at.as_ref()),
        "otpauth_uri": e.otpauth_uri,
        "secret_base32": e.secret_base32,
        "backup_codes": e.backup_codes,
    })
}

fn enrolled_text(e: &EnrollFactorResponse, qr: Option<&std::path::Path>) -> String {
    let mut text = format!("enrolled {} (shown once)\n", output::factor(e.factor));
    text.push_str(&fields(&[
        ("code", e.enrollment_code.clone()),
        ("QR payload", e.enrollment_uri.clone()),
        (
            "code expires",
            output::time(e.enrollment_expires_at.as_ref()).unwrap_or_default(),
        ),
        ("otpauth URI", e.otpauth_uri.clone()),
        ("secret", e.secret_base32.clone()),
        ("QR image", qr.map(|p| p.display().to_string()).unwrap_or_default()),
    ]));
    for code in &e.backup_codes {
        text.push_str(&format!("  {code}\n"));
    }
    text
}

/// The "test user" button: a real challenge, followed to its end.
async fn test(global: &Global, login: Login) -> anyhow::Result<ExitCode> {
    let mut agent = Agent::connect(global).await?;
    let one_call = !login.passcode.is_empty();
    let started = authenticate(&mut agent, login).await?;
    if !global.json {
        print!("{}", authenticate_text(&started));
        if started.match_number > 0 {
            // Said early and alone on its line, so a person (or a script) can act on it.
            println!(
                "the sign-in screen shows {}: pick it on the phone",
                started.match_number
            );
        }
        std::io::stdout().flush().ok();
    }
    let mut states: Vec<AuthStatus> = Vec::new();
    // With the code sent along, the answer is already final: nothing to follow.
    if started.decision == Decision::Challenge as i32 && !one_call {
        let request = agent.request(
            methods::WATCH_AUTH,
            WatchAuthRequest {
                challenge_id: started.challenge_id.clone(),
            },
        )?;
        let mut stream = agent
            .client
            .watch_auth(request)
            .await
            .map_err(rpc_error("WatchAuth"))?
            .into_inner();
        while let Some(state) = stream.message().await.map_err(rpc_error("WatchAuth"))? {
            if !global.json {
                print!("{}", status_text(&state));
                std::io::stdout().flush().ok();
            }
            states.push(state);
        }
    }
    // Only an answered challenge tests the factor; a policy pass (bypass,
    // trusted network) sent the user nothing.
    let approved = if one_call {
        started.state == ChallengeState::Approved as i32
    } else {
        states
            .last()
            .is_some_and(|s| s.state == ChallengeState::Approved as i32)
    };
    if global.json {
        let value = json!({
            "approved": approved,
            "match_number": started.match_number,
            "authenticate": authenticate_json(&started),
            "states": states.iter().map(status_json).collect::<Vec<_>>(),
        });
        println!("{}", output::pretty(&value));
    } else if approved {
        println!("test passed: the user approved");
    } else if started.decision == Decision::Allow as i32 {
        println!("test not run: policy let the user through without a challenge");
    } else {
        println!("test failed: the user did not approve");
    }
    Ok(if approved {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENIED)
    })
}
