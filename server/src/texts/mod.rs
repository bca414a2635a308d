//! What the server says to people, in their language: one catalogue per
//! language (`texts/<lang>.toml`, a flat table of key → text with `{name}`
//! placeholders), chosen by `hello.locale` (BCP 47, `es-MX` → `es` → `en`).
//! A key a language lacks falls back to English; a test fails when one is
//! missing or its placeholders differ.
//!
//! A session's language is task-local: the session task runs inside
//! [`scope`], `hello` sets it with [`set_lang`], and every text written for
//! that connection ([`t`], [`f`], a [`Refusal`](crate::refusal::Refusal)
//! turned into an error) comes out in it. Outside a session (the hub
//! acting for someone else, the admin API) texts are English; clients can
//! still map every error `code` to their own words.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::LazyLock;

/// The languages with a catalogue, English first (the fallback).
const SOURCES: &[(&str, &str)] = &[
    ("en", include_str!("en.toml")),
    ("es", include_str!("es.toml")),
    ("fr", include_str!("fr.toml")),
    ("de", include_str!("de.toml")),
    ("pt", include_str!("pt.toml")),
    ("ar", include_str!("ar.toml")),
];

type Catalogue = HashMap<String, String>;

static CATALOGUES: LazyLock<Vec<Catalogue>> =
    LazyLock::new(|| SOURCES.iter().map(|(lang, text)| toml::from_str(text).unwrap_or_else(|e| panic!("texts/{lang}.toml is not valid: {e}"))).collect());

/// A language with a catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Lang(u8);

impl Lang {
    pub(crate) const EN: Lang = Lang(0);

    /// The catalogue for a BCP 47 locale: the whole tag, then its language, then English.
    pub(crate) fn of(locale: Option<&str>) -> Lang {
        let Some(locale) = locale else { return Lang::EN };
        let primary = locale.split(['-', '_']).next().unwrap_or("");
        SOURCES.iter().position(|(lang, _)| lang.eq_ignore_ascii_case(locale) || lang.eq_ignore_ascii_case(primary)).map_or(Lang::EN, |i| Lang(i as u8))
    }

    #[cfg(test)]
    pub(crate) fn code(self) -> &'static str {
        SOURCES[usize::from(self.0)].0
    }
}

tokio::task_local! {
    static LANG: Cell<Lang>;
}

/// Run a session's task with its own language (English until `hello`).
pub(crate) fn scope<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    LANG.scope(Cell::new(Lang::EN), fut)
}

/// The language of the connection this task serves (`hello.locale`).
pub(crate) fn set_lang(lang: Lang) {
    let _outside_a_session = LANG.try_with(|l| l.set(lang));
}

pub(crate) fn lang() -> Lang {
    LANG.try_with(Cell::get).unwrap_or(Lang::EN)
}

/// The text for `key` in this connection's language.
pub(crate) fn t(key: &str) -> String {
    text_in(lang(), key).to_owned()
}

/// [`t`] with its `{name}` placeholders filled.
pub(crate) fn f(key: &str, args: &[(&str, &(dyn Display + Sync))]) -> String {
    let mut out = text_in(lang(), key).to_owned();
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), &value.to_string());
    }
    out
}

/// The text for `key` in a given language (for someone other than this connection's reader).
pub(crate) fn in_lang(lang: Lang, key: &str) -> String {
    text_in(lang, key).to_owned()
}

fn text_in(lang: Lang, key: &str) -> &'static str {
    let catalogues = &*CATALOGUES;
    match catalogues[usize::from(lang.0)].get(key).or_else(|| catalogues[0].get(key)) {
        Some(text) => text,
        None => {
            debug_assert!(false, "no text has the key {key}");
            "Something went wrong."
        }
    }
}

/// Personal details, as named in a sentence ("it contains {kind}"); `kind` is safety's English name.
pub(crate) fn pii_kind(kind: &str) -> String {
    let key = match kind {
        "an e-mail address" => "pii-email",
        "a link" => "pii-link",
        "a phone number" => "pii-phone",
        "a street address" => "pii-address",
        _ => return kind.to_owned(),
    };
    t(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn placeholders(text: &str) -> BTreeSet<&str> {
        text.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name)).collect()
    }

    #[test]
    fn every_language_has_every_english_key_with_the_same_placeholders() {
        let english = &CATALOGUES[0];
        for (i, (lang, _)) in SOURCES.iter().enumerate().skip(1) {
            let catalogue = &CATALOGUES[i];
            let missing: Vec<&String> = english.keys().filter(|k| !catalogue.contains_key(*k)).collect();
            assert!(missing.is_empty(), "texts/{lang}.toml lacks {missing:?}");
            let extra: Vec<&String> = catalogue.keys().filter(|k| !english.contains_key(*k)).collect();
            assert!(extra.is_empty(), "texts/{lang}.toml has keys English has not: {extra:?}");
            for (key, text) in catalogue {
                assert_eq!(placeholders(text), placeholders(&english[key]), "texts/{lang}.toml, {key}");
                assert!(!text.trim().is_empty(), "texts/{lang}.toml, {key} is empty");
            }
        }
    }

    #[test]
    fn a_locale_falls_back_from_region_to_language_to_english() {
        assert_eq!(Lang::of(Some("es-MX")).code(), "es");
        assert_eq!(Lang::of(Some("pt_BR")).code(), "pt");
        assert_eq!(Lang::of(Some("AR")).code(), "ar");
        assert_eq!(Lang::of(Some("xx-YY")), Lang::EN);
        assert_eq!(Lang::of(None), Lang::EN);
    }

    #[tokio::test]
    async fn a_session_speaks_its_language_and_everything_else_english() {
        assert_eq!(t("slow-mode"), "Slow mode is on: take a breath, then send again.");
        let spanish = scope(async {
            set_lang(Lang::of(Some("es-ES")));
            f("too-long", &[("max", &2000), ("chars", &2345)])
        })
        .await;
        assert!(spanish.contains("2000") && spanish.contains("2345") && !spanish.contains("Messages"), "{spanish}");
        assert_eq!(lang(), Lang::EN, "outside the session's scope");
    }
}
