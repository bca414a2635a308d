//! Safety checks on the send path: crisis terms (the message is delivered,
//! the sender privately gets helplines, the room's facilitators an alert),
//! personal details that could expose someone (e-mail, phone, street
//! address, links), and the operator's blocklist. Pure functions of the
//! text and the configuration: no I/O, nothing logged.
//!
//! Why one file of ~950 lines: about 530 are the checks, which share one
//! normalisation and one configuration; the rest are their tests, kept
//! beside them (the term data files are in `terms/`, digits in `digits.rs`).
//!
//! This module owns:
//! - the shipped crisis-term lists, one data file per language in `terms/`
//!   (en, es, fr, de, pt, it, nl, pl, ar), merged with the operator's
//!   `crisis_terms` and checked in **every** message whatever the room's
//!   language, as one automaton over the normalised text;
//! - normalisation (`normalize`): case, accents (NFKD), Arabic letter
//!   variants, punctuation, leetspeak and spelled-out letters;
//! - the default helplines, tagged by language (`resources_for`);
//! - the words said with the helplines, per language (`crisis_text`).

pub(crate) mod digits;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use kindred_protocol::Resource;
use regex::Regex;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

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
    /// The operator's crisis terms per language (`en`, `es`, …; a region
    /// such as `es-MX` counts as `es`). A language named here **replaces**
    /// the shipped list of that language (an empty list turns it off);
    /// the other shipped languages stay. Every message is checked against
    /// every language's terms, whatever the room's language.
    pub crisis_terms: HashMap<String, Vec<String>>,
    /// Helplines offered with `crisis_resources`.
    pub resources: Vec<ResourceSpec>,
    /// The opening words said with the resources in English (and for
    /// members whose language has no translation). Kindred adds a sentence
    /// saying truthfully whether a facilitator was told; see `crisis_text`.
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
    /// The languages the service answers in (`["en", "es"]`): members
    /// writing in one of them see it first. Empty: for everyone, in the
    /// list's order.
    #[serde(default)]
    pub languages: Vec<String>,
}

/// The shipped crisis terms, one phrase a line (see the files' headers).
const SHIPPED_CRISIS_TERMS: &[(&str, &str)] = &[
    ("en", include_str!("terms/en.txt")),
    ("es", include_str!("terms/es.txt")),
    ("fr", include_str!("terms/fr.txt")),
    ("de", include_str!("terms/de.txt")),
    ("pt", include_str!("terms/pt.txt")),
    ("it", include_str!("terms/it.txt")),
    ("nl", include_str!("terms/nl.txt")),
    ("pl", include_str!("terms/pl.txt")),
    ("ar", include_str!("terms/ar.txt")),
];

/// The phrases of a term file: its lines without comments and blanks.
fn term_lines(file: &str) -> impl Iterator<Item = &str> {
    file.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// The notice said with the helplines, in one language: the opening words,
/// then one of two sentences saying truthfully whether a person was told.
struct CrisisText {
    lang: &'static str,
    opening: &'static str,
    /// At least one facilitator got the alert.
    told: &'static str,
    /// Nobody did: no facilitator is online.
    nobody_online: &'static str,
}

/// English first: the fallback. Kept free of gendered forms for the reader
/// (es "a solas", fr "sans soutien", ar without gendered verbs).
const CRISIS_TEXTS: &[CrisisText] = &[
    CrisisText {
        lang: "en",
        opening: "It sounds like you're carrying something really heavy. You don't have to face it alone.",
        told: "We've let a facilitator here know, and they may reach out to you gently. The helplines below are there to listen too.",
        nobody_online: "No facilitator is online right now, but the helplines below are open now and there to listen.",
    },
    CrisisText {
        lang: "es",
        opening: "Parece que estás cargando con algo muy pesado. No tienes que enfrentarlo a solas.",
        told: "Hemos avisado a una persona facilitadora del grupo, que quizá te escriba con calma. Las líneas de abajo también están para escucharte.",
        nobody_online: "En este momento no hay ninguna persona facilitadora conectada, pero las líneas de abajo están abiertas ahora y están para escucharte.",
    },
    CrisisText {
        lang: "fr",
        opening: "On dirait que tu portes quelque chose de très lourd. Tu n'as pas à traverser ça sans soutien.",
        told: "Nous avons prévenu une personne de l'équipe d'animation, qui pourra prendre doucement contact avec toi. Les lignes ci-dessous sont là pour t'écouter, elles aussi.",
        nobody_online: "Personne de l'équipe d'animation n'est en ligne pour le moment, mais les lignes ci-dessous sont ouvertes maintenant et là pour t'écouter.",
    },
    CrisisText {
        lang: "de",
        opening: "Es klingt, als würdest du etwas sehr Schweres tragen. Damit musst du nicht allein bleiben.",
        told: "Wir haben jemandem aus dem Moderationsteam Bescheid gegeben; die Person meldet sich vielleicht behutsam bei dir. Auch die Angebote unten sind da, um dir zuzuhören.",
        nobody_online: "Gerade ist niemand aus dem Moderationsteam online, aber die Angebote unten sind jetzt erreichbar und hören dir zu.",
    },
    CrisisText {
        lang: "pt",
        opening: "Parece que você está carregando algo muito pesado. Você não precisa enfrentar isso sem apoio.",
        told: "Avisamos alguém da equipe de facilitação daqui, que talvez entre em contato com você com calma. As linhas de apoio abaixo também estão aqui para ouvir você.",
        nobody_online: "No momento não há ninguém da equipe de facilitação online, mas as linhas de apoio abaixo estão abertas agora e prontas para ouvir você.",
    },
    CrisisText {
        lang: "it",
        opening: "Sembra che tu stia portando qualcosa di molto pesante. Non devi affrontarlo senza aiuto.",
        told: "Abbiamo avvisato una persona che facilita il gruppo: potrebbe contattarti con delicatezza. Anche le linee qui sotto sono lì per ascoltarti.",
        nobody_online: "In questo momento nessuna persona che facilita il gruppo è online, ma le linee qui sotto sono aperte adesso e pronte ad ascoltarti.",
    },
    CrisisText {
        lang: "nl",
        opening: "Het klinkt alsof je iets heel zwaars met je meedraagt. Je hoeft dit niet alleen te doen.",
        told: "We hebben iemand van de begeleiding hier ingelicht; die neemt misschien rustig contact met je op. Ook de hulplijnen hieronder luisteren graag naar je.",
        nobody_online: "Er is op dit moment niemand van de begeleiding online, maar de hulplijnen hieronder zijn nu bereikbaar en luisteren graag naar je.",
    },
    CrisisText {
        lang: "pl",
        opening: "Wygląda na to, że dźwigasz coś bardzo ciężkiego. Nie musisz mierzyć się z tym bez wsparcia.",
        told: "Daliśmy znać osobie prowadzącej grupę — może delikatnie się do Ciebie odezwać. Linie wsparcia poniżej też są po to, żeby Cię wysłuchać.",
        nobody_online: "W tej chwili nie ma online nikogo z osób prowadzących grupę, ale linie wsparcia poniżej działają teraz i są gotowe Cię wysłuchać.",
    },
    CrisisText {
        lang: "ar",
        opening: "يبدو أن هذه لحظة صعبة جدًا. لست وحدك في هذا.",
        told: "أبلغنا أحد الميسّرين هنا، وقد يتواصل معك بلطف. وخطوط المساعدة أدناه موجودة للاستماع إليك أيضًا.",
        nobody_online: "لا يوجد أي ميسّر متصل حاليًا، لكن خطوط المساعدة أدناه متاحة الآن ومستعدة للاستماع إليك.",
    },
];

/// The language of a BCP 47 tag: `es-MX` → `es` (`es_MX` too), compared
/// without regard to case.
fn primary_language(tag: &str) -> &str {
    tag.trim().split(['-', '_']).next().unwrap_or("")
}

impl Default for SafetyConfig {
    /// DEFAULT HELPLINES, FOR THE OPERATOR TO REVIEW: correct when written,
    /// but numbers and services change, and a community needs the services
    /// of its own region (`[[safety.resources]]`). Every one here answers at
    /// any hour (the notice says the helplines are "open now" when no
    /// facilitator is online); keep that true of a replacement list.
    fn default() -> Self {
        let resource = |name: &str, contact: &str, url: Option<&str>, languages: &[&str]| ResourceSpec {
            name: name.into(),
            contact: contact.into(),
            url: url.map(Into::into),
            languages: languages.iter().map(|l| (*l).to_owned()).collect(),
        };
        SafetyConfig {
            // Empty: the shipped lists (`terms/`) apply; see the field.
            crisis_terms: HashMap::new(),
            resources: vec![
                resource(
                    "Emergency services",
                    "If you are in danger now, call your local emergency number (112 in Europe, 911 in North America, 999 in the UK, 000 in Australia).",
                    None,
                    &[],
                ),
                resource("Find A Helpline (free, confidential helplines in 130+ countries)", "findahelpline.com", Some("https://findahelpline.com"), &[]),
                // Before 988, which also answers in Spanish: Spanish speakers see 024 first.
                resource("Línea 024 (España)", "Llama al 024, gratis y a cualquier hora", None, &["es"]),
                resource("988 Suicide & Crisis Lifeline (US)", "Call or text 988", Some("https://988lifeline.org"), &["en", "es"]),
                resource("Samaritans (UK and Ireland)", "Call 116 123, free, day or night", Some("https://www.samaritans.org"), &["en"]),
                resource("Lifeline (Australia)", "Call 13 11 14", Some("https://www.lifeline.org.au"), &["en"]),
                resource(
                    "3114, numéro national de prévention du suicide (France)",
                    "Appelle le 3114, gratuit, 24 h/24 et 7 j/7",
                    Some("https://3114.fr"),
                    &["fr"],
                ),
                resource(
                    "TelefonSeelsorge (Deutschland)",
                    "Ruf an: 0800 111 0 111 oder 0800 111 0 222, kostenlos, rund um die Uhr",
                    Some("https://www.telefonseelsorge.de"),
                    &["de"],
                ),
            ],
            crisis_text: CRISIS_TEXTS[0].opening.into(),
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
    /// Every language's crisis terms, shipped and the operator's, as one
    /// automaton (see `Phrases`).
    crisis: Phrases,
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
///
/// A phrase in Arabic script is `its words ` without the leading space,
/// because Arabic writes "and", "so", "with", "to" and "the" as prefixes of
/// the next word ("الانتحار", "وأريد"): it matches at the start of a word or
/// after one of `ARABIC_PROCLITICS`, checked for each such match (rare).
struct Phrases {
    automaton: Option<AhoCorasick>,
    /// Per pattern: an Arabic one, whose match needs `after_proclitic`.
    arabic: Vec<bool>,
    any_arabic: bool,
}

/// Up to this many patterns the automaton is a DFA (a table lookup per byte
/// of text; 1.3 MB for the shipped lists); above it, the library's choice,
/// smaller and somewhat slower on long messages.
const DFA_MAX_PATTERNS: usize = 2_000;

/// What may stand, in the same word, before an Arabic phrase: و ف (and,
/// so), ب ل (with, to), the article ال, and their usual combinations.
/// Not ك nor س, which start too many unrelated words ("كان", "سوف").
const ARABIC_PROCLITICS: &[&str] = &["و", "ف", "ب", "ل", "ال", "وال", "فال", "بال", "لل", "ولل", "فلل", "وب", "فب", "ول", "فل"];

fn is_arabic(c: char) -> bool {
    matches!(c, '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' | '\u{08A0}'..='\u{08FF}')
}

/// Whether the match at `start` begins its word, or follows a proclitic.
fn after_proclitic(padded: &str, start: usize) -> bool {
    let before = &padded[..start];
    let prefix = &before[before.rfind(' ').map_or(0, |space| space + 1)..];
    prefix.is_empty() || ARABIC_PROCLITICS.contains(&prefix)
}

impl Phrases {
    /// Fails only for a list past the automaton's size limits (millions of terms).
    fn new<'a>(terms: impl IntoIterator<Item = &'a str>) -> Result<Phrases, aho_corasick::BuildError> {
        let mut patterns = Vec::new();
        let mut seen = HashSet::new();
        for term in terms {
            let words = normalize(term);
            let Some(first) = words.chars().next() else { continue };
            let mut add = |pattern: String| {
                if seen.insert(pattern.clone()) {
                    patterns.push(pattern);
                }
            };
            if is_arabic(first) {
                add(format!("{words} "));
                continue;
            }
            if words.contains(' ') {
                add(format!(" {} ", words.replace(' ', "")));
            }
            add(format!(" {words} "));
        }
        let arabic: Vec<bool> = patterns.iter().map(|p| !p.starts_with(' ')).collect();
        let any_arabic = arabic.contains(&true);
        let automaton = if patterns.is_empty() {
            None
        } else {
            let dfa = (patterns.len() <= DFA_MAX_PATTERNS).then(|| AhoCorasick::builder().kind(Some(AhoCorasickKind::DFA)).build(&patterns).ok());
            match dfa.flatten() {
                Some(dfa) => Some(dfa),
                None => Some(AhoCorasick::new(&patterns)?),
            }
        };
        Ok(Phrases { automaton, arabic, any_arabic })
    }

    /// `padded`: normalised text with a space before and after.
    fn found_in(&self, padded: &str) -> bool {
        let Some(ac) = &self.automaton else { return false };
        if !self.any_arabic {
            return ac.is_match(padded);
        }
        ac.find_overlapping_iter(padded).any(|m| !self.arabic[m.pattern().as_usize()] || after_proclitic(padded, m.start()))
    }
}

impl Safety {
    /// Compile the checks; fails for a crisis-term list or blocklist too large to compile.
    pub fn new(config: SafetyConfig) -> Result<Safety, aho_corasick::BuildError> {
        // A language the operator lists replaces the shipped list of that language.
        let replaced = |lang: &str| config.crisis_terms.keys().any(|key| primary_language(key).eq_ignore_ascii_case(lang));
        let shipped = SHIPPED_CRISIS_TERMS.iter().filter(|(lang, _)| !replaced(lang)).flat_map(|(_, file)| term_lines(file));
        let operators = config.crisis_terms.values().flatten().map(String::as_str);
        let crisis = Phrases::new(shipped.chain(operators))?;
        let blocklist = Phrases::new(config.blocklist.iter().map(String::as_str))?;
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
            street: re(
                r"(?-u:\b)\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][a-z]+\s+){1,3}(?i:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|close|crescent|place|pl|terrace|way|grove|gardens)(?-u:\b)",
            ),
            config,
        })
    }

    pub fn config(&self) -> &SafetyConfig {
        &self.config
    }

    /// The helplines in the configured order.
    pub fn resources(&self) -> Vec<Resource> {
        self.resources_for(None)
    }

    /// The helplines for a member writing in `locale` (BCP 47, from `hello`):
    /// those tagged with its language first (`es-MX` → `es`), then all the
    /// others, each group in the configured order.
    pub fn resources_for(&self, locale: Option<&str>) -> Vec<Resource> {
        let lang = locale.map(primary_language).filter(|lang| !lang.is_empty());
        let speaks = |spec: &ResourceSpec| lang.is_some_and(|lang| spec.languages.iter().any(|tag| primary_language(tag).eq_ignore_ascii_case(lang)));
        let (first, rest): (Vec<&ResourceSpec>, Vec<&ResourceSpec>) = self.config.resources.iter().partition(|spec| speaks(spec));
        first.into_iter().chain(rest).map(|r| Resource { name: r.name.clone(), contact: r.contact.clone(), url: r.url.clone() }).collect()
    }

    /// The words said with the helplines, in `locale`'s language where a
    /// translation exists (`es-MX` → `es` → `en`): the opening (in English,
    /// the operator's `crisis_text`), then truthfully whether a person was
    /// told: `facilitators_alerted` staff connections got the alert, or
    /// nobody is online and the helplines are open now.
    pub fn crisis_text(&self, locale: Option<&str>, facilitators_alerted: u32) -> String {
        let lang = locale.map(primary_language).unwrap_or("en");
        let text = CRISIS_TEXTS.iter().find(|t| t.lang.eq_ignore_ascii_case(lang)).unwrap_or(&CRISIS_TEXTS[0]);
        let opening = if text.lang == "en" { self.config.crisis_text.trim() } else { text.opening };
        let status = if facilitators_alerted > 0 { text.told } else { text.nobody_online };
        if opening.is_empty() { status.to_owned() } else { format!("{opening} {status}") }
    }

    /// Check a message's text. Crisis terms are those of every language,
    /// whatever the room's `_language`: members write in their own.
    pub fn check(&self, text: &str, _language: &str) -> Verdict {
        let mut padded = String::with_capacity(text.len() + 2);
        padded.push(' ');
        normalize_into(text, &mut padded);
        padded.push(' ');
        Verdict { crisis: self.crisis.found_in(&padded), pii: self.pii(text), blocked: self.blocklist.found_in(&padded) }
    }

    fn pii(&self, text: &str) -> Option<&'static str> {
        // "٠٧٧٠٠ ٩٠٠١٢٣" and "０７７００ ９００１２３" are phone numbers too.
        let text = &*digits::to_ascii(text);
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
            // Digits of other scripts are digits: Arabic-Indic, Persian, Devanagari, fullwidth.
            ("اتصل بي على ٠٧٧٠٠ ٩٠٠١٢٣", "a phone number"),
            ("شماره‌ام ۰۹۱۲ ۳۴۵ ۶۷۸۹ است", "a phone number"),
            ("मुझे ०७७०० ९००१२३ पर कॉल करें", "a phone number"),
            ("call me on ０７７００ ９００１２３", "a phone number"),
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

    /// The bare shipped configuration.
    fn shipped() -> Safety {
        Safety::new(SafetyConfig::default()).unwrap()
    }

    #[test]
    fn crisis_terms_match_in_every_shipped_language() {
        let s = shipped();
        for (lang, text) in [
            ("es", "Quiero morir, ya no puedo más"),
            ("es", "no quiero vivir así"),
            ("es", "a veces me quiero matar"),
            ("es", "he pensado en quitarme la vida"),
            ("es", "pienso en suicidarme"),
            ("es", "ojalá estuviera muerta"),
            ("fr", "je veux mourir"),
            ("fr", "j'ai pensé à me suicider"),
            ("fr", "j’ai envie d’en finir"),
            ("fr", "je vais me tuer ce soir"),
            ("fr", "je n'ai plus envie de vivre"),
            ("de", "Ich will sterben."),
            ("de", "manchmal denke ich daran, mich umzubringen"),
            ("de", "ich will nicht mehr leben"),
            ("de", "ich will mich umbringen"),
            ("de", "ich möchte mit dem Leben Schluss machen"),
            ("pt", "eu quero morrer"),
            ("pt", "às vezes penso em me matar"),
            ("pt", "não quero mais viver"),
            ("pt", "vou matar-me"),
            ("it", "voglio morire"),
            ("it", "penso di uccidermi, voglio uccidermi"),
            ("it", "voglio farla finita"),
            ("it", "non voglio più vivere"),
            ("nl", "ik wil dood"),
            ("nl", "ik denk aan zelfmoord"),
            ("nl", "ik wil niet meer leven"),
            ("nl", "ik ben bang dat ik mezelf iets aandoe"),
            ("pl", "chcę umrzeć"),
            ("pl", "myślę żeby zabić się"),
            ("pl", "chcę się zabić"),
            ("pl", "nie chcę już żyć"),
            ("pl", "mam myśli samobójcze"),
            ("ar", "أريد أن أموت"),
            ("ar", "أريد الانتحار"),
            ("ar", "أفكر في الانتحار كل ليلة"),
            ("ar", "سأقتل نفسي"),
            ("ar", "لا أريد أن أعيش بعد الآن"),
        ] {
            assert!(s.check(text, lang).crisis, "{lang}: should match: {text}");
        }
    }

    #[test]
    fn accents_and_case_do_not_hide_a_crisis() {
        let s = shipped();
        for text in [
            "chce umrzec",
            "CHCĘ UMRZEĆ",
            "nie chce zyc",
            "quiero morír",
            "QUIERO MORIR",
            "ojala estuviera muerto",
            "ICH WILL STERBEN",
            "ich mochte sterben",
            "ich will mit dem Leben Schluß machen",
            "JE VEUX MOURIR",
            "mettre fin a mes jours",
            "nao quero viver",
            "NÃO QUERO VIVER",
            "non voglio piu vivere",
            "mijn leven beeindigen",
            "suicidaal",
            "ｗａｎｔ ｔｏ ｄｉｅ",
            "ich will\u{200b} sterben",
        ] {
            assert!(s.check(text, "en").crisis, "should match: {text}");
        }
    }

    #[test]
    fn arabic_matches_with_or_without_harakat_tatweel_and_letter_variants() {
        let s = shipped();
        for text in [
            "اريد ان اموت",
            "أُرِيدُ أَنْ أَمُوتَ",
            "أريـــد أن أمـــوت",
            "إريد إن أموت",
            "ﺃﺭﻳﺪ ﺃﻥ ﺃﻣﻮﺕ",
            "وأريد أن أموت",
            "فكرت بالانتحار",
            "اتمني الموت",
            "أتمنى لو كنت ميته",
            "لم اعد اريد العيش",
            "عندي ٣ أطفال و أريد أن أموت",
        ] {
            assert!(s.check(text, "ar").crisis, "should match: {text}");
        }
        // A phrase may follow a prefix in the same word, not any letters:
        // "أصلا" (actually) ends in "لا", and "أصلا أريد أن أعيش" wants to live.
        for text in ["أنا أصلا أريد أن أعيش", "عملية انتحارية في الأخبار"] {
            assert!(!s.check(text, "ar").crisis, "should not match: {text}");
        }
    }

    #[test]
    fn idioms_and_grief_are_not_a_crisis_in_any_language() {
        let s = shipped();
        for text in [
            // en
            "this traffic is killing me",
            "I could kill for a coffee",
            "my mother died in March",
            "I'm dying to see the new film",
            // es
            "me muero de risa",
            "me muero de hambre",
            "mi madre murió hace un año",
            "este calor me mata",
            "mi hermano se suicidó",
            // fr
            "je meurs de faim",
            "je meurs de rire",
            "ma mère est morte",
            "ce boulot va me tuer",
            "on doit en finir avec ce projet",
            // de
            "ich sterbe vor Langeweile",
            "meine Mutter ist gestorben",
            "mein Chef wird mich umbringen",
            "das bringt mich noch um",
            "ich lach mich tot",
            // pt
            "morrendo de rir",
            "estou morrendo de fome",
            "esse calor vai me matar",
            "minha mãe morreu",
            // it
            "muoio dal ridere",
            "sto morendo di fame",
            "mia madre è morta",
            "devi farla finita di lamentarti",
            // nl
            "ik ga dood van de honger",
            "ik lach me dood",
            "mijn moeder is dood",
            "we moeten er een einde aan maken",
            // pl
            "umieram ze śmiechu",
            "umieram z głodu",
            "moja mama umarła",
            "można się zabić na tym lodzie",
            // ar
            "سأموت من الضحك",
            "أموت من الجوع",
            "ماتت أمي",
            "توفي والدي العام الماضي",
            "أنهي حياتي الجامعية هذا العام",
            "تعرضت لإيذاء نفسي وجسدي",
        ] {
            for lang in ["en", "es", "ar"] {
                assert!(!s.check(text, lang).crisis, "{lang}: should not match: {text}");
            }
        }
    }

    #[test]
    fn a_crisis_in_another_language_than_the_rooms_is_caught() {
        let s = shipped();
        assert!(s.check("no quiero vivir", "en").crisis);
        assert!(s.check("I want to die", "es").crisis);
        assert!(s.check("أريد أن أموت", "fr").crisis);
        assert!(s.check("chcę umrzeć", "xx-unknown").crisis);
    }

    #[test]
    fn every_shipped_term_matches_itself_and_is_well_formed() {
        let s = shipped();
        for (lang, file) in SHIPPED_CRISIS_TERMS {
            assert!(term_lines(file).count() >= 20, "{lang}: too short a list");
            for term in term_lines(file) {
                let words = normalize(term);
                assert!(!words.is_empty(), "{lang}: {term:?} normalises to nothing");
                // A one-letter word at either end could join a neighbour's.
                let (first, last) = (words.split(' ').next().unwrap(), words.split(' ').next_back().unwrap());
                assert!(first.chars().nth(1).is_some() && last.chars().nth(1).is_some(), "{lang}: {term:?} ends in a one-letter word");
                assert!(s.check(term, lang).crisis, "{lang}: {term:?} does not match itself");
                assert!(s.check(&format!("so, {} ...", term.to_uppercase()), "en").crisis, "{lang}: {term:?} upper case");
            }
        }
    }

    #[test]
    fn operator_terms_replace_that_languages_shipped_list_only() {
        let config = SafetyConfig {
            crisis_terms: HashMap::from([
                ("ES-mx".to_owned(), vec!["estoy en el límite".to_owned()]),
                ("de".to_owned(), Vec::new()),
                ("sv".to_owned(), vec!["jag vill dö".to_owned()]),
            ]),
            ..SafetyConfig::default()
        };
        let s = Safety::new(config).unwrap();
        assert!(s.check("estoy en el limite", "es").crisis, "the operator's Spanish");
        assert!(!s.check("quiero morir", "es").crisis, "the shipped Spanish list is replaced");
        assert!(!s.check("ich will sterben", "de").crisis, "an empty list turns German off");
        assert!(s.check("Jag vill dö", "en").crisis, "a language Kindred does not ship");
        assert!(s.check("je veux mourir", "es").crisis, "other shipped languages stay");
        assert!(s.check("I want to die", "es").crisis, "English stays");
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

    #[test]
    fn resources_put_the_members_language_first() {
        let s = shipped();
        let names = |locale: Option<&str>| s.resources_for(locale).into_iter().map(|r| r.name).collect::<Vec<_>>();
        let original = names(None);
        assert_eq!(s.resources().into_iter().map(|r| r.name).collect::<Vec<_>>(), original);
        assert_eq!(original[0], "Emergency services");
        let spanish = names(Some("es-MX"));
        assert!(spanish[0].starts_with("Línea 024"), "{spanish:?}");
        assert!(spanish[1].starts_with("988"), "{spanish:?}");
        assert_eq!(spanish[2], "Emergency services");
        assert!(names(Some("en-GB"))[0].starts_with("988"));
        assert!(names(Some("fr-CA"))[0].starts_with("3114"));
        assert!(names(Some("de_AT"))[0].starts_with("TelefonSeelsorge"));
        assert_eq!(names(Some("sv-SE")), original);
        assert_eq!(names(Some("")), original);
        for locale in [None, Some("es"), Some("fr"), Some("zz")] {
            assert_eq!(names(locale).len(), original.len());
        }
    }

    #[test]
    fn resources_and_texts_parse_from_the_config_file() {
        let config: SafetyConfig = toml::from_str(
            r#"
            crisis_text = "We're here with you."
            [crisis_terms]
            en = ["at the end of my rope"]
            [[resources]]
            name = "Local line"
            contact = "Call 0800 000 000"
            [[resources]]
            name = "Línea local"
            contact = "Llama al 0800 000 001"
            languages = ["es-ES"]
            "#,
        )
        .unwrap();
        assert!(config.resources[0].languages.is_empty());
        let s = Safety::new(config).unwrap();
        assert_eq!(s.resources_for(Some("es"))[0].name, "Línea local");
        assert_eq!(s.resources_for(Some("en"))[0].name, "Local line");
        assert!(s.check("I'm at the end of my rope", "en").crisis);
        assert!(!s.check("I want to die of embarrassment", "en").crisis, "the operator replaced English");
        assert!(s.crisis_text(Some("en"), 0).starts_with("We're here with you. No facilitator"));
        assert!(toml::from_str::<SafetyConfig>("crisis_txt = \"typo\"").is_err(), "unknown keys are refused");
    }

    #[test]
    fn the_crisis_text_says_truthfully_whether_someone_was_told() {
        let s = shipped();
        let none = s.crisis_text(Some("en"), 0);
        let told = s.crisis_text(Some("en"), 2);
        assert!(none.contains("No facilitator is online right now") && none.contains("open now"), "{none}");
        assert!(!none.contains("let a facilitator"), "{none}");
        assert!(told.contains("We've let a facilitator here know"), "{told}");
        assert!(!told.contains("have been let know") && !told.contains("online"), "{told}");
        assert_eq!(s.crisis_text(Some("en"), 1), told);
        for lang in ["en", "es", "fr", "de", "pt", "it", "nl", "pl", "ar"] {
            let (none, told) = (s.crisis_text(Some(lang), 0), s.crisis_text(Some(lang), 1));
            assert_ne!(none, told, "{lang}");
            assert!(none.len() > 40 && none.len() < 400 && told.len() < 400, "{lang}");
            if lang != "en" {
                assert_ne!(none, s.crisis_text(Some("en"), 0), "{lang} is translated");
            }
        }
        assert!(s.crisis_text(Some("es"), 0).contains("no hay ninguna persona facilitadora conectada"));
        assert!(s.crisis_text(Some("fr"), 3).contains("Nous avons prévenu"));
    }

    #[test]
    fn the_crisis_text_falls_back_from_region_to_language_to_english() {
        let s = shipped();
        for n in [0, 1] {
            assert_eq!(s.crisis_text(Some("es-MX"), n), s.crisis_text(Some("es"), n));
            assert_eq!(s.crisis_text(Some("PT_br"), n), s.crisis_text(Some("pt"), n));
            assert_eq!(s.crisis_text(Some("sv-SE"), n), s.crisis_text(Some("en"), n));
            assert_eq!(s.crisis_text(Some(""), n), s.crisis_text(Some("en"), n));
            assert_eq!(s.crisis_text(None, n), s.crisis_text(Some("en"), n));
        }
    }

    #[test]
    fn the_operators_crisis_text_replaces_the_english_opening_only() {
        let s = Safety::new(SafetyConfig { crisis_text: "We're glad you said something.".into(), ..SafetyConfig::default() }).unwrap();
        assert_eq!(
            s.crisis_text(Some("en-US"), 1),
            "We're glad you said something. We've let a facilitator here know, and they may reach out to you gently. The helplines below are there to listen too."
        );
        assert_eq!(s.crisis_text(Some("de"), 1), shipped().crisis_text(Some("de"), 1));
        let bare = Safety::new(SafetyConfig { crisis_text: String::new(), ..SafetyConfig::default() }).unwrap();
        assert!(bare.crisis_text(None, 0).starts_with("No facilitator is online right now"));
    }
}
