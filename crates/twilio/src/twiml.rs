//! The small part of TwiML Vigil speaks: `<Say>`, `<Gather>`, `<Hangup>`.
//!
//! Built as text with every attribute and spoken sentence XML-escaped, since
//! the sentence comes from a provider's template.

use std::fmt::Write as _;

/// A `<Gather>` collecting key presses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gather {
    /// Absolute URL the digits are posted to.
    pub action: String,
    /// Most digits collected before submitting.
    pub num_digits: u32,
    /// The key that ends input (`#`); it is not part of `Digits`.
    pub finish_on_key: String,
    /// Seconds of silence before the gather gives up.
    pub timeout: u32,
    /// Spoken while waiting for input.
    pub prompt: String,
}

/// A TwiML document built verb by verb.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    verbs: String,
}

impl Response {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn say(mut self, text: &str) -> Self {
        let _ = write!(self.verbs, "<Say>{}</Say>", escape(text));
        self
    }

    /// A gather that always calls `action`, even without input
    /// (`actionOnEmptyResult`), so "silence" and "only # pressed" are both
    /// reported; Twilio tells them apart with `FinishedOnKey`.
    pub fn gather(mut self, gather: &Gather) -> Self {
        let _ = write!(
            self.verbs,
            "<Gather input=\"dtmf\" action=\"{}\" method=\"POST\" numDigits=\"{}\" finishOnKey=\"{}\" \
             timeout=\"{}\" actionOnEmptyResult=\"true\"><Say>{}</Say></Gather>",
            escape(&gather.action),
            gather.num_digits,
            escape(&gather.finish_on_key),
            gather.timeout,
            escape(&gather.prompt),
        );
        self
    }

    pub fn hangup(mut self) -> Self {
        self.verbs.push_str("<Hangup/>");
        self
    }

    pub fn render(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{}</Response>",
            self.verbs
        )
    }
}

/// Escapes text for an XML element or a double-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`] (and the numeric references a TwiML writer may use).
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_escapes() {
        let xml = Response::new()
            .say("Hello <Ann> & \"Bob\"")
            .gather(&Gather {
                action: "https://x.example/g?a=1&b=2".into(),
                num_digits: 1,
                finish_on_key: "#".into(),
                timeout: 10,
                prompt: "Press #".into(),
            })
            .hangup()
            .render();
        assert!(xml.contains("<Say>Hello &lt;Ann&gt; &amp; &quot;Bob&quot;</Say>"));
        assert!(xml.contains("action=\"https://x.example/g?a=1&amp;b=2\""));
        assert!(xml.contains("numDigits=\"1\" finishOnKey=\"#\""));
        assert!(xml.ends_with("<Hangup/></Response>"));
    }

    #[test]
    fn unescape_round_trips() {
        for s in ["plain", "a&b<c>\"d'", "&&;;", "x &unknown; y"] {
            assert_eq!(unescape(&escape(s)), s);
        }
        assert_eq!(unescape("&#35;&#x23;"), "##");
        assert_eq!(unescape("dangling &amp"), "dangling &amp");
    }
}
