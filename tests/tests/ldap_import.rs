//! Importing users from a real OpenLDAP `slapd` (started by the test kit)
//! through the gateway, and through `vigil users import-ldap`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use vigil_e2e::{Stack, StackOptions, Tenant};
use vigil_proto::v1::{GetUserRequest, ImportLdapRequest, ImportUsersResponse, LdapAttributes, ListAuditRequest};
use vigil_testkit::{SlapdServer, workspace_bin};

const READER: &str = "cn=reader,dc=example,dc=org";
const READER_PASSWORD: &str = "reader-password-4711";
const PEOPLE: &str = "ou=people,dc=example,dc=org";

/// Active Directory-style entries (sAMAccountName via extensibleObject);
/// carol has no username attribute.
const LDIF: &str = "\
dn: cn=reader,dc=example,dc=org
objectClass: person
cn: reader
sn: reader
userPassword: reader-password-4711

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: cn=Ann Example,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: extensibleObject
cn: Ann Example
sn: Example
uid: aexample
sAMAccountName: ann
displayName: Ann Example
mobile: +1 (555) 123-0001
mail: Ann@Example.org

dn: cn=Bob Example,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: extensibleObject
cn: Bob Example
sn: Example
sAMAccountName: bob
displayName: Bob Example
telephoneNumber: +15551230002

dn: cn=Carol Example,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
cn: Carol Example
sn: Example
mail: carol@example.org

dn: cn=Erin Example,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: extensibleObject
cn: Erin Example
sn: Example
sAMAccountName: erin
displayName: Erin Example
";

fn import(provider_id: &str, url: &str, password: &str) -> ImportLdapRequest {
    ImportLdapRequest {
        provider_id: provider_id.into(),
        url: url.into(),
        bind_dn: READER.into(),
        bind_password: password.into(),
        base_dn: PEOPLE.into(),
        filter: "(objectClass=inetOrgPerson)".into(),
        attributes: None,
    }
}

fn counts(r: &ImportUsersResponse) -> (u32, u32, u32, u32) {
    (r.created, r.updated, r.unchanged, r.rejected)
}

#[tokio::test(flavor = "multi_thread")]
async fn users_come_in_from_the_directory_once_and_refusals_are_clear() {
    let (stack, slapd) = tokio::join!(Stack::start(StackOptions::default()), SlapdServer::start(LDIF));
    let (stack, slapd) = (stack.expect("stack starts"), slapd.expect("slapd starts"));
    let mut acme = Tenant::create(&stack, "Acme").await.unwrap();
    let admin = &mut acme.admin;

    let first = admin
        .import_ldap(import(&acme.provider_id, &slapd.url(), READER_PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts(&first), (3, 0, 0, 1), "{first:#?}");
    let carol = first.rows.iter().find(|r| r.outcome == "rejected").unwrap();
    assert!(
        carol.reason.contains("cn=Carol Example,ou=people,dc=example,dc=org")
            && carol.reason.contains("no sAMAccountName attribute"),
        "{carol:?}"
    );
    let ann = admin
        .get_user(GetUserRequest {
            provider_id: acme.provider_id.clone(),
            user: "ann".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ann.display_name, "Ann Example");
    assert_eq!(ann.email, "ann@example.org");
    assert_eq!(ann.phone, "+155******01", "masked; the directory had +1 (555) 123-0001");
    let bob = admin
        .get_user(GetUserRequest {
            provider_id: acme.provider_id.clone(),
            user: "bob".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob.phone, "+155******02", "telephoneNumber is the fallback");

    // Again: nothing changes.
    let again = admin
        .import_ldap(import(&acme.provider_id, &slapd.url(), READER_PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts(&again), (0, 0, 3, 1), "{again:#?}");

    // Another attribute mapping (OpenLDAP's uid) into another provider.
    let mut globex = Tenant::create(&stack, "Globex").await.unwrap();
    let by_uid = globex
        .admin
        .import_ldap(ImportLdapRequest {
            attributes: Some(LdapAttributes {
                username: "uid".into(),
                ..Default::default()
            }),
            ..import(&globex.provider_id, &slapd.url(), READER_PASSWORD)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts(&by_uid), (1, 0, 0, 3), "{by_uid:#?}");
    assert_eq!(
        by_uid.rows.iter().find(|r| r.outcome == "created").unwrap().username,
        "aexample"
    );

    // A wrong bind password, and a directory that is not there.
    let wrong = admin
        .import_ldap(import(&acme.provider_id, &slapd.url(), "not-the-password"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    assert!(
        wrong.message().starts_with("ldap_bind_failed:") && wrong.message().contains("invalidCredentials (49)"),
        "{}",
        wrong.message()
    );
    let nowhere = format!("ldap://127.0.0.1:{}", vigil_testkit::free_port());
    let down = admin
        .import_ldap(import(&acme.provider_id, &nowhere, READER_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable);
    assert!(down.message().contains("ldap_unreachable"), "{}", down.message());

    // The imports are audited, and the bind password is not in the log.
    let audit = admin
        .list_audit(ListAuditRequest {
            provider_id: acme.provider_id.clone(),
            action: "users_imported".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audit.entries.len(), 2, "{audit:#?}");
    assert!(audit.entries[0].detail.contains("source=ldap"));
    assert!(!format!("{audit:?}").contains(READER_PASSWORD));

    // The same import from the command line.
    let cli = tokio::process::Command::new(workspace_bin("vigil").unwrap())
        .args(["--json", "users", "import-ldap", "--provider", &acme.provider_id])
        .args(["--url", &slapd.url(), "--bind-dn", READER, "--base-dn", PEOPLE])
        .args(["--filter", "(objectClass=inetOrgPerson)"])
        .env("VIGIL_GATEWAY_URL", &stack.grpc_url)
        .env("VIGIL_ADMIN_TOKEN", &stack.admin_token)
        .env("VIGIL_LDAP_BIND_PASSWORD", READER_PASSWORD)
        .output()
        .await
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let report: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(report["unchanged"], 3, "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
}
