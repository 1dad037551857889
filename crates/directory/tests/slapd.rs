//! Against a real OpenLDAP `slapd` started by the test kit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_directory::{
    Directory, DirectoryError, Entry, Mapping, PasswordCheck, SearchQuery, Server, UserBind, search_users,
};
use vigil_testkit::{SlapdOptions, SlapdServer};

const READER: &str = "cn=reader,dc=example,dc=org";

/// A reader account (not root: limits apply to it) and `n` AD-style users.
fn directory(n: usize) -> String {
    let mut ldif = format!(
        "dn: {READER}\nobjectClass: person\ncn: reader\nsn: reader\nuserPassword: reader-password\n\n\
         dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n"
    );
    for i in 1..=n {
        ldif.push_str(&format!(
            "dn: cn=User {i},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: extensibleObject\n\
             cn: User {i}\nsn: User\nsAMAccountName: user{i}\ndisplayName: User {i}\nmobile: +1555123{i:04}\n\
             mail: user{i}@example.org\n\n"
        ));
    }
    ldif
}

fn query(password: &str) -> SearchQuery {
    SearchQuery {
        bind_dn: READER.into(),
        bind_password: password.to_owned().into(),
        base_dn: "ou=people,dc=example,dc=org".into(),
        filter: "(objectClass=inetOrgPerson)".into(),
        mapping: Mapping::default(),
    }
}

fn server(slapd: &SlapdServer) -> Server {
    Server::new(slapd.url(), Duration::from_secs(10))
}

#[tokio::test]
async fn a_paged_search_reads_past_the_size_limit() {
    let slapd = SlapdServer::start_with(
        SlapdOptions {
            size_limit: Some(3),
            ..Default::default()
        },
        &directory(7),
    )
    .await
    .unwrap();
    let mut entries = search_users(&server(&slapd), &query("reader-password")).await.unwrap();
    entries.sort_by(|a, b| a.username.cmp(&b.username));
    assert_eq!(entries.len(), 7, "{}", slapd.log_tail(20));
    assert_eq!(
        entries[0],
        Entry {
            dn: "cn=User 1,ou=people,dc=example,dc=org".into(),
            username: Some("user1".into()),
            display_name: "User 1".into(),
            phone: "+15551230001".into(),
            email: "user1@example.org".into(),
        }
    );
}

#[tokio::test]
async fn refusals_say_what_went_wrong() {
    let slapd = SlapdServer::start(&directory(1)).await.unwrap();
    let wrong = search_users(&server(&slapd), &query("not-the-password"))
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong, DirectoryError::BindRefused { code: 49, dn, .. } if dn == READER),
        "{wrong:?}"
    );
    assert!(wrong.to_string().contains("invalidCredentials"), "{wrong}");

    let empty = search_users(&server(&slapd), &query("")).await.unwrap_err();
    assert!(matches!(empty, DirectoryError::InvalidSettings(_)), "{empty:?}");

    let missing_base = SearchQuery {
        base_dn: "ou=nowhere,dc=example,dc=org".into(),
        ..query("reader-password")
    };
    let missing = search_users(&server(&slapd), &missing_base).await.unwrap_err();
    assert!(
        matches!(missing, DirectoryError::SearchFailed { code: 32, .. }),
        "{missing:?}"
    );

    let bad_filter = SearchQuery {
        filter: "(objectClass=".into(),
        ..query("reader-password")
    };
    let bad = search_users(&server(&slapd), &bad_filter).await.unwrap_err();
    assert!(matches!(bad, DirectoryError::InvalidSettings(_)), "{bad:?}");

    let nobody = Server::new(
        format!("ldap://127.0.0.1:{}", vigil_testkit::free_port()),
        Duration::from_secs(5),
    );
    let down = search_users(&nobody, &query("reader-password")).await.unwrap_err();
    assert_eq!(down.code(), "ldap_unreachable", "{down:?}");

    let http = Server::new("http://127.0.0.1:1", Duration::from_secs(5));
    let scheme = search_users(&http, &query("reader-password")).await.unwrap_err();
    assert!(matches!(scheme, DirectoryError::InvalidSettings(_)), "{scheme:?}");
}

#[tokio::test]
async fn passwords_are_checked_by_binding_as_the_user() {
    let ldif = format!(
        "{}dn: uid=Ann.Example,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: extensibleObject\n\
         uid: Ann.Example\ncn: Ann\nsn: Example\nuserPassword: ann-directory-password\n\n",
        directory(0)
    );
    let slapd = SlapdServer::start(&ldif).await.unwrap();
    let server = server(&slapd);
    let template = UserBind::Template("uid={username},ou=people,dc=example,dc=org".into());
    let search = UserBind::Search {
        bind_dn: READER.into(),
        bind_password: "reader-password".to_owned().into(),
        base_dn: "ou=people,dc=example,dc=org".into(),
        // slapd's copy of the AD schema gives sAMAccountName no equality rule; uid has one.
        username_attribute: "uid".into(),
    };
    // A new directory (and so new connections) per check here; the next
    // test checks what a kept connection remembers.
    let check = |how: &UserBind, user: &str, password: &str| {
        let directory = Directory::new(server.clone(), how.clone()).unwrap();
        let (user, password) = (user.to_owned(), password.to_owned());
        async move { directory.check_password(&user, &password.into()).await }
    };
    assert_eq!(
        check(&template, "Ann.Example", "ann-directory-password").await.unwrap(),
        PasswordCheck::Accepted
    );
    assert_eq!(
        check(&template, "Ann.Example", "wrong").await.unwrap(),
        PasswordCheck::Refused
    );
    // An empty password would be an unauthenticated bind, which LDAP accepts.
    assert_eq!(
        check(&template, "Ann.Example", "").await.unwrap(),
        PasswordCheck::Refused
    );
    assert_eq!(check(&template, "nobody", "x").await.unwrap(), PasswordCheck::Refused);
    assert_eq!(
        check(&search, "ann.example", "ann-directory-password").await.unwrap(),
        PasswordCheck::Accepted
    );
    assert_eq!(
        check(&search, "ann.example", "wrong").await.unwrap(),
        PasswordCheck::Refused
    );
    assert_eq!(check(&search, "nobody", "x").await.unwrap(), PasswordCheck::Refused);
    let bad_service = UserBind::Search {
        bind_dn: READER.into(),
        bind_password: "not-it".to_owned().into(),
        base_dn: "ou=people,dc=example,dc=org".into(),
        username_attribute: "uid".into(),
    };
    let refused = check(&bad_service, "ann.example", "ann-directory-password")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "ldap_bind_failed", "{refused}");
}

/// Checks share kept-open connections: a connection that just bound as one
/// user must not let the next check pass on that identity, whatever it binds.
#[tokio::test]
async fn a_kept_connection_never_vouches_for_the_next_login() {
    let person = |uid: &str, password: &str| {
        format!(
            "dn: uid={uid},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: extensibleObject\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {password}\n\n"
        )
    };
    let ldif = format!("{}{}{}", directory(0), person("ann", "ann-pw"), person("bob", "bob-pw"));
    let slapd = SlapdServer::start(&ldif).await.unwrap();
    for how in [
        UserBind::Template("uid={username},ou=people,dc=example,dc=org".into()),
        UserBind::Search {
            bind_dn: READER.into(),
            bind_password: "reader-password".to_owned().into(),
            base_dn: "ou=people,dc=example,dc=org".into(),
            username_attribute: "uid".into(),
        },
    ] {
        let directory = Directory::new(server(&slapd), how).unwrap();
        let directory = &directory;
        let check = |user: &'static str, password: &'static str| async move {
            directory.check_password(user, &password.to_owned().into()).await
        };
        // One at a time, so each check takes the connection the last one left.
        assert_eq!(check("ann", "ann-pw").await.unwrap(), PasswordCheck::Accepted);
        assert_eq!(check("bob", "ann-pw").await.unwrap(), PasswordCheck::Refused);
        assert_eq!(check("ann", "wrong").await.unwrap(), PasswordCheck::Refused);
        assert_eq!(check("bob", "bob-pw").await.unwrap(), PasswordCheck::Accepted);
        assert_eq!(check("nobody", "bob-pw").await.unwrap(), PasswordCheck::Refused);
        // At once, on as many connections as it takes: each gets its own answer.
        let verdicts = futures::future::join_all((0..16).map(|i| {
            let (user, password) = if i % 2 == 0 {
                ("ann", "ann-pw")
            } else {
                ("bob", "ann-pw")
            };
            check(user, password)
        }))
        .await;
        for (i, verdict) in verdicts.into_iter().enumerate() {
            let expected = if i % 2 == 0 {
                PasswordCheck::Accepted
            } else {
                PasswordCheck::Refused
            };
            assert_eq!(verdict.unwrap(), expected, "check {i}");
        }
    }
}
