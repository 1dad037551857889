//! Retries with backoff, failover to the second carrier, and the attempt log.

use std::time::Duration;

use vigil_proto::events::VoiceMode;

use super::*;

impl Stack {
    async fn arm(&self, sim: &str, fail_next: u32, status: u16, api: FaultApi) -> anyhow::Result<()> {
        self.http
            .post(format!("{sim}/sim/faults"))
            .json(&Faults { fail_next, status, api })
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// `(attempt, carrier, outcome)` of each try at a delivery.
    async fn attempts(&self, delivery_id: &str) -> anyhow::Result<Vec<(i32, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT attempt, carrier, outcome FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(DeliveryId::parse(delivery_id)?.as_uuid())
        .fetch_all(&self.pool)
        .await?)
    }
}

fn tries(list: &[(i32, &str, &str)]) -> Vec<(i32, String, String)> {
    list.iter()
        .map(|(n, c, o)| (*n, (*c).to_owned(), (*o).to_owned()))
        .collect()
}

#[tokio::test]
async fn calls_and_pushes_are_retried_after_5xx() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_retry_calls", Duration::from_millis(20)).await?;
        stack.arm(&stack.sim, 2, 503, FaultApi::Calls).await?;
        let number = "+15551260001";
        let request = DeliveryRequested {
            channel: Channel::Voice.into(),
            voice_mode: VoiceMode::PressPound.into(),
            ..Stack::request(number, "Vigil sign-in")
        };
        stack.send(&request).await?;
        let answer = stack.wait_answer(&request.delivery_id).await?;
        assert_eq!(answer.kind(), AnswerKind::Approve);
        assert_eq!(
            stack.attempts(&request.delivery_id).await?,
            tries(&[
                (1, "twilio", "failed"),
                (2, "twilio", "failed"),
                (3, "twilio", "accepted")
            ])
        );
        assert_eq!(stack.delivery_row(&request.delivery_id).await?.1, 3);
        let stats = stack.sim_stats().await?;
        assert_eq!((stats.requests_failed, stats.calls_placed), (2, 1));
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn a_carrier_that_stays_down_fails_over_to_the_next() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start_with(
            "telephony_failover",
            Options {
                status_delay: Duration::from_millis(20),
                backup: true,
                send_attempts: 2,
                ..Options::default()
            },
        )
        .await?;
        let Some(backup) = stack.backup.clone() else {
            bail!("the stack has no backup carrier");
        };
        // The primary stays down for both tries; the backup takes the SMS.
        stack.arm(&stack.sim, 10, 503, FaultApi::Any).await?;
        let number = "+15551260011";
        let request = Stack::request(number, "code 662607");
        stack.send(&request).await?;
        let delivered = stack
            .wait_status(&request.delivery_id, DeliveryState::Delivered)
            .await?;
        assert_eq!(delivered.carrier, "backup", "signed by the backup's token, accepted");
        let inbox: Vec<InboxEntry> = stack
            .http
            .get(format!("{backup}/sim/inbox/{}", urlencode(number)))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].from, BACKUP_FROM);
        assert!(stack.inbox(number).await?.is_empty(), "the primary sent nothing");
        assert_eq!(
            stack.attempts(&request.delivery_id).await?,
            tries(&[
                (1, "primary", "failed"),
                (2, "primary", "failed"),
                (3, "backup", "accepted")
            ])
        );

        // A reply through the backup's inbound webhook is verified with its token.
        let reply: ReplyResponse = stack
            .http
            .post(format!("{backup}/sim/phones/{}/reply", urlencode(number)))
            .json(&ReplyRequest {
                body: "YES".into(),
                to: None,
            })
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(reply.webhook_status, 200);
        assert_eq!(
            stack.wait_answer(&request.delivery_id).await?.kind(),
            AnswerKind::Approve
        );

        // Calls fail over too, and the call flow is driven by the backup.
        stack.arm(&stack.sim, 10, 500, FaultApi::Any).await?;
        let voice = DeliveryRequested {
            channel: Channel::Voice.into(),
            ..Stack::request("+15551260012", "Vigil sign-in")
        };
        stack.send(&voice).await?;
        assert_eq!(stack.wait_answer(&voice.delivery_id).await?.kind(), AnswerKind::Approve);
        stack.wait_status(&voice.delivery_id, DeliveryState::Delivered).await?;

        stack.quiesce().await?;
        let usage = stack.usage_of(&request.delivery_id);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].carrier, "backup");
        let usage = stack.usage_of(&voice.delivery_id);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].carrier, "backup");
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn a_redelivered_request_does_not_send_again() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_send_guard", Duration::from_millis(20)).await?;
        let number = "+15551260021";
        let request = Stack::request(number, "code 141421");
        let envelope = stack.wrap(&request);
        stack.publish(&envelope, &envelope.id).await?;
        stack.wait_status(&request.delivery_id, DeliveryState::Sent).await?;
        // As if the consumer crashed after the send and before acknowledging:
        // the same envelope again. The delivery consumer records no envelope
        // ids, so only the delivery's own state stops a second send.
        assert_eq!(
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM vigil_processed_events WHERE consumer = $1")
                .bind(DELIVERY_CONSUMER)
                .fetch_one(&stack.pool)
                .await?,
            0
        );
        stack.publish(&envelope, "redelivered").await?;

        // A try whose outcome was lost long ago is sent again (at-least-once).
        let lost = Stack::request("+15551260022", "code 173205");
        let id = DeliveryId::parse(&lost.delivery_id)?.as_uuid();
        sqlx::query(
            "INSERT INTO deliveries (id, provider_id, challenge_id, channel, destination, state, carrier) \
             VALUES ($1, $2, $3, 'sms', $4, 'queued', 'twilio')",
        )
        .bind(id)
        .bind(stack.provider.to_string())
        .bind(&lost.challenge_id)
        .bind(&lost.destination)
        .execute(&stack.pool)
        .await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, carrier, outcome, started_at) \
             VALUES ($1, 1, 'twilio', 'pending', now() - interval '1 hour')",
        )
        .bind(id)
        .execute(&stack.pool)
        .await?;
        stack.send(&lost).await?;
        stack.wait_status(&lost.delivery_id, DeliveryState::Sent).await?;

        stack.quiesce().await?;
        assert_eq!(stack.inbox(number).await?.len(), 1, "sent once");
        assert_eq!(
            stack
                .statuses(&request.delivery_id)
                .iter()
                .filter(|s| s.state() == DeliveryState::Sent)
                .count(),
            1
        );
        assert_eq!(
            stack.attempts(&lost.delivery_id).await?,
            tries(&[(1, "twilio", "unknown"), (2, "twilio", "accepted")])
        );
        stack.stop().await
    })
    .await
}

/// A carrier whose API accepts connections and never answers: each send
/// waits out the client's timeout.
async fn hanging_carrier() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok((url, task))
}

#[tokio::test]
async fn a_hanging_carrier_holds_no_database_connection() -> anyhow::Result<()> {
    local(async {
        let (carrier, hang) = hanging_carrier().await?;
        let stack = Stack::start_with(
            "telephony_hanging_carrier",
            Options {
                send_attempts: 1,
                database_max_connections: Some(1),
                carrier_url: Some(carrier),
                ..Options::default()
            },
        )
        .await?;
        let requests: Vec<_> = (0..3)
            .map(|i| Stack::request(&format!("+1555012{i:04}"), "Your code is 314159"))
            .collect();
        for request in &requests {
            stack.send(request).await?;
        }
        // One connection, three sends waiting on the carrier at once: each
        // recorded its try and gave the connection back before calling out.
        wait_until(PATIENCE, "three tries in flight", || async {
            let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE outcome = 'pending'")
                .fetch_one(&stack.pool)
                .await?;
            Ok((pending == 3).then_some(()))
        })
        .await?;
        // The status callbacks, inbound replies and readiness still get it.
        let ready = stack.http.get(format!("{}/readyz", stack.telephony)).send().await?;
        assert_eq!(ready.status(), StatusCode::OK, "{}", ready.text().await?);
        // The carrier goes away: every send fails, and each failure is recorded.
        hang.abort();
        for request in &requests {
            stack.wait_status(&request.delivery_id, DeliveryState::Failed).await?;
        }
        stack.stop().await
    })
    .await
}
