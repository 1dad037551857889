//! Push end to end: the simulator plays the push service and the device;
//! answers are signed with the device's Ed25519 key.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use vigil_carrier_sim::control::{DeviceAction, DeviceBehaviour, DeviceCreated, PushEntry};
use vigil_telephony::{PUSH_ANSWER_PATH, PUSH_SIGNATURE_HEADER};

use super::*;

impl Stack {
    async fn new_device(&self, action: DeviceAction, pick: Option<u32>) -> anyhow::Result<DeviceCreated> {
        Ok(self
            .http
            .post(format!("{}/sim/devices", self.sim))
            .json(&DeviceBehaviour {
                action,
                pick,
                ..Default::default()
            })
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn pushes(&self, device_id: &str) -> anyhow::Result<Vec<PushEntry>> {
        let url = format!("{}/sim/devices/{device_id}/pushes", self.sim);
        Ok(self.http.get(url).send().await?.error_for_status()?.json().await?)
    }

    /// POSTs a push answer signed with `key` (`None`: unsigned).
    async fn post_answer(&self, body: &str, key: Option<&SigningKey>) -> anyhow::Result<StatusCode> {
        let mut request = self
            .http
            .post(self.webhook_url(PUSH_ANSWER_PATH))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header(
                PUSH_SIGNATURE_HEADER,
                STANDARD.encode(key.sign(body.as_bytes()).to_bytes()),
            );
        }
        Ok(request.send().await?.status())
    }
}

fn push(token: &str, device_id: &str, public_key: Vec<u8>, choices: &[u32]) -> DeliveryRequested {
    DeliveryRequested {
        channel: Channel::Push.into(),
        device_id: device_id.into(),
        device_public_key: public_key,
        match_choices: choices.to_vec(),
        ..Stack::request(token, "Approve sign-in to Contoso VPN?")
    }
}

fn answer_body(delivery_id: &str, device_id: &str, answer: &str, matched: u32, timestamp: i64) -> String {
    serde_json::json!({
        "delivery_id": delivery_id,
        "device_id": device_id,
        "answer": answer,
        "matched_number": matched,
        "timestamp": timestamp,
    })
    .to_string()
}

#[tokio::test]
async fn devices_approve_deny_and_report_fraud_with_number_matching() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_push", Duration::from_millis(20)).await?;
        let cases = [
            (DeviceAction::Approve, Some(47), AnswerKind::Approve, 47),
            (DeviceAction::Deny, None, AnswerKind::Deny, 12),
            (DeviceAction::Fraud, Some(83), AnswerKind::Fraud, 83),
        ];
        for (action, pick, kind, matched) in cases {
            let device = stack.new_device(action, pick).await?;
            let key = STANDARD.decode(&device.public_key)?;
            let request = push(&device.token, &device.device_id, key, &[12, 47, 83]);
            stack.send(&request).await?;
            let answer = stack.wait_answer(&request.delivery_id).await?;
            assert_eq!(answer.kind(), kind);
            assert_eq!(answer.matched_number, matched);
            assert_eq!(answer.channel(), Channel::Push);
            assert_eq!(answer.from, device.device_id);
            assert_eq!(answer.challenge_id, request.challenge_id);

            let pushes = stack.pushes(&device.device_id).await?;
            assert_eq!(pushes.len(), 1);
            let data = &pushes[0].data;
            assert_eq!(data.get("match_choices").map(String::as_str), Some("12,47,83"));
            assert_eq!(data.get("delivery_id"), Some(&request.delivery_id));
            assert_eq!(data.get("text"), Some(&request.body));
            assert_eq!(data.get("callback_url"), Some(&stack.webhook_url(PUSH_ANSWER_PATH)));
            wait_until(PATIENCE, "the device to hear back", || async {
                let pushes = stack.pushes(&device.device_id).await.ok()?;
                pushes[0].answer_status
            })
            .await
            .map(|status| assert_eq!(status, 200))?;
            let sent = stack.wait_status(&request.delivery_id, DeliveryState::Sent).await?;
            assert_eq!(
                (sent.carrier.as_str(), sent.carrier_ref.as_str()),
                ("fcm", pushes[0].name.as_str())
            );
        }
        stack.quiesce().await?;
        assert_eq!(stack.answers().len(), 3);
        for (_, usage) in stack.usage.of::<TelephonyUsage>() {
            assert_eq!(usage.channel(), Channel::Push);
            assert_eq!((usage.sms_segments, usage.voice_seconds), (0, 0));
        }
        assert_eq!(stack.usage.of::<TelephonyUsage>().len(), 3, "one usage event per push");
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn forged_stale_expired_and_second_answers_are_refused() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_push_refusals", Duration::from_millis(20)).await?;
        // The device never answers by itself: this test posts its answers.
        let device = stack.new_device(DeviceAction::Ignore, None).await?;
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut request = push(
            &device.token,
            &device.device_id,
            key.verifying_key().to_bytes().to_vec(),
            &[],
        );
        request.expires_at = Some(vigil_proto::to_timestamp(SystemTime::now() + Duration::from_secs(120)));
        stack.send(&request).await?;
        stack.wait_status(&request.delivery_id, DeliveryState::Sent).await?;
        let now = stack.clock_now();
        let approve = answer_body(&request.delivery_id, &device.device_id, "approve", 0, now);

        let other_key = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            stack.post_answer(&approve, Some(&other_key)).await?,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(stack.post_answer(&approve, None).await?, StatusCode::UNAUTHORIZED);
        let signature = STANDARD.encode(key.sign(approve.as_bytes()).to_bytes());
        let tampered = approve.replace("approve", "deny");
        let response = stack
            .http
            .post(stack.webhook_url(PUSH_ANSWER_PATH))
            .header(PUSH_SIGNATURE_HEADER, signature)
            .body(tampered)
            .send()
            .await?;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "signature over other bytes"
        );
        let other_device = answer_body(&request.delivery_id, "dev_other", "approve", 0, now);
        assert_eq!(
            stack.post_answer(&other_device, Some(&key)).await?,
            StatusCode::UNAUTHORIZED
        );
        let stale = answer_body(&request.delivery_id, &device.device_id, "approve", 0, now - 301);
        assert_eq!(stack.post_answer(&stale, Some(&key)).await?, StatusCode::UNAUTHORIZED);
        let unknown = answer_body(&DeliveryId::new().to_string(), &device.device_id, "approve", 0, now);
        assert_eq!(stack.post_answer(&unknown, Some(&key)).await?, StatusCode::NOT_FOUND);
        assert_eq!(
            stack.post_answer("{not json", Some(&key)).await?,
            StatusCode::BAD_REQUEST
        );
        let odd = answer_body(&request.delivery_id, &device.device_id, "maybe", 0, now);
        assert_eq!(stack.post_answer(&odd, Some(&key)).await?, StatusCode::BAD_REQUEST);
        assert!(stack.answers().is_empty(), "nothing got through");

        // The real answer, then the same bytes again, then a different one.
        assert_eq!(stack.post_answer(&approve, Some(&key)).await?, StatusCode::OK);
        assert_eq!(stack.post_answer(&approve, Some(&key)).await?, StatusCode::OK);
        let deny = answer_body(&request.delivery_id, &device.device_id, "deny", 0, now);
        assert_eq!(stack.post_answer(&deny, Some(&key)).await?, StatusCode::CONFLICT);

        // An answer after the challenge expired.
        let late = push(
            &device.token,
            &device.device_id,
            key.verifying_key().to_bytes().to_vec(),
            &[],
        );
        stack.send(&late).await?;
        stack.wait_status(&late.delivery_id, DeliveryState::Sent).await?;
        stack.clock.advance(chrono::Duration::seconds(301));
        let now = stack.clock_now();
        let body = answer_body(&late.delivery_id, &device.device_id, "approve", 0, now);
        assert_eq!(stack.post_answer(&body, Some(&key)).await?, StatusCode::GONE);

        stack.quiesce().await?;
        let answers = stack.answers();
        assert_eq!(answers.len(), 1, "exactly one answer got through");
        assert_eq!(answers[0].kind(), AnswerKind::Approve);
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn unregistered_tokens_and_bad_keys_fail_the_delivery() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_push_failures", Duration::from_millis(20)).await?;
        let unregistered = push("no-such-token", "dev_x", vec![1; 32], &[]);
        stack.send(&unregistered).await?;
        let failed = stack
            .wait_status(&unregistered.delivery_id, DeliveryState::Failed)
            .await?;
        assert!(failed.error.contains("404"), "{}", failed.error);

        let short_key = push("tok", "dev_x", vec![1; 31], &[]);
        stack.send(&short_key).await?;
        let failed = stack.wait_status(&short_key.delivery_id, DeliveryState::Failed).await?;
        assert!(failed.error.contains("32-byte"), "{}", failed.error);
        stack.quiesce().await?;
        assert!(stack.usage.of::<TelephonyUsage>().is_empty(), "nothing was sent");
        stack.stop().await
    })
    .await
}
