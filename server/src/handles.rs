//! Display names: friendly generated handles ("Quiet Heron 42") and the
//! rules a wished-for handle must pass, so that no handle exposes someone's
//! contact details.

use rand::Rng;
use unicode_normalization::UnicodeNormalization;

/// Words a member's handle may not pass for, in any case and with
/// look-alike characters folded: people trust these.
const STAFF_WORDS: &[&str] = &["facilitator", "admin", "administrator", "moderator", "mod", "system", "kindred", "staff"];

/// Letters that render as nothing (Hangul fillers, the blank Braille
/// pattern) or carry no glyph (zero-width and direction controls): a handle
/// made of them looks empty, and inside one they hide what it says.
fn invisible(c: char) -> bool {
    matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}' | '\u{034F}' | '\u{17B4}' | '\u{17B5}' | '\u{180E}' | '\u{FEFF}')
        || ('\u{200B}'..='\u{200F}').contains(&c)
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2060}'..='\u{206F}').contains(&c)
        || ('\u{FE00}'..='\u{FE0F}').contains(&c)
}

/// How a handle looks, for comparisons: NFKC, lower case, and the UTS 39
/// confusable skeleton ("Ｓａｍ", "Sаm" with a Cyrillic а and "sam" look alike).
pub fn look(handle: &str) -> String {
    let folded: String = handle.nfkc().flat_map(char::to_lowercase).collect();
    unicode_security::confusable_detection::skeleton(&folded).collect()
}

/// Whether two handles would look the same to a person. Two plain ASCII
/// handles are compared without case alone (the common case, on every join,
/// for every member present).
pub fn look_alike(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    look(a) == look(b)
}

const ADJECTIVES: &[&str] = &[
    "Quiet", "Gentle", "Steady", "Kind", "Calm", "Brave", "Warm", "Patient", "Bright", "Soft", "Hopeful", "Easy", "Clear", "Mellow", "Tender", "Sunny",
    "Still", "Golden", "Open", "Quiet",
];
const NOUNS: &[&str] = &[
    "Heron", "Willow", "River", "Maple", "Harbor", "Meadow", "Sparrow", "Cedar", "Otter", "Lantern", "Pebble", "Fern", "Robin", "Birch", "Tide", "Finch",
    "Aspen", "Brook", "Juniper", "Wren",
];

/// A friendly generated handle such as "Quiet Heron 42".
pub fn generate() -> String {
    generate_from(rand::rng().random())
}

/// The generated handle these eight bytes pick: the same bytes, the same
/// handle, so a handle derived from an account and a room is stable across
/// reconnects and nodes without being stored.
pub fn generate_from(seed: [u8; 8]) -> String {
    let pick = |i: usize| u16::from_le_bytes([seed[i], seed[i + 1]]) as usize;
    let adjective = ADJECTIVES[pick(0) % ADJECTIVES.len()];
    let noun = NOUNS[pick(2) % NOUNS.len()];
    format!("{adjective} {noun} {}", 10 + pick(4) % 90)
}

/// Why a wished-for handle was refused; the text is shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("a name needs between {min} and {max} characters")]
    Length { min: u32, max: u32 },
    #[error("a name may use letters, digits, spaces and - _ . ' only")]
    Characters,
    #[error("a name must not contain an e-mail address, phone number or link")]
    ContactDetails,
    #[error("a name needs letters you can see")]
    Invisible,
    #[error("a name must not look like a facilitator, admin or the system")]
    StaffWord,
}

/// Checks a wished-for handle and returns it tidied (trimmed, inner spaces folded).
pub fn validate(wished: &str, min: u32, max: u32) -> Result<String, HandleError> {
    let tidy = validate_name(wished, min, max)?;
    if imitates_staff(&tidy) {
        return Err(HandleError::StaffWord);
    }
    Ok(tidy)
}

/// The checks of [`validate`] but the staff words: for the display name a
/// facilitator's verified token carries.
pub fn validate_name(wished: &str, min: u32, max: u32) -> Result<String, HandleError> {
    if wished.chars().any(invisible) {
        return Err(HandleError::Invisible);
    }
    // Fullwidth and other compatibility forms become the plain letters they show.
    let normal: String = wished.nfkc().collect();
    let tidy = normal.split_whitespace().collect::<Vec<_>>().join(" ");
    let len = tidy.chars().count() as u32;
    if len < min || len > max {
        return Err(HandleError::Length { min, max });
    }
    if !tidy.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '\'')) {
        // Also refuses '@', '/', ':' and '+', which rules out most addresses and links.
        return Err(HandleError::Characters);
    }
    if looks_like_contact(&tidy) {
        return Err(HandleError::ContactDetails);
    }
    Ok(tidy)
}

/// A word of the handle (or the handle run together) that looks like a staff word.
fn imitates_staff(handle: &str) -> bool {
    // Digits standing in for letters ("m0derator", "4dmin") fold too.
    let leet = |w: &str| -> String {
        let w: String = w
            .chars()
            .map(|c| match c {
                '0' => 'o',
                '1' => 'l',
                '3' => 'e',
                '4' => 'a',
                '5' => 's',
                '7' => 't',
                c => c,
            })
            .collect();
        look(&w)
    };
    let staff: Vec<String> = STAFF_WORDS.iter().map(|w| leet(w)).collect();
    let words = handle.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty());
    let joined: String = handle.chars().filter(|c| c.is_alphanumeric()).collect();
    words.map(leet).chain(std::iter::once(leet(&joined))).any(|w| staff.contains(&w))
}

fn looks_like_contact(handle: &str) -> bool {
    // Digits of every script count: "٠٧٧٠٠٩٠٠١٢٣" is a phone number too.
    let lower = crate::safety::digits::to_ascii(handle).to_lowercase();
    // Seven or more digits, however spaced or dotted, read as a phone number.
    let digits = lower.chars().filter(char::is_ascii_digit).count();
    if digits >= 7 {
        return true;
    }
    // A domain-like token: "name.com", "www.x".
    const TLDS: &[&str] = &[".com", ".net", ".org", ".io", ".co", ".uk", ".de", ".fr", ".app", ".me", ".info"];
    lower.starts_with("www.") || lower.contains(" dot com") || lower.split(' ').any(|word| TLDS.iter().any(|tld| word.len() > tld.len() && word.ends_with(tld)))
}

/// The handle shown in a room where `taken` says whether a name is already
/// used by someone else: the wished one, or it with the lowest free number.
pub fn unique_in_room(handle: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(handle) {
        return handle.to_owned();
    }
    (2..).map(|n| format!("{handle} {n}")).find(|candidate| !taken(candidate)).unwrap_or_else(|| format!("{handle} {}", rand::rng().random::<u32>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_handles_pass_validation() {
        for _ in 0..100 {
            let h = generate();
            assert_eq!(validate(&h, 2, 32), Ok(h.clone()));
        }
    }

    #[test]
    fn contact_details_and_odd_characters_are_refused() {
        assert_eq!(validate("sam@example.com", 2, 32), Err(HandleError::Characters));
        assert_eq!(validate("sam example.com", 2, 32), Err(HandleError::ContactDetails));
        assert_eq!(validate("call 555 123 4567", 2, 32), Err(HandleError::ContactDetails));
        assert_eq!(validate("Sam ٠٧٧٠٠٩٠٠١٢٣", 2, 32), Err(HandleError::ContactDetails));
        assert_eq!(validate("Sam ０７７００９００１２３", 2, 32), Err(HandleError::ContactDetails));
        assert_eq!(validate("Sam ०७७००९००१२३", 2, 32), Err(HandleError::ContactDetails));
        assert_eq!(validate("https://x.y", 2, 32), Err(HandleError::Characters));
        assert_eq!(validate("<b>hi</b>", 2, 32), Err(HandleError::Characters));
        assert_eq!(validate("a", 2, 32), Err(HandleError::Length { min: 2, max: 32 }));
        assert_eq!(validate(&"x".repeat(33), 2, 32), Err(HandleError::Length { min: 2, max: 32 }));
    }

    #[test]
    fn ordinary_names_pass_and_are_tidied() {
        assert_eq!(validate("  Maya   R. ", 2, 32), Ok("Maya R.".into()));
        assert_eq!(validate("Zoë O'Neil", 2, 32), Ok("Zoë O'Neil".into()));
        assert_eq!(validate("Dad of 2", 2, 32), Ok("Dad of 2".into()));
    }

    #[test]
    fn invisible_and_filler_handles_are_refused() {
        for h in ["\u{3164}\u{3164}", "\u{FFA0}\u{FFA0}\u{FFA0}", "\u{115F}ab", "Sam\u{200B}", "\u{2800}\u{2800}"] {
            assert_eq!(validate(h, 2, 32), Err(HandleError::Invisible), "{h:?}");
        }
    }

    #[test]
    fn handles_that_pass_for_staff_are_refused_with_look_alikes_folded() {
        for h in ["Facilitator", "ADMIN", "System", "Kindred", "the moderator", "Fаcilitator", "Ａｄｍｉｎ", "Sam_Admin", "Fa cilitator", "m0derator"] {
            assert_eq!(validate(h, 2, 32), Err(HandleError::StaffWord), "{h:?}");
        }
        for h in ["Badminton fan", "Systematic Sam", "Kind Heron", "Modest Otter"] {
            assert!(validate(h, 2, 32).is_ok(), "{h:?} is an ordinary name");
        }
    }

    #[test]
    fn fullwidth_and_cyrillic_look_alikes_look_alike() {
        assert_eq!(validate("Ｓａｍ", 2, 32), Ok("Sam".into()), "NFKC shows it as what it is");
        assert!(look_alike("Sаm", "Sam"), "Cyrillic а");
        assert!(look_alike("SAM", "sam"));
        assert!(!look_alike("Sam", "Pam"));
    }

    #[test]
    fn clashing_handles_get_the_lowest_free_number() {
        let taken = ["Sam", "Sam 2"];
        assert_eq!(unique_in_room("Sam", |h| taken.contains(&h)), "Sam 3");
        assert_eq!(unique_in_room("Alex", |h| taken.contains(&h)), "Alex");
    }
}
