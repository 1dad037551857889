//! SMS segment counting, so `num_segments` looks like what a carrier bills.
//!
//! Bodies that fit the GSM 03.38 alphabet travel as 7-bit septets (160 per
//! single message, 153 per part once a user-data header is needed); anything
//! else forces UCS-2 (70 / 67 UTF-16 units). Characters of the GSM extension
//! table cost two septets, and neither an escape pair nor a surrogate pair is
//! split across parts, matching how real encoders pack.

const GSM7_SINGLE: usize = 160;
const GSM7_MULTI: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_MULTI: usize = 67;

/// Number of SMS parts needed to carry `body` (at least 1).
pub fn count(body: &str) -> u32 {
    let units: Vec<usize> = match body.chars().map(gsm7_septets).collect::<Option<Vec<_>>>() {
        Some(septets) => return pack(&septets, GSM7_SINGLE, GSM7_MULTI),
        None => body.chars().map(char::len_utf16).collect(),
    };
    pack(&units, UCS2_SINGLE, UCS2_MULTI)
}

/// Greedily packs per-character costs into parts without splitting a character.
fn pack(costs: &[usize], single: usize, multi: usize) -> u32 {
    if costs.iter().sum::<usize>() <= single {
        return 1;
    }
    let mut parts = 1u32;
    let mut used = 0usize;
    for &cost in costs {
        if used + cost > multi {
            parts += 1;
            used = 0;
        }
        used += cost;
    }
    parts
}

/// Septets `c` takes in GSM-7, or `None` if it is outside the alphabet.
fn gsm7_septets(c: char) -> Option<usize> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "\u{0c}^{}\\[~]|€";
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(count(""), 1);
        assert_eq!(count("Your Vigil code is 123456"), 1);
        assert_eq!(count(&"a".repeat(160)), 1);
        assert_eq!(count(&"a".repeat(161)), 2);
        assert_eq!(count(&"a".repeat(306)), 2);
        assert_eq!(count(&"a".repeat(307)), 3);
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        assert_eq!(count(&"€".repeat(80)), 1);
        assert_eq!(count(&"€".repeat(81)), 2);
        // 306 septets would fit two parts, but the escape pair after 152
        // septets cannot straddle parts, so it pushes a third.
        let body = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(count(&body), 3);
    }

    #[test]
    fn non_gsm_text_uses_ucs2() {
        assert_eq!(count(&"ж".repeat(70)), 1);
        assert_eq!(count(&"ж".repeat(71)), 2);
        assert_eq!(count(&"ж".repeat(134)), 2);
        assert_eq!(count(&"ж".repeat(135)), 3);
        // An emoji is a surrogate pair: two UTF-16 units.
        assert_eq!(count(&"🔐".repeat(35)), 1);
        assert_eq!(count(&"🔐".repeat(36)), 2);
        // A backtick is ASCII but not GSM-7.
        assert_eq!(count("`"), 1);
        assert_eq!(count(&format!("`{}", "a".repeat(70))), 2);
    }
}
