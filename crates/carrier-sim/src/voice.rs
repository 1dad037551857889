//! A simulated call: the phone rings, then answers (fetching the TwiML and
//! pressing its keys through the gather action), or does not; the call ends
//! with a signed status callback carrying `CallDuration`.

use vigil_twilio::{API_VERSION, CallStatusCallback};

use crate::control::{VoiceAction, VoiceBehaviour};
use crate::state::SimState;
use crate::{twiml, webhook};

/// What the simulator needs to play one call.
pub struct Call {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub url: String,
    pub status_callback: Option<String>,
}

pub fn spawn(state: SimState, call: Call) {
    tokio::spawn(async move {
        // Ringing.
        tokio::time::sleep(state.config().status_delay).await;
        let behaviour = state.voice_behaviour(&call.to);
        let (status, seconds) = play(&state, &call, &behaviour).await;
        finish(&state, &call, status, seconds).await;
    });
}

/// Plays the call; returns its final status and connected seconds.
async fn play(state: &SimState, call: &Call, behaviour: &VoiceBehaviour) -> (&'static str, u32) {
    match behaviour.action {
        VoiceAction::NoAnswer => return ("no-answer", 0),
        VoiceAction::Busy => return ("busy", 0),
        VoiceAction::Fail => return ("failed", 0),
        VoiceAction::Answer | VoiceAction::HangUp => {}
    }
    state.update_call(&call.sid, |c| c.status = "in-progress".to_owned());
    let answered = ("completed", behaviour.duration_seconds.max(1));
    let Some((status, xml)) = post(state, call, &call.url, Vec::new()).await else {
        return answered;
    };
    let script = twiml::parse(&xml);
    state.update_call(&call.sid, |c| {
        c.twiml_status = Some(status);
        c.heard.extend(script.said.iter().cloned());
    });
    if behaviour.action == VoiceAction::HangUp {
        return answered;
    }
    let Some(gather) = script.gather else {
        return answered;
    };
    let finish_on_key = gather.get("finishOnKey").map_or("#", String::as_str);
    let num_digits = gather
        .get("numDigits")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let on_empty = gather.get("actionOnEmptyResult").is_some_and(|v| v == "true");
    let (digits, finished_on) = press(&behaviour.digits, finish_on_key, num_digits);
    if digits.is_empty() && finished_on.is_empty() && !on_empty {
        // Silence: Twilio falls through past the gather and hangs up.
        return answered;
    }
    let Some(action) = gather.get("action").and_then(|a| resolve(&call.url, a)) else {
        return answered;
    };
    let extra = vec![
        ("Digits".to_owned(), digits.clone()),
        ("FinishedOnKey".to_owned(), finished_on),
    ];
    let reply = post(state, call, &action, extra).await;
    state.update_call(&call.sid, |c| {
        c.digits_sent = Some(digits);
        c.gather_status = reply.as_ref().map(|(s, _)| *s);
        if let Some((_, xml)) = &reply {
            c.heard.extend(twiml::parse(xml).said);
        }
    });
    answered
}

/// The keys a gather collects from `keys`: digits up to the finish key or
/// `num_digits`, and the finish key if it was what ended input.
fn press(keys: &str, finish_on_key: &str, num_digits: usize) -> (String, String) {
    let mut digits = String::new();
    for key in keys.chars() {
        if finish_on_key.contains(key) {
            return (digits, key.to_string());
        }
        digits.push(key);
        if digits.chars().count() >= num_digits {
            break;
        }
    }
    (digits, String::new())
}

fn resolve(base: &str, action: &str) -> Option<String> {
    url::Url::parse(base).ok()?.join(action).ok().map(String::from)
}

/// POSTs a voice webhook with the call's parameters plus `extra`, signed.
/// Returns the status and body, or `None` if the receiver was unreachable.
async fn post(state: &SimState, call: &Call, url: &str, extra: Vec<(String, String)>) -> Option<(u16, String)> {
    let cfg = state.config();
    let mut params = vec![
        ("CallSid".to_owned(), call.sid.clone()),
        ("AccountSid".to_owned(), cfg.account_sid.clone()),
        ("From".to_owned(), call.from.clone()),
        ("To".to_owned(), call.to.clone()),
        ("CallStatus".to_owned(), "in-progress".to_owned()),
        ("Direction".to_owned(), "outbound-api".to_owned()),
        ("ApiVersion".to_owned(), API_VERSION.to_owned()),
    ];
    params.extend(extra);
    match webhook::post_signed_text(state.http(), &cfg.auth_token, url, &params).await {
        Ok(answer) => Some(answer),
        Err(err) => {
            tracing::warn!(sid = %call.sid, %url, error = %err, "voice webhook failed");
            None
        }
    }
}

async fn finish(state: &SimState, call: &Call, status: &'static str, seconds: u32) {
    state.update_call(&call.sid, |c| {
        c.status = status.to_owned();
        c.duration_seconds = seconds;
    });
    tracing::info!(sid = %call.sid, to = %call.to, %status, seconds, "call ended");
    let Some(url) = &call.status_callback else {
        return;
    };
    let cfg = state.config();
    let callback = CallStatusCallback {
        call_sid: call.sid.clone(),
        account_sid: cfg.account_sid.clone(),
        call_status: status.to_owned(),
        to: call.to.clone(),
        from: call.from.clone(),
        call_duration: (status == "completed").then_some(seconds),
    };
    let mut params = callback.to_params();
    params.push(("ApiVersion".to_owned(), API_VERSION.to_owned()));
    let answered = webhook::post_signed(state.http(), &cfg.auth_token, url, &params).await;
    if let Err(err) = &answered {
        tracing::warn!(sid = %call.sid, %url, error = %err, "call status callback failed");
    }
    state.update_call(&call.sid, |c| {
        c.status_callback_status = answered.ok().map(|s| s.as_u16())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presses_like_a_gather() {
        let p = |keys| press(keys, "#", usize::MAX);
        assert_eq!(p("#"), (String::new(), "#".into()));
        assert_eq!(p("0#"), ("0".into(), "#".into()));
        assert_eq!(p("1234#99"), ("1234".into(), "#".into()));
        assert_eq!(p("12"), ("12".into(), String::new()));
        assert_eq!(p(""), (String::new(), String::new()));
        assert_eq!(press("12345#", "#", 3), ("123".into(), String::new()));
    }

    #[test]
    fn resolves_relative_actions() {
        assert_eq!(
            resolve("http://h:1/v/voice/d", "d/gather").as_deref(),
            Some("http://h:1/v/voice/d/gather")
        );
        assert_eq!(
            resolve("http://h:1/a", "http://other/b").as_deref(),
            Some("http://other/b")
        );
    }
}
