//! Two-way SMS keywords and SMS usage.

use std::time::Duration;

use super::*;

impl Stack {
    async fn reply(&self, number: &str, body: &str) -> anyhow::Result<ReplyResponse> {
        Ok(self
            .http
            .post(format!("{}/sim/phones/{}/reply", self.sim, urlencode(number)))
            .json(&ReplyRequest {
                body: body.into(),
                to: None,
            })
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

#[tokio::test]
async fn replies_are_keywords_or_codes() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_sms_keywords", Duration::from_millis(20)).await?;
        let cases = [
            ("+15551250001", "y", AnswerKind::Approve),
            ("+15551250002", "No.", AnswerKind::Deny),
            ("+15551250003", "FRAUD", AnswerKind::Fraud),
            ("+15551250004", "0", AnswerKind::Fraud),
            ("+15551250005", "314159", AnswerKind::Code),
        ];
        for (number, reply, kind) in cases {
            let request = DeliveryRequested {
                expect_reply: true,
                ..Stack::request(number, "Reply YES to approve, NO to deny, FRAUD if it was not you.")
            };
            stack.send(&request).await?;
            stack.wait_inbox(number, 1).await?;
            assert_eq!(stack.reply(number, reply).await?.webhook_status, 200);
            let answer = stack.wait_answer(&request.delivery_id).await?;
            assert_eq!(answer.kind(), kind, "{reply}");
            assert_eq!(answer.body, reply, "the reply is forwarded as sent");
            assert_eq!(answer.channel(), Channel::Sms);
        }
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn sms_usage_is_reported_once_with_segments() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_sms_usage", Duration::from_millis(20)).await?;
        let short = Stack::request("+447700900123", "Your code is 271828");
        // 200 GSM characters: two parts.
        let long = Stack::request("+15551250011", &"a".repeat(200));
        for request in [&short, &long] {
            stack.send(request).await?;
            stack
                .wait_status(&request.delivery_id, DeliveryState::Delivered)
                .await?;
        }
        // The same request again, as a producer retry would.
        stack.send(&short).await?;
        stack.quiesce().await?;
        let usage = stack.usage_of(&short.delivery_id);
        assert_eq!(usage.len(), 1, "exactly once per delivery");
        assert_eq!(usage[0].sms_segments, 1);
        assert_eq!(usage[0].destination_country, "GB");
        assert_eq!(usage[0].carrier, "twilio");
        assert_eq!(usage[0].challenge_id, short.challenge_id);
        assert!(usage[0].occurred_at.is_some());
        let usage = stack.usage_of(&long.delivery_id);
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].sms_segments, usage[0].voice_seconds), (2, 0));
        let providers: Vec<_> = stack.usage.of::<TelephonyUsage>().into_iter().map(|(p, _)| p).collect();
        assert!(providers.iter().all(|p| *p == stack.provider.to_string()));
        stack.stop().await
    })
    .await
}
