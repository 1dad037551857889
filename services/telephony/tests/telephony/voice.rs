//! Voice calls end to end: the simulated phone answers (or not), presses
//! keys through the signed TwiML flow, and the answer reaches the bus.

use std::time::Duration;

use vigil_carrier_sim::control::{CallEntry, VoiceAction, VoiceBehaviour};
use vigil_proto::events::VoiceMode;
use vigil_telephony::VOICE_PATH;

use super::*;

fn call(number: &str, mode: VoiceMode) -> DeliveryRequested {
    DeliveryRequested {
        channel: Channel::Voice.into(),
        voice_mode: mode.into(),
        ..Stack::request(number, "This is Vigil. Someone is signing in as ann.")
    }
}

impl Stack {
    async fn set_voice(&self, number: &str, action: VoiceAction, digits: &str) -> anyhow::Result<()> {
        let behaviour = VoiceBehaviour {
            action,
            digits: digits.into(),
            duration_seconds: 17,
        };
        self.http
            .put(format!("{}/sim/phones/{}/voice", self.sim, urlencode(number)))
            .json(&behaviour)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn calls(&self, number: &str) -> anyhow::Result<Vec<CallEntry>> {
        let url = format!("{}/sim/calls/{}", self.sim, urlencode(number));
        Ok(self.http.get(url).send().await?.error_for_status()?.json().await?)
    }
}

/// Places a call to a phone behaving as told and returns the answer event.
async fn answered_call(
    stack: &Stack,
    number: &str,
    mode: VoiceMode,
    digits: &str,
) -> anyhow::Result<(DeliveryRequested, DeliveryAnswered)> {
    stack.set_voice(number, VoiceAction::Answer, digits).await?;
    let request = call(number, mode);
    stack.send(&request).await?;
    let answer = stack.wait_answer(&request.delivery_id).await?;
    assert_eq!(answer.challenge_id, request.challenge_id);
    assert_eq!(answer.channel(), Channel::Voice);
    assert_eq!(answer.from, number);
    Ok((request, answer))
}

#[tokio::test]
async fn press_pound_pin_and_fraud_answer_the_call() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_voice_modes", Duration::from_millis(20)).await?;

        let (approve, answer) = answered_call(&stack, "+15551240001", VoiceMode::PressPound, "#").await?;
        assert_eq!((answer.kind(), answer.body.as_str()), (AnswerKind::Approve, ""));

        let (pin, answer) = answered_call(&stack, "+15551240002", VoiceMode::Pin, "1234#").await?;
        assert_eq!((answer.kind(), answer.body.as_str()), (AnswerKind::Pin, "1234"));

        let (fraud, answer) = answered_call(&stack, "+15551240003", VoiceMode::PressPound, "0#").await?;
        assert_eq!((answer.kind(), answer.body.as_str()), (AnswerKind::Fraud, ""));
        let (pin_fraud, answer) = answered_call(&stack, "+15551240004", VoiceMode::Pin, "0#").await?;
        assert_eq!(answer.kind(), AnswerKind::Fraud);

        for request in [&approve, &pin, &fraud, &pin_fraud] {
            stack
                .wait_status(&request.delivery_id, DeliveryState::Delivered)
                .await?;
        }
        stack.quiesce().await?;
        for request in [&approve, &pin, &fraud, &pin_fraud] {
            let states: Vec<_> = stack
                .statuses(&request.delivery_id)
                .iter()
                .map(DeliveryStatus::state)
                .collect();
            assert_eq!(states, [DeliveryState::Sent, DeliveryState::Delivered]);
            let usage = stack.usage_of(&request.delivery_id);
            assert_eq!(usage.len(), 1, "one usage event per call");
            assert_eq!(usage[0].voice_seconds, 17);
            assert_eq!(usage[0].sms_segments, 0);
            assert_eq!(usage[0].channel(), Channel::Voice);
            assert_eq!(usage[0].destination_country, "US");
            assert_eq!(usage[0].carrier, "twilio");
        }
        assert_eq!(stack.answers().len(), 4, "one answer per call");

        // The phone heard the sentence and the prompt, then goodbye.
        let calls = stack.calls("+15551240002").await?;
        assert_eq!(calls.len(), 1);
        let heard = calls[0].heard.join(" | ");
        assert!(heard.contains("signing in as ann"), "{heard}");
        assert!(heard.contains("Enter your PIN"), "{heard}");
        assert!(heard.contains("Goodbye"), "{heard}");
        assert_eq!((calls[0].twiml_status, calls[0].gather_status), (Some(200), Some(200)));
        assert_eq!(calls[0].status_callback_status, Some(204));
        let fraud_call = stack.calls("+15551240003").await?;
        assert!(fraud_call[0].heard.join(" ").contains("reported as fraud"));

        // Callbacks are recorded, never with the digits.
        let details: Vec<(String, String)> =
            sqlx::query_as("SELECT kind, status FROM carrier_callbacks WHERE delivery_id = $1 ORDER BY received_at")
                .bind(DeliveryId::parse(&pin.delivery_id)?.as_uuid())
                .fetch_all(&stack.pool)
                .await?;
        let kinds: Vec<_> = details.iter().map(|(k, s)| format!("{k}:{s}")).collect();
        assert_eq!(
            kinds,
            ["call_answered:in-progress", "call_gather:pin", "call_status:completed"]
        );
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn unanswered_calls_fail_with_the_reason() -> anyhow::Result<()> {
    local(async {
        // No ringing: the call's end races the commit of its acceptance, and
        // `sent` must still come first, once.
        let stack = Stack::start("telephony_voice_failures", Duration::ZERO).await?;
        let cases = [
            ("+15551240011", VoiceAction::NoAnswer, "", "no-answer", 0),
            ("+15551240012", VoiceAction::Busy, "", "busy", 0),
            ("+15551240013", VoiceAction::Fail, "", "failed", 0),
            ("+15551240014", VoiceAction::HangUp, "", "hangup-before-input", 17),
            ("+15551240015", VoiceAction::Answer, "", "no-input", 17),
            ("+15551240016", VoiceAction::Answer, "5#", "invalid-input", 17),
        ];
        let mut requests = Vec::new();
        for (number, action, digits, _, _) in &cases {
            stack.set_voice(number, *action, digits).await?;
            let request = call(number, VoiceMode::PressPound);
            stack.send(&request).await?;
            requests.push(request);
        }
        for (request, (_, _, _, reason, _)) in requests.iter().zip(&cases) {
            let failed = stack.wait_status(&request.delivery_id, DeliveryState::Failed).await?;
            assert_eq!(failed.error, *reason);
            assert_eq!(failed.channel(), Channel::Voice);
        }
        stack.quiesce().await?;
        assert!(stack.answers().is_empty(), "nobody answered");
        for (request, (_, _, _, _, seconds)) in requests.iter().zip(&cases) {
            let states: Vec<_> = stack
                .statuses(&request.delivery_id)
                .iter()
                .map(DeliveryStatus::state)
                .collect();
            assert_eq!(states, [DeliveryState::Sent, DeliveryState::Failed]);
            let usage = stack.usage_of(&request.delivery_id);
            assert_eq!(usage.len(), 1);
            assert_eq!(usage[0].voice_seconds, *seconds);
        }
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn voice_webhooks_check_signatures_and_ignore_repeats() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_voice_webhooks", Duration::from_millis(20)).await?;
        let number = "+15551240021";
        let (request, _) = answered_call(&stack, number, VoiceMode::PressPound, "#").await?;
        stack
            .wait_status(&request.delivery_id, DeliveryState::Delivered)
            .await?;
        let gather = format!("{VOICE_PATH}/{}/gather", request.delivery_id);
        let status = format!("{VOICE_PATH}/{}/status", request.delivery_id);
        let fraud = [("CallSid", "CAx"), ("Digits", "0"), ("FinishedOnKey", "#")];

        // Forged: wrong token, or signed for another delivery's URL.
        let url = stack.webhook_url(&gather);
        let response = stack
            .post_webhook(&gather, &fraud, Some(sign("wrong-token", &url, &fraud)))
            .await?;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let other = stack.webhook_url(&format!("{VOICE_PATH}/{}/gather", DeliveryId::new()));
        let response = stack
            .post_webhook(&gather, &fraud, Some(sign(AUTH_TOKEN, &other, &fraud)))
            .await?;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        // A repeated (signed) gather after the answer changes nothing.
        let response = stack
            .post_webhook(&gather, &fraud, Some(sign(AUTH_TOKEN, &url, &fraud)))
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await?.contains("<Hangup/>"));
        // A late, contradicting status changes nothing either.
        let busy = [("CallSid", "CAx"), ("CallStatus", "busy")];
        assert_eq!(stack.post_signed(&status, &busy).await?, StatusCode::NO_CONTENT);

        // Unknown deliveries and bad input.
        let unknown = format!("{VOICE_PATH}/{}/status", DeliveryId::new());
        assert_eq!(stack.post_signed(&unknown, &busy).await?, StatusCode::NOT_FOUND);
        assert_eq!(
            stack.post_signed(&format!("{VOICE_PATH}/not-an-id"), &busy).await?,
            StatusCode::NOT_FOUND
        );
        let no_status = [("CallSid", "CAx")];
        assert_eq!(stack.post_signed(&status, &no_status).await?, StatusCode::BAD_REQUEST);
        let bad_duration = [("CallSid", "CAx"), ("CallStatus", "completed"), ("CallDuration", "x")];
        assert_eq!(
            stack.post_signed(&status, &bad_duration).await?,
            StatusCode::BAD_REQUEST
        );

        stack.quiesce().await?;
        assert_eq!(stack.answers().len(), 1);
        let states: Vec<_> = stack
            .statuses(&request.delivery_id)
            .iter()
            .map(DeliveryStatus::state)
            .collect();
        assert_eq!(states, [DeliveryState::Sent, DeliveryState::Delivered]);
        assert_eq!(stack.usage_of(&request.delivery_id).len(), 1);
        stack.stop().await
    })
    .await
}
