//! README's "An operator's first ten minutes", command by command, with the
//! real `vigil` binary against the real stack (and a real slapd for the
//! directory import). If a command in the README changes, change it here too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vigil_e2e::{Stack, StackOptions};
use vigil_testkit::{SlapdServer, workspace_bin};

const LDIF: &str = "\
dn: cn=vigil-reader,dc=example,dc=org
objectClass: person
cn: vigil-reader
sn: reader
userPassword: reader-password-4711

dn: ou=staff,dc=example,dc=org
objectClass: organizationalUnit
ou: staff

dn: cn=Carol Example,ou=staff,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: extensibleObject
cn: Carol Example
sn: Example
sAMAccountName: carol
displayName: Carol Example
mobile: +1 555 123 0003
";

/// `vigil --json <args>` with the gateway URL and `token` ("" for none);
/// the parsed output.
async fn vigil(stack: &Stack, token: &str, env: &[(&str, &str)], args: &[&str]) -> Value {
    let mut cmd = tokio::process::Command::new(workspace_bin("vigil").unwrap());
    cmd.arg("--json")
        .args(args)
        .env("VIGIL_GATEWAY_URL", &stack.grpc_url)
        .env_remove("VIGIL_ADMIN_TOKEN")
        .envs(env.iter().copied());
    if !token.is_empty() {
        cmd.env("VIGIL_ADMIN_TOKEN", token);
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "vigil {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stack.log_tails(20)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("vigil {args:?}: {e}"))
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}")).to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_first_ten_minutes() {
    let (stack, slapd) = tokio::join!(Stack::start(StackOptions::default()), SlapdServer::start(LDIF));
    let (stack, slapd) = (stack.expect("stack starts"), slapd.expect("slapd starts"));
    let operator = stack.admin_token.clone();

    // 1. A provider, and an admin token for it.
    let provider = vigil(
        &stack,
        &operator,
        &[],
        &[
            "admin",
            "create-provider",
            "--name",
            "Acme",
            "--usage-model",
            "per-authentication",
        ],
    )
    .await;
    let p = text(&provider, "id");
    let token = vigil(
        &stack,
        &operator,
        &[],
        &[
            "admin",
            "create-admin-token",
            "--provider",
            &p,
            "--description",
            "helpdesk",
        ],
    )
    .await;
    let acme = text(&token, "token");
    assert!(acme.starts_with("vat_"));

    // 2. Activation credentials, and an agent registering with them.
    let activation = vigil(&stack, &acme, &[], &["manage", "create-activation", "--provider", &p]).await;
    let registered = vigil(
        &stack,
        "",
        &[("VIGIL_ACTIVATION_PASSWORD", &text(&activation, "password"))],
        &[
            "manage",
            "register",
            "--login",
            &text(&activation, "login"),
            "--name",
            "rdp-01",
            "--kind",
            "rdp",
        ],
    )
    .await;
    let agent = text(&registered, "agent_id");
    assert_eq!(text(&registered, "provider_id"), p);

    // 3. Users: a CSV file and the directory.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "username,display_name,phone,email,default_method\nalice,Alice Example,+15551230001,alice@example.org,sms\nbob,Bob Example,+15551230002,,\n",
    )
    .unwrap();
    let imported = vigil(
        &stack,
        &acme,
        &[],
        &["manage", "import-users", "--provider", &p, csv.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        (imported["created"].as_u64(), imported["rejected"].as_u64()),
        (Some(2), Some(0)),
        "{imported}"
    );
    let from_ldap = vigil(
        &stack,
        &acme,
        &[("VIGIL_LDAP_BIND_PASSWORD", "reader-password-4711")],
        &[
            "users",
            "import-ldap",
            "--provider",
            &p,
            "--url",
            &slapd.url(),
            "--bind-dn",
            "cn=vigil-reader,dc=example,dc=org",
            "--base-dn",
            "ou=staff,dc=example,dc=org",
            "--filter",
            "(objectClass=inetOrgPerson)",
        ],
    )
    .await;
    assert_eq!(from_ldap["created"].as_u64(), Some(1), "{from_ldap}");

    // 4. A factor: alice's authenticator app.
    let enrolled = vigil(
        &stack,
        &acme,
        &[],
        &["users", "enroll", "--provider", &p, "alice", "totp"],
    )
    .await;
    assert!(
        text(&enrolled, "otpauth_uri").starts_with("otpauth://totp/"),
        "{enrolled}"
    );

    // 5. Why would alice be challenged? Then the audit log.
    let doctor = vigil(
        &stack,
        &acme,
        &[],
        &[
            "doctor",
            "alice",
            "--provider",
            &p,
            "--agent",
            &agent,
            "--client-ip",
            "198.51.100.7",
        ],
    )
    .await;
    assert_eq!(text(&doctor, "decision"), "CHALLENGE", "{doctor}");
    assert_eq!(text(&doctor, "reason"), "ENROLLED", "{doctor}");
    let audit = vigil(
        &stack,
        &acme,
        &[],
        &["admin", "audit", "--provider", &p, "--kind", "admin"],
    )
    .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "agent_registration",
        "users_imported",
        "factor_enrolled",
        "activation_created",
    ] {
        assert!(actions.contains(&expected), "no {expected} in {actions:?}");
    }

    // 6. A RADIUS client: the directory that checks its passwords, then create, list, delete.
    let directory = vigil(
        &stack,
        &acme,
        &[("VIGIL_LDAP_BIND_PASSWORD", "reader-password-4711")],
        &[
            "providers",
            "directory",
            &p,
            "--url",
            &slapd.url(),
            "--search-bind-dn",
            "cn=vigil-reader,dc=example,dc=org",
            "--search-base-dn",
            "ou=staff,dc=example,dc=org",
        ],
    )
    .await;
    assert_eq!(directory["configured"], true, "{directory}");
    let shown = vigil(&stack, &acme, &[], &["providers", "directory", &p]).await;
    assert_eq!(shown["username_attribute"], "sAMAccountName", "{shown}");
    assert!(!shown.to_string().contains("reader-password"), "{shown}");
    let radius = vigil(
        &stack,
        &acme,
        &[("VIGIL_RADIUS_SECRET", "nps-shared-secret-0123456789")],
        &[
            "radius-clients",
            "create",
            "--provider",
            &p,
            "--name",
            "nps-01",
            "--source",
            "192.0.2.10",
            "--mode",
            "challenge",
        ],
    )
    .await;
    let rcl = text(&radius, "id");
    assert_eq!(text(&radius, "mode"), "challenge");
    let listed = vigil(&stack, &acme, &[], &["radius-clients", "list", "--provider", &p]).await;
    assert_eq!(listed["clients"][0]["source"], "192.0.2.10/32", "{listed}");
    assert!(!listed.to_string().contains("nps-shared-secret"), "{listed}");
    vigil(&stack, &acme, &[], &["radius-clients", "delete", &rcl]).await;
    let after = vigil(&stack, &acme, &[], &["radius-clients", "list", "--provider", &p]).await;
    assert_eq!(after["clients"].as_array().map(Vec::len), Some(0), "{after}");
}
