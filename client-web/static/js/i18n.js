// The string tables and the language in use, and locale-aware formatting of
// times and names. Screens ask here for every word they show; no module
// hard-codes user-facing text.
//
// The language comes from the member's choice on this device (localStorage),
// else from navigator.languages (es-MX → es → en). It can change while the
// page runs: setLanguage() swaps the table, sets <html lang dir>, rewrites
// every label made with L() and tells the screens (`languageEvents`) so they
// render again. A key missing from a table falls back to English.

import en from './strings/en.js';
import es from './strings/es.js';
import fr from './strings/fr.js';
import de from './strings/de.js';
import pt from './strings/pt.js';
import ar from './strings/ar.js';

/** Every table, by language code, in the picker's order. */
export const TABLES = { en, es, fr, de, pt, ar };
/** The languages written right to left. */
const RTL = new Set(['ar', 'fa', 'he', 'ur']);
const STORE_KEY = 'kindred.language';

/** Fires `change` (detail: the language code) after the language changed. */
export const languageEvents = new EventTarget();

let table = en;
/** The language of the interface, e.g. "es". */
export let lang = 'en';
/** The locale dates and numbers are formatted in: the language, with the browser's region when it has one for it ("es-MX"). */
export let formatLocale = 'en';

/** The string (or the result of the string function) for `key`; English when this language lacks it. */
export function t(key, ...args) {
  let v = table[key];
  if (v === undefined) v = en[key];
  if (v === undefined) return key;
  return typeof v === 'function' ? v(...args) : v;
}

/** The first of `wanted` (BCP 47 tags, best first) we have a table for: the tag itself, else its language; English otherwise. */
export function negotiate(wanted) {
  for (const tag of wanted || []) {
    const lower = String(tag || '').toLowerCase();
    if (Object.hasOwn(TABLES, lower)) return lower;
    const base = lower.split('-')[0];
    if (Object.hasOwn(TABLES, base)) return base;
  }
  return 'en';
}

function browserLanguages() {
  return typeof navigator === 'undefined' ? [] : navigator.languages?.length ? navigator.languages : [navigator.language].filter(Boolean);
}

function saved() {
  try {
    const v = localStorage.getItem(STORE_KEY);
    return v && Object.hasOwn(TABLES, v) ? v : null;
  } catch {
    return null;
  }
}

/** The language to start in: the one chosen on this device, else the browser's. */
export function initialLanguage() {
  return saved() || negotiate(browserLanguages());
}

export function isRtl(code = lang) {
  return RTL.has(String(code).split('-')[0]);
}

/** A language's name in that language, for the picker ("Español", "العربية"). */
export function nativeName(code) {
  const own = TABLES[code]?.languageName;
  if (own) return own;
  try {
    return new Intl.DisplayNames([code], { type: 'language' }).of(code) || code;
  } catch {
    return code;
  }
}

// ---- labels that follow the language ------------------------------------

/** A label to be kept in the language in use: h() and append() accept it as a child or attribute value. */
export class Live {
  constructor(key, args) {
    this.key = key;
    this.args = args;
  }

  toString() {
    return t(this.key, ...this.args);
  }
}

/** `L('send')`: like t('send'), but the node it is put in is rewritten when the language changes. */
export function L(key, ...args) {
  return new Live(key, args);
}

const bound = []; // {ref: WeakRef<Node>, attr: string|null, live: Live}

/** Keep `node`'s text (attr null) or attribute in the language in use; returns the current text. */
export function bindLive(node, attr, live) {
  bound.push({ ref: new WeakRef(node), attr, live });
  return live.toString();
}

function relabel() {
  for (let i = bound.length - 1; i >= 0; i--) {
    const { ref, attr, live } = bound[i];
    const node = ref.deref();
    if (!node) {
      bound.splice(i, 1);
      continue;
    }
    const text = live.toString();
    if (attr === null) node.textContent = text;
    else node.setAttribute(attr, text);
  }
}

// ---- switching ------------------------------------------------------------

let timeFmt;
let dayFmt;
let fullFmt;
let relDay;

function localeFor(code) {
  // "en-GB" for an English UI in a British browser; plain "es" for a Spanish UI chosen in that same browser.
  const match = browserLanguages().find((tag) => String(tag).toLowerCase().split('-')[0] === code);
  if (match) {
    try {
      return Intl.getCanonicalLocales(match)[0];
    } catch {
      /* not a valid tag: the language alone */
    }
  }
  return code;
}

/** Use `code` from now on; `remember` keeps it on this device. */
export function setLanguage(code, { remember = false } = {}) {
  const next = Object.hasOwn(TABLES, code) ? code : 'en';
  if (remember) {
    try {
      localStorage.setItem(STORE_KEY, next);
    } catch {
      /* storage disabled: the choice lasts this visit */
    }
  }
  const changed = next !== lang || !timeFmt;
  lang = next;
  table = TABLES[next];
  formatLocale = localeFor(next);
  timeFmt = new Intl.DateTimeFormat(formatLocale, { hour: 'numeric', minute: '2-digit' });
  dayFmt = new Intl.DateTimeFormat(formatLocale, { weekday: 'long', day: 'numeric', month: 'long' });
  fullFmt = new Intl.DateTimeFormat(formatLocale, { dateStyle: 'medium', timeStyle: 'short' });
  relDay = new Intl.RelativeTimeFormat(formatLocale, { numeric: 'auto' });
  if (typeof document !== 'undefined') {
    document.documentElement.lang = next;
    document.documentElement.dir = isRtl(next) ? 'rtl' : 'ltr';
  }
  if (changed) {
    relabel();
    languageEvents.dispatchEvent(new CustomEvent('change', { detail: next }));
  }
  return next;
}

setLanguage(initialLanguage());

// ---- formatting -----------------------------------------------------------

function parse(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "7:02 PM" (or "19:02") in the reader's own time zone and language. */
export function formatTime(iso) {
  const d = parse(iso);
  return d ? timeFmt.format(d) : '';
}

/** "today at 7:00 PM", "mañana a las 19:00" or "Thursday, 27 November at 7:00 PM", in local time. */
export function formatWhen(iso, now = new Date()) {
  const d = parse(iso);
  if (!d) return '';
  const startOfDay = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((startOfDay(d) - startOfDay(now)) / 86400000);
  let day;
  if (days === 0 || days === 1) day = relDay.format(days, 'day');
  else if (days > 1 && days < 300) day = dayFmt.format(d);
  else return fullFmt.format(d);
  return t('atTime', day, timeFmt.format(d));
}

/** Names joined the way the language joins them: "A and B", "A y B", "أ وب". */
export function formatList(items, type = 'conjunction') {
  return new Intl.ListFormat(formatLocale, { style: 'long', type }).format(items);
}

let names = null;
/** A language code as its name in the reader's language ("en" → "English", or "inglés"). */
export function languageName(code) {
  try {
    if (names?.lang !== lang) names = { lang, fmt: new Intl.DisplayNames([lang], { type: 'language' }) };
    return names.fmt.of(code) || code;
  } catch {
    return code;
  }
}

/** The member's languages, best first: the interface's, then the browser's (base codes, no repeats). */
export function memberLanguages() {
  const out = [lang];
  for (const tag of browserLanguages()) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (base && !out.includes(base)) out.push(base);
  }
  return out;
}
