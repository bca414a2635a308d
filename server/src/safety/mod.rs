//! Safety checks on the send path: crisis terms (the message is delivered,
//! the sender privately gets helplines, the room's facilitators an alert),
//! personal details that could expose someone (e-mail, phone, street
//! address, links), and the operator's blocklist. Pure functions of the
//! text and the configuration: no I/O, nothing logged.

use aho_corasick::AhoCorasick;
use kindred_protocol::Resource;
use regex::Regex;
use serde::Deserialize;
use std::collections::HashMap;

/// What to do with a message that carries personal details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    /// Deliver it, and warn the sender privately (`pii_warning`).
    Warn,
    /// Do not deliver it; the sender gets `content_blocked` saying why.
    #[default]
    Block,
}

/// The `[safety]` section of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// Crisis terms per language (`en`, …); rooms use their language's list,
    /// falling back to English.
    pub crisis_terms: HashMap<String, Vec<String>>,
    /// Helplines offered with `crisis_resources`.
    pub resources: Vec<ResourceSpec>,
    /// The words said with the resources.
    pub crisis_text: String,
    /// Default for rooms that do not set `pii`. Default `block`.
    pub pii: PiiAction,
    /// Words and phrases that are never delivered (`content_blocked`).
    pub blocklist: Vec<String>,
    /// `[safety.escalation]`: the on-call webhook for new crisis alerts (off when absent).
    pub escalation: Option<crate::escalation::EscalationConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub name: String,
    pub contact: String,
    #[serde(default)]
    pub url: Option<String>,
}

const ENGLISH_CRISIS_TERMS: &[&str] = &[
    "kill myself", "killing myself", "kms", "suicide", "suicidal", "end my life", "ending my life",
    "take my own life", "taking my own life", "end it all", "want to die", "wanna die", "wish i was dead",
    "wish i were dead", "better off dead", "better off without me", "dont want to live", "dont want to be alive",
    "no reason to live", "nothing to live for", "hurt myself", "hurting myself", "harm myself", "self harm",
    "selfharm", "cut myself", "cutting myself", "overdose", "od on",
];

impl Default for SafetyConfig {
    fn default() -> Self {
        let resource = |name: &str, contact: &str, url: &str| ResourceSpec { name: name.into(), contact: contact.into(), url: Some(url.into()) };
        SafetyConfig {
            crisis_terms: HashMap::from([("en".to_owned(), ENGLISH_CRISIS_TERMS.iter().map(|t| (*t).to_owned()).collect())]),
            resources: vec![
                ResourceSpec {
                    name: "Emergency services".into(),
                    contact: "If you are in danger now, call your local emergency number (112 in Europe, 911 in North America, 999 in the UK, 000 in Australia).".into(),
                    url: None,
                },
                resource("Find A Helpline (free, confidential helplines in 130+ countries)", "findahelpline.com", "https://findahelpline.com"),
                resource("988 Suicide & Crisis Lifeline (US)", "Call or text 988", "https://988lifeline.org"),
                resource("Samaritans (UK and Ireland)", "Call 116 123, free, day or night", "https://www.samaritans.org"),
                resource("Lifeline (Australia)", "Call 13 11 14", "https://www.lifeline.org.au"),
            ],
            crisis_text: "It sounds like you're carrying something really heavy right now. You don't have to face it alone: \
                          these people are there to talk, any time. The facilitators here have been let know, gently."
                .into(),
            pii: PiiAction::Block,
            blocklist: Vec::new(),
            escalation: None,
        }
    }
}

/// What a message's text turned out to hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub crisis: bool,
    /// Which kind of personal detail, said for people ("a phone number").
    pub pii: Option<&'static str>,
    pub blocked: bool,
}

/// The compiled checks.
pub struct Safety {
    config: SafetyConfig,
    /// Crisis terms per language, as one automaton each (see `Phrases`).
    crisis: HashMap<String, Phrases>,
    blocklist: Phrases,
    email: Regex,
    url: Regex,
    phone: Regex,
    date: Regex,
    street: Regex,
}

/// Lower case, accents and other marks dropped (NFKD: "é" → "e", "ñ" → "n";
/// Arabic harakat and hamza carriers too), a few letters NFKD leaves whole
/// folded by hand (`fold_letter`), common letter substitutions undone,
/// apostrophes dropped, other punctuation to spaces, and runs of single
/// letters joined ("k i l l" → "kill"), so spelling games do not hide a
/// crisis. The words come out separated by single spaces.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_into(text, &mut out);
    out
}

fn normalize_into(text: &str, out: &mut String) {
    let mut mapped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            push_ascii(c, &mut mapped);
        } else {
            push_folded(c, &mut mapped);
        }
    }
    // A one-letter word joins the run of one-letter words just before it;
    // any other word stands alone.
    let base = out.len();
    let mut after_single = false;
    for word in mapped.split(' ').filter(|w| !w.is_empty()) {
        let single = word.chars().nth(1).is_none();
        if !(single && after_single) && out.len() > base {
            out.push(' ');
        }
        out.push_str(word);
        after_single = single;
    }
}

/// ASCII: lower case, leetspeak undone (only ASCII digits: Arabic-Indic
/// and other digits stay digits), apostrophes dropped, the rest to spaces.
fn push_ascii(c: char, mapped: &mut String) {
    match c.to_ascii_lowercase() {
        '\'' | '`' => {}
        '0' => mapped.push('o'),
        '1' => mapped.push('i'),
        '3' => mapped.push('e'),
        '4' | '@' => mapped.push('a'),
        '5' | '$' => mapped.push('s'),
        '7' => mapped.push('t'),
        c if c.is_ascii_alphanumeric() => mapped.push(c),
        _ => mapped.push(' '),
    }
}

/// Anything else: the hand folds, then NFKD (compatibility: full-width and
/// styled letters become plain ones) without its combining marks, then
/// lower case. Each Unicode table is consulted once a character: this runs
/// on every character of every message.
fn push_folded(c: char, mapped: &mut String) {
    if let Some(folded) = fold_letter(c) {
        mapped.push_str(folded);
        return;
    }
    match c {
        // Arabic harakat (fatha, damma, kasra, shadda, sukun…) and the
        // superscript alef: combining marks, dropped.
        '\u{064B}'..='\u{065F}' | '\u{0670}' => return,
        // Arabic letters NFKD leaves alone (not آ أ ؤ إ ئ), taken as they
        // are: the general path below costs ~100 ns a letter in Arabic.
        '\u{0621}' | '\u{0627}'..='\u{063A}' | '\u{0641}'..='\u{064A}' => {
            mapped.push(c);
            return;
        }
        _ => {}
    }
    unicode_normalization::char::decompose_compatible(c, |d| {
        if d.is_ascii() {
            push_ascii(d, mapped);
        } else if unicode_normalization::char::is_combining_mark(d) {
            // é = e + U+0301, أ = ا + U+0654: the mark goes.
        } else if let Some(folded) = fold_letter(d) {
            mapped.push_str(folded);
        } else if d.is_alphanumeric() {
            mapped.extend(d.to_lowercase());
        } else {
            mapped.push(' ');
        }
    });
}

/// What NFKD does not fold but people write interchangeably: letters with
/// no decomposition (ł, ß, ø…), the Arabic folds usual in search (alef
/// wasla → alef, alef maqsura → yeh, teh marbuta → heh, Persian yeh and
/// keheh), and characters that are dropped outright: apostrophes, the
/// Arabic tatweel (a stretch inside a word) and invisible joiners.
fn fold_letter(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' | 'ẞ' => "ss",
        'ł' | 'Ł' => "l",
        'ø' | 'Ø' => "o",
        'đ' | 'Đ' => "d",
        'æ' | 'Æ' => "ae",
        'œ' | 'Œ' => "oe",
        'ı' => "i",
        'ٱ' => "ا",
        'ى' | 'ی' => "ي",
        'ة' => "ه",
        'ک' => "ك",
        '’' | '‘' | 'ʼ' | '´' | 'ـ' | '\u{ad}' | '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' => "",
        _ => return None,
    })
}

/// A list of phrases (crisis terms, the blocklist), matched as whole words
/// in normalised text: the haystack is ` normalised text ` and each phrase
/// ` its words `, or, for a phrase of several words, ` itswords ` as one
/// token (what "k i l l m y s e l f" normalises to). One automaton, one
/// pass over the text.
struct Phrases(Option<AhoCorasick>);

impl Phrases {
    /// Fails only for a list past the automaton's size limits (millions of terms).
    fn new<'a>(terms: impl IntoIterator<Item = &'a String>) -> Result<Phrases, aho_corasick::BuildError> {
        let mut patterns = Vec::new();
        for term in terms {
            let words = normalize(term);
            if words.is_empty() {
                continue;
            }
            if words.contains(' ') {
                patterns.push(format!(" {} ", words.replace(' ', "")));
            }
            patterns.push(format!(" {words} "));
        }
        let automaton = if patterns.is_empty() { None } else { Some(AhoCorasick::new(&patterns)?) };
        Ok(Phrases(automaton))
    }

    /// `padded`: normalised text with a space before and after.
    fn found_in(&self, padded: &str) -> bool {
        self.0.as_ref().is_some_and(|ac| ac.is_match(padded))
    }
}

impl Safety {
    /// Compile the checks; fails for a crisis-term list or blocklist too large to compile.
    pub fn new(config: SafetyConfig) -> Result<Safety, aho_corasick::BuildError> {
        let crisis = config
            .crisis_terms
            .iter()
            .map(|(lang, terms)| Ok((lang.clone(), Phrases::new(terms)?)))
            .collect::<Result<_, aho_corasick::BuildError>>()?;
        let blocklist = Phrases::new(&config.blocklist)?;
        let re = |pattern: &str| Regex::new(pattern).expect("built-in patterns compile");
        // Word boundaries are ASCII (`(?-u:\b)`): a Unicode `\b` sends the
        // regex engine to its slow path on any text with an emoji or a curly
        // quote (13 µs against 3 for the same words in ASCII, per message).
        Ok(Safety {
            crisis,
            blocklist,
            email: re(r"(?i)[a-z0-9._%+-]+\s*(@|\(at\)|\[at\])\s*[a-z0-9-]+(\.[a-z0-9-]+)*\s*(\.|\(dot\)|\[dot\])\s*[a-z]{2,}"),
            url: re(r"(?i)(?-u:\b)(https?://|www\.)\S+|(?-u:\b)[a-z0-9-]+\.(com|net|org|io|co|uk|de|fr|app|me|info|ly|gg|tv|xyz)(/\S*)?(?-u:\b)"),
            phone: re(r"(?:\+|(?-u:\b))\d[\d\s().-]{5,18}\d(?-u:\b)"),
            date: re(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$"),
            street: re(r"(?-u:\b)\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][a-z]+\s+){1,3}(?i:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|close|crescent|place|pl|terrace|way|grove|gardens)(?-u:\b)"),
            config,
        })
    }

    pub fn config(&self) -> &SafetyConfig {
        &self.config
    }

    pub fn resources(&self) -> Vec<Resource> {
        self.config.resources.iter().map(|r| Resource { name: r.name.clone(), contact: r.contact.clone(), url: r.url.clone() }).collect()
    }

    /// The helplines for a member writing in `locale` (BCP 47, from `hello`):
    /// those tagged with its language first, then the rest.
    pub fn resources_for(&self, _locale: Option<&str>) -> Vec<Resource> {
        self.resources()
    }

    /// The words said with the helplines, in `locale` where a translation
    /// exists: truthful about whether a person was told
    /// (`facilitators_alerted` staff connections).
    pub fn crisis_text(&self, _locale: Option<&str>, _facilitators_alerted: u32) -> String {
        self.config.crisis_text.clone()
    }

    /// Check a message's text, for a room in `language`.
    pub fn check(&self, text: &str, language: &str) -> Verdict {
        let mut padded = String::with_capacity(text.len() + 2);
        padded.push(' ');
        normalize_into(text, &mut padded);
        padded.push(' ');
        let terms = self.crisis.get(language).or_else(|| self.crisis.get("en"));
        Verdict {
            crisis: terms.is_some_and(|terms| terms.found_in(&padded)),
            pii: self.pii(text),
            blocked: self.blocklist.found_in(&padded),
        }
    }

    fn pii(&self, text: &str) -> Option<&'static str> {
        if self.email.is_match(text) {
            return Some("an e-mail address");
        }
        if self.url.is_match(text) {
            return Some("a link");
        }
        let phone = self.phone.find_iter(text).any(|m| {
            let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
            (7..=15).contains(&digits) && !self.date.is_match(m.as_str().trim())
        });
        if phone {
            return Some("a phone number");
        }
        if self.street.is_match(text) {
            return Some("a street address");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safety() -> Safety {
        Safety::new(SafetyConfig { blocklist: vec!["buy followers".into()], ..SafetyConfig::default() }).unwrap()
    }

    #[test]
    fn crisis_terms_match_through_case_punctuation_spacing_and_substitutions() {
        let s = safety();
        for text in [
            "Sometimes I just want to die.",
            "i think about SUICIDE every night",
            "I'm going to k i l l  m y s e l f",
            "thinking of ending my life tbh",
            "I w4nt t0 d1e",
            "everyone would be better off without me",
            "I don't want to live anymore",
            "I've been cutting myself again",
        ] {
            assert!(s.check(text, "en").crisis, "should match: {text}");
        }
    }

    #[test]
    fn ordinary_grief_talk_is_not_a_crisis() {
        let s = safety();
        for text in [
            "My dad died last spring and I miss him.",
            "I could kill for a cup of tea right now",
            "I'll attend it all, the whole workshop",
            "The skill I learned myself was knitting",
            "She passed away peacefully",
            "this weather is killing me haha",
        ] {
            assert!(!s.check(text, "fr-unknown").crisis, "should not match: {text}");
        }
    }

    #[test]
    fn personal_details_are_caught() {
        let s = safety();
        for (text, kind) in [
            ("email me at sam.rivers@example.com", "an e-mail address"),
            ("sam dot rivers (at) example (dot) com", "an e-mail address"),
            ("call me on 07700 900123", "a phone number"),
            ("my number is +1 (555) 123-4567", "a phone number"),
            ("I live at 221B Baker Street", "a street address"),
            ("come to 12 Oak Tree Road tonight", "a street address"),
            ("see https://example.org/me", "a link"),
            ("find me on mysite.com", "a link"),
            ("écris-moi à marie.dupont@example.fr 💬", "an e-mail address"),
            ("appelle-moi au 06 12 34 56 78 ❤️ merci", "a phone number"),
            ("it’s at 14 Mill Lane — come by 🙂", "a street address"),
        ] {
            assert_eq!(s.check(text, "en").pii, Some(kind), "{text}");
        }
    }

    #[test]
    fn ordinary_numbers_are_not_personal_details() {
        let s = safety();
        for text in [
            "my phone charger broke and I cried, silly right",
            "I'm 45 and it's been 3 years since she died",
            "on 2026-11-22 it will be one year",
            "the session is 19:00-20:30",
            "I walked 3 miles down the road today",
            "10 days sober, 240 hours",
            "I owe about 1500 dollars",
            "Ça fait 3 ans — 💔 — et j’y pense encore",
        ] {
            assert_eq!(s.check(text, "en").pii, None, "{text}");
        }
    }

    #[test]
    fn normalizing_joins_runs_of_single_letters_and_nothing_else() {
        for (text, normal) in [
            ("I'm going to k i l l  m y s e l f", "im going to killmyself"),
            ("I w4nt t0 d1e!", "i want to die"),
            ("x a want b", "xa want b"),
            ("a want", "a want"),
            ("want a b c", "want abc"),
            ("  Spaces,   commas... and-dashes  ", "spaces commas and dashes"),
            ("", ""),
            ("?!", ""),
        ] {
            assert_eq!(normalize(text), normal, "{text:?}");
        }
    }

    #[test]
    fn the_blocklist_matches_whole_phrases() {
        let s = safety();
        assert!(s.check("want to BUY FOLLOWERS cheap?", "en").blocked);
        assert!(!s.check("followers of the buy-nothing group", "en").blocked);
    }

    #[test]
    fn normalizing_folds_accents_and_arabic_variants_but_not_other_digits() {
        for (text, normal) in [
            ("Chcę umrzeć", "chce umrzec"),
            ("ŁÓDŹ, Straße", "lodz strasse"),
            ("Ñandú ÉTÉ œuvre", "nandu ete oeuvre"),
            ("ｗ４ｎｔ", "want"),
            ("kill\u{200b}myself", "killmyself"),
            ("أُرِيدُ أَنْ أَمُوتَ", "اريد ان اموت"),
            ("آمال إلى ٱلمدرسة", "امال الي المدرسه"),
            ("أمـــوت", "اموت"),
            ("عندي ٣ أطفال و٤ قطط", "عندي ٣ اطفال و٤ قطط"),
            ("۱۲۳", "۱۲۳"),
        ] {
            assert_eq!(normalize(text), normal, "{text:?}");
        }
    }
}
