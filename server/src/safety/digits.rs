//! Digits of every script read as ASCII digits, so that a phone number
//! written in Arabic-Indic (٠٧٧٠٠…), Persian, Devanagari or fullwidth
//! (０７７００…) digits is seen by the same checks as one in 0–9.
//!
//! NFKC folds only the compatibility forms (fullwidth, mathematical,
//! circled); the digits of living scripts are canonical characters of their
//! own, so they are mapped here by their place in a run of ten (Unicode
//! encodes every decimal digit set as a contiguous run from its zero).

use std::borrow::Cow;

/// The zero of each decimal digit run a person is likely to type. The
/// mathematical styles (U+1D7CE…U+1D7FF) are five runs of ten.
const ZEROS: &[u32] = &[
    0x0660, // Arabic-Indic
    0x06F0, // Extended Arabic-Indic (Persian, Urdu)
    0x07C0, // NKo
    0x0966, // Devanagari
    0x09E6, // Bengali
    0x0A66, // Gurmukhi
    0x0AE6, // Gujarati
    0x0B66, // Oriya
    0x0BE6, // Tamil
    0x0C66, // Telugu
    0x0CE6, // Kannada
    0x0D66, // Malayalam
    0x0DE6, // Sinhala
    0x0E50, // Thai
    0x0ED0, // Lao
    0x0F20, // Tibetan
    0x1040, // Myanmar
    0x17E0, // Khmer
    0x1810, // Mongolian
    0xFF10, // Fullwidth
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, // Mathematical bold, double-struck, sans, sans bold, monospace
];

/// The ASCII digit `c` stands for, if it is a decimal digit of another script.
fn ascii_digit(c: char) -> Option<char> {
    // Letters and ASCII leave at once: the table is walked for digits only,
    // not for every character of every non-ASCII message.
    if c.is_ascii() || !c.is_numeric() {
        return None;
    }
    let code = c as u32;
    ZEROS.iter().find(|&&zero| (zero..zero + 10).contains(&code)).and_then(|zero| char::from_digit(code - zero, 10))
}

/// `text` with every decimal digit as ASCII; borrowed when nothing changes
/// (every ASCII text, and most others: this runs on every message).
pub(crate) fn to_ascii(text: &str) -> Cow<'_, str> {
    if text.is_ascii() || !text.chars().any(|c| ascii_digit(c).is_some()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| ascii_digit(c).unwrap_or(c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_of_other_scripts_become_ascii() {
        assert_eq!(to_ascii("٠٧٧٠٠ ٩٠٠١٢٣"), "07700 900123");
        assert_eq!(to_ascii("۰۹۱۲ ۳۴۵ ۶۷۸۹"), "0912 345 6789");
        assert_eq!(to_ascii("०७७०० ९००१२३"), "07700 900123");
        assert_eq!(to_ascii("０７７００ ９００１２３"), "07700 900123");
        assert_eq!(to_ascii("𝟎𝟕𝟕𝟎𝟎"), "07700");
    }

    #[test]
    fn text_without_such_digits_is_borrowed() {
        assert!(matches!(to_ascii("call 07700 900123"), Cow::Borrowed(_)));
        assert!(matches!(to_ascii("الفقد والحزن ❤️"), Cow::Borrowed(_)));
        // Letters next to the runs are not digits.
        assert_eq!(to_ascii("ك ٪ ١"), "ك ٪ 1");
    }
}
