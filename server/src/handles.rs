//! Display names: friendly generated handles ("Quiet Heron 42") and the
//! rules a wished-for handle must pass, so that no handle exposes someone's
//! contact details.

use rand::Rng;
use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "Quiet", "Gentle", "Steady", "Kind", "Calm", "Brave", "Warm", "Patient", "Bright", "Soft",
    "Hopeful", "Easy", "Clear", "Mellow", "Tender", "Sunny", "Still", "Golden", "Open", "Quiet",
];
const NOUNS: &[&str] = &[
    "Heron", "Willow", "River", "Maple", "Harbor", "Meadow", "Sparrow", "Cedar", "Otter", "Lantern",
    "Pebble", "Fern", "Robin", "Birch", "Tide", "Finch", "Aspen", "Brook", "Juniper", "Wren",
];

/// A friendly generated handle such as "Quiet Heron 42".
pub fn generate() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("Quiet");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("Heron");
    format!("{adjective} {noun} {}", rng.random_range(10..100))
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
}

/// Checks a wished-for handle and returns it tidied (trimmed, inner spaces folded).
pub fn validate(wished: &str, min: u32, max: u32) -> Result<String, HandleError> {
    let tidy = wished.split_whitespace().collect::<Vec<_>>().join(" ");
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

fn looks_like_contact(handle: &str) -> bool {
    let lower = handle.to_lowercase();
    // Seven or more digits, however spaced or dotted, read as a phone number.
    let digits = lower.chars().filter(char::is_ascii_digit).count();
    if digits >= 7 {
        return true;
    }
    // A domain-like token: "name.com", "www.x".
    const TLDS: &[&str] = &[".com", ".net", ".org", ".io", ".co", ".uk", ".de", ".fr", ".app", ".me", ".info"];
    lower.starts_with("www.")
        || lower.contains(" dot com")
        || lower.split(' ').any(|word| TLDS.iter().any(|tld| word.len() > tld.len() && word.ends_with(tld)))
}

/// The handle shown in a room where `taken` says whether a name is already
/// used by someone else: the wished one, or it with the lowest free number.
pub fn unique_in_room(handle: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(handle) {
        return handle.to_owned();
    }
    (2..)
        .map(|n| format!("{handle} {n}"))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| format!("{handle} {}", rand::rng().random::<u32>()))
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
    fn clashing_handles_get_the_lowest_free_number() {
        let taken = ["Sam", "Sam 2"];
        assert_eq!(unique_in_room("Sam", |h| taken.contains(&h)), "Sam 3");
        assert_eq!(unique_in_room("Alex", |h| taken.contains(&h)), "Alex");
    }
}
