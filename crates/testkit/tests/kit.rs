//! Exercises the kit against real servers: it must work as root (CI) and
//! must leave nothing running.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use sqlx::Connection;
use vigil_testkit::{
    NatsServer, PgServer, ServiceProcess, free_port, free_udp_port, init_test_logging, wait_until, workspace_bin,
};

#[tokio::test]
async fn nats_jetstream_survives_stop_and_restart() -> anyhow::Result<()> {
    init_test_logging();
    let mut nats = NatsServer::start().await?;
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));

    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "KIT".into(),
        subjects: vec!["kit.>".into()],
        ..Default::default()
    })
    .await?;
    let ack = js.publish("kit.one", "hello".into()).await?.await?;
    assert_eq!(ack.stream, "KIT");
    assert_eq!(ack.sequence, 1);

    nats.stop();
    let down = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(nats.url())).await;
    assert!(matches!(down, Ok(Err(_))), "connecting to a stopped server must fail");

    nats.restart().await?;
    let fresh = jetstream::new(async_nats::connect(nats.url()).await?);
    let mut stream = fresh.get_stream("KIT").await?;
    assert_eq!(stream.info().await?.state.messages, 1, "same store dir after restart");

    // The first client reconnects to the same port by itself.
    let ack = wait_until(Duration::from_secs(15), "old client to publish again", || {
        let js = js.clone();
        async move {
            let ack = js.publish("kit.two", "again".into()).await?.await?;
            anyhow::Ok(Some(ack))
        }
    })
    .await?;
    assert_eq!(ack.sequence, 2);
    Ok(())
}

#[tokio::test]
async fn postgres_databases_are_separate() -> anyhow::Result<()> {
    init_test_logging();
    let pg = PgServer::start().await?;
    // Concurrent creation, as parallel tests sharing one server would do.
    let (a, b) = tokio::try_join!(pg.create_database("kit_a"), pg.create_database("kit_b"))?;
    assert_eq!(a, format!("postgres://postgres@127.0.0.1:{}/kit_a", pg.port()));
    assert_eq!(b, pg.url_for("kit_b"));
    assert!(pg.create_database("Bad-Name").await.is_err());

    let mut conn_a = sqlx::PgConnection::connect(&a).await?;
    let data_dir: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
        .fetch_one(&mut conn_a)
        .await?;
    assert!(data_dir.contains("vigil-pg-"), "our own cluster: {data_dir}");
    let mut conn_b = sqlx::PgConnection::connect(&b).await?;
    for conn in [&mut conn_a, &mut conn_b] {
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await?;
        assert_eq!(one, 1);
    }

    sqlx::raw_sql("CREATE TABLE only_in_a (id int)")
        .execute(&mut conn_a)
        .await?;
    let exists = "SELECT to_regclass('public.only_in_a') IS NOT NULL";
    let in_a: bool = sqlx::query_scalar(exists).fetch_one(&mut conn_a).await?;
    let in_b: bool = sqlx::query_scalar(exists).fetch_one(&mut conn_b).await?;
    assert!(in_a && !in_b, "databases must be distinct");

    // Connections still open on purpose: drop must not wait for them.
    drop(pg);
    let after = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn_a).await;
    assert!(after.is_err(), "server is gone after drop");
    Ok(())
}

#[tokio::test]
async fn service_process_kill_and_wait() -> anyhow::Result<()> {
    init_test_logging();
    let logs = tempfile::tempdir()?;
    let mut sleeper =
        ServiceProcess::spawn_with_args("sleeper", "/bin/sh".as_ref(), &["-c", "sleep 30"], &[], logs.path())?;
    assert!(sleeper.pid() > 0);
    sleeper.kill();
    let status = sleeper.wait_exit(Duration::from_secs(5)).await?;
    assert!(!status.success());
    Ok(())
}

#[tokio::test]
async fn service_process_exit_reports_log() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let envs = [("KIT_MSG".to_owned(), "boom from env".to_owned())];
    let mut failing = ServiceProcess::spawn_with_args(
        "failing",
        "/bin/sh".as_ref(),
        &["-c", "echo \"$KIT_MSG\" >&2; exit 3"],
        &envs,
        logs.path(),
    )?;
    let url = format!("http://127.0.0.1:{}/healthz", free_port());
    let err = failing
        .wait_http_ready(&url, Duration::from_secs(10))
        .await
        .err()
        .context("a process that exits is never ready")?;
    let msg = format!("{err:#}");
    if std::env::var("TEST_LOG").as_deref() != Ok("1") {
        assert!(msg.contains("boom from env"), "{msg}");
        assert_eq!(failing.log_path(), logs.path().join("failing.log"));
    }
    assert!(failing.wait_exit(Duration::from_secs(1)).await?.code() == Some(3));
    Ok(())
}

#[tokio::test]
async fn service_process_drop_stops_it() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let sleeper = ServiceProcess::spawn_with_args(
        "sleeper",
        "/bin/sh".as_ref(),
        &["-c", "exec sleep 30"],
        &[],
        logs.path(),
    )?;
    let proc_dir = format!("/proc/{}", sleeper.pid());
    assert!(std::path::Path::new(&proc_dir).exists());
    drop(sleeper);
    assert!(!std::path::Path::new(&proc_dir).exists(), "reaped on drop");
    Ok(())
}

#[tokio::test]
async fn wait_until_reports_what() {
    let mut n = 0;
    let got = wait_until(Duration::from_secs(2), "third call", || {
        n += 1;
        let v = n;
        async move { (v >= 3).then_some(v) }
    })
    .await;
    assert_eq!(got.ok(), Some(3));

    let err = wait_until(Duration::from_millis(120), "the SMS", || async { None::<()> })
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("waiting for the SMS"), "{err}");
}

#[test]
fn ports_and_missing_bin() {
    assert_ne!(free_port(), free_port());
    assert_ne!(free_udp_port(), 0);
    let err = workspace_bin("no-such-vigil-bin")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("cargo build --workspace --bins"), "{err}");
}
