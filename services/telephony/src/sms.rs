//! Two-way SMS: what a reply means. A reply that is a keyword approves,
//! denies or reports fraud; anything else is passed on as a code.

use crate::{config::SmsKeywords, model::Answer};

/// The configured keywords, upper-cased.
#[derive(Debug, Clone)]
pub struct Keywords {
    approve: Vec<String>,
    deny: Vec<String>,
    fraud: Vec<String>,
}

impl Keywords {
    pub fn new(config: &SmsKeywords) -> Self {
        let list = |s: &str| {
            s.split(',')
                .map(|w| w.trim().to_uppercase())
                .filter(|w| !w.is_empty())
                .collect()
        };
        Self {
            approve: list(&config.approve),
            deny: list(&config.deny),
            fraud: list(&config.fraud),
        }
    }

    /// Classifies a reply: the whole reply, trimmed, without trailing
    /// punctuation, compared case-insensitively. Fraud wins over the others
    /// if an operator lists a word twice.
    pub fn classify(&self, reply: &str) -> Answer {
        let word = reply.trim().trim_end_matches(['.', '!', '?']).trim().to_uppercase();
        if self.fraud.contains(&word) {
            Answer::Fraud
        } else if self.approve.contains(&word) {
            Answer::Approve
        } else if self.deny.contains(&word) {
            Answer::Deny
        } else {
            Answer::Code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_replies() {
        let k = Keywords::new(&SmsKeywords::default());
        assert_eq!(k.classify("YES"), Answer::Approve);
        assert_eq!(k.classify(" y "), Answer::Approve);
        assert_eq!(k.classify("Yes!"), Answer::Approve);
        assert_eq!(k.classify("no"), Answer::Deny);
        assert_eq!(k.classify("Fraud"), Answer::Fraud);
        assert_eq!(k.classify("0"), Answer::Fraud);
        assert_eq!(k.classify("123456"), Answer::Code);
        assert_eq!(k.classify("yes please"), Answer::Code, "whole reply only");
        assert_eq!(k.classify(""), Answer::Code);
    }

    #[test]
    fn keywords_are_configurable() {
        let k = Keywords::new(&SmsKeywords {
            approve: "OUI, JA".into(),
            deny: "NON".into(),
            fraud: "STOP".into(),
        });
        assert_eq!(k.classify("ja"), Answer::Approve);
        assert_eq!(k.classify("yes"), Answer::Code);
        assert_eq!(k.classify("stop"), Answer::Fraud);
        assert_eq!(k.classify("0"), Answer::Code);
    }
}
