//! Exactly once under SIGKILL: the real `vigil-billing` binary is killed in
//! the middle of a stream of usage events and restarted; totals stay exact.

use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use vigil_core::ProviderId;
use vigil_proto::v1;
use vigil_testkit::{ServiceProcess, free_port, wait_until};

use crate::support::{AUTH_SUBJECT, PATIENCE, Rng, Stack, TOKEN, authentication, utc};

const EVENTS: usize = 3000;

async fn ledger_rows(db: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM usage_ledger")
        .fetch_one(db)
        .await?)
}

#[tokio::test]
async fn totals_stay_exact_when_billing_is_killed_mid_stream() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let logs = tempfile::tempdir()?;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let envs = vec![
        ("VIGIL_HTTP_ADDR".to_owned(), format!("127.0.0.1:{port}")),
        ("VIGIL_DATABASE_URL".to_owned(), stack.db_url.clone()),
        ("VIGIL_NATS_URL".to_owned(), stack.nats.url()),
        ("VIGIL_API_TOKEN".to_owned(), TOKEN.to_owned()),
    ];
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_vigil-billing"));
    let mut billing = ServiceProcess::spawn("billing", &binary, &envs, logs.path())?;
    billing.wait_http_ready(&format!("{base}/readyz"), PATIENCE).await?;

    let a = ProviderId::new().to_string();
    stack.create_provider(&a, v1::UsageModel::PerAuthentication).await?;
    let sent = utc(2025, 3, 10, 0, 0, 0)?;
    let mut rng = Rng::new(42);
    let envelopes: Vec<_> = (0..EVENTS)
        .map(|i| {
            let at = utc(2025, 3, 1 + u32::try_from(i % 28).unwrap_or(0), 12, 0, 0)?;
            Ok(authentication(&a, Some(at), sent))
        })
        .collect::<anyhow::Result<_>>()?;

    // Publish in the background, so billing is consuming while it dies.
    let js = stack.js.clone();
    let mut stream: Vec<(String, _)> = envelopes.iter().map(|e| (e.id.clone(), e.clone())).collect();
    // Some redeliveries, under fresh message ids, spread through the stream.
    let again: Vec<_> = envelopes
        .iter()
        .filter(|_| rng.chance(5))
        .map(|e| (format!("again-{}", e.id), e.clone()))
        .collect();
    let extra = again.len();
    stream.extend(again);
    rng.shuffle(&mut stream);
    let publisher = tokio::spawn(async move {
        use prost::Message;
        let mut last = 0;
        for (msg_id, envelope) in stream {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", msg_id.as_str());
            let ack = js
                .publish_with_headers(AUTH_SUBJECT, headers, envelope.encode_to_vec().into())
                .await?
                .await?;
            last = ack.sequence;
        }
        anyhow::Ok(last)
    });

    let db = stack.db().await?;
    wait_until(PATIENCE, "billing to be part-way through the stream", || async {
        anyhow::Ok((ledger_rows(&db).await? >= 300).then_some(()))
    })
    .await?;
    billing.kill();
    let status = billing.wait_exit(Duration::from_secs(10)).await?;
    assert!(!status.success(), "billing was killed, not stopped: {status}");
    let at_kill = ledger_rows(&db).await?;
    let last = publisher.await??;
    assert!(
        at_kill < i64::try_from(EVENTS)?,
        "billing was killed after the stream, not in the middle ({at_kill} rows)"
    );

    let mut billing = ServiceProcess::spawn("billing-restarted", &binary, &envs, logs.path())?;
    billing.wait_http_ready(&format!("{base}/readyz"), PATIENCE).await?;
    stack.wait_drained("VIGIL_USAGE", "billing-usage", last).await?;

    assert_eq!(
        ledger_rows(&db).await?,
        i64::try_from(EVENTS)?,
        "{extra} redeliveries counted once"
    );
    let response = stack
        .http
        .get(format!("{base}/v1/providers/{a}/usage"))
        .query(&[("from", "2025-03-01T00:00:00Z"), ("to", "2025-04-01T00:00:00Z")])
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["billable_authentications"], i64::try_from(EVENTS)?, "{body}");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM vigil_dead_letters")
        .fetch_one(&db)
        .await
        .context("dead letters")?;
    assert_eq!(dead, 0);
    billing.terminate();
    billing.wait_exit(PATIENCE).await?;
    Ok(())
}
