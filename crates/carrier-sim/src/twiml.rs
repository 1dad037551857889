//! Just enough TwiML reading to play a phone: what is said, and the first
//! `<Gather>` with its attributes. Not a general XML parser: TwiML is flat.

use std::collections::HashMap;

use vigil_twilio::twiml::unescape;

/// What a TwiML document asks of the phone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// Every `<Say>` in order, the gather's prompt included.
    pub said: Vec<String>,
    /// The first `<Gather>`'s attributes, if there is one.
    pub gather: Option<HashMap<String, String>>,
}

pub fn parse(xml: &str) -> Script {
    let mut script = Script::default();
    let mut rest = xml;
    let mut in_say = false;
    let mut text = String::new();
    while let Some(open) = rest.find('<') {
        if in_say {
            text.push_str(&rest[..open]);
        }
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let tag = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let closing = tag.starts_with('/');
        let body = tag.trim_start_matches('/').trim_end_matches('/');
        let (name, attrs) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        match (name, closing) {
            ("Say", false) if !tag.ends_with('/') => {
                in_say = true;
                text.clear();
            }
            ("Say", true) => {
                in_say = false;
                script.said.push(unescape(text.trim()));
            }
            ("Gather", false) if script.gather.is_none() => script.gather = Some(attributes(attrs)),
            _ => {}
        }
    }
    script
}

/// `key="value"` pairs (single or double quotes), values unescaped.
fn attributes(mut s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    loop {
        s = s.trim_start();
        let Some(eq) = s.find('=') else {
            return out;
        };
        let key = s[..eq].trim().to_owned();
        let after = s[eq + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return out;
        };
        let Some(end) = after[1..].find(quote) else {
            return out;
        };
        out.insert(key, unescape(&after[1..1 + end]));
        s = &after[end + 2..];
    }
}

#[cfg(test)]
mod tests {
    use vigil_twilio::twiml::{Gather, Response};

    use super::*;

    #[test]
    fn reads_what_vigil_writes() {
        let xml = Response::new()
            .say("Your Vigil sign-in & more")
            .gather(&Gather {
                action: "http://x/g?a=1&b=2".into(),
                num_digits: 4,
                finish_on_key: "#".into(),
                timeout: 5,
                prompt: "Press pound".into(),
            })
            .say("Goodbye")
            .render();
        let script = parse(&xml);
        assert_eq!(script.said, ["Your Vigil sign-in & more", "Press pound", "Goodbye"]);
        let gather = script.gather.unwrap_or_default();
        assert_eq!(gather.get("action").map(String::as_str), Some("http://x/g?a=1&b=2"));
        assert_eq!(gather.get("finishOnKey").map(String::as_str), Some("#"));
        assert_eq!(gather.get("numDigits").map(String::as_str), Some("4"));
    }

    #[test]
    fn tolerates_odd_documents() {
        assert_eq!(parse(""), Script::default());
        assert_eq!(parse("<Response><Hangup/></Response>").gather, None);
        let s = parse("<Response><Say/><Gather action='a' numDigits=\"1\"/><Say>x</Say>");
        assert_eq!(s.said, ["x"]);
        assert_eq!(s.gather.map(|g| g.len()), Some(2));
        assert!(parse("<Say>unterminated").said.is_empty());
    }
}
