// The string table in use and locale-aware formatting of times. Screens ask
// here for every word they show; no module hard-codes user-facing text.

import en from './strings/en.js';

const table = en;

/** The string (or the result of the string function) for `key`. */
export function t(key, ...args) {
  const v = table[key];
  if (v === undefined) return key;
  return typeof v === 'function' ? v(...args) : v;
}

export const lang = table.lang;

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function parse(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "7:02 PM" in the reader's own time zone. */
export function formatTime(iso) {
  const d = parse(iso);
  return d ? timeFmt.format(d) : '';
}

/** "today at 7:00 PM", "tomorrow at 7:00 PM" or "Thursday, 27 November at 7:00 PM", in local time. */
export function formatWhen(iso, now = new Date()) {
  const d = parse(iso);
  if (!d) return '';
  const startOfDay = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((startOfDay(d) - startOfDay(now)) / 86400000);
  let day;
  if (days === 0) day = t('today');
  else if (days === 1) day = t('tomorrow');
  else if (days > 1 && days < 300) day = dayFmt.format(d);
  else return fullFmt.format(d);
  return t('atTime', day, timeFmt.format(d));
}

/** A language code as its name in the reader's language ("en" → "English"). */
export function languageName(code) {
  try {
    const names = new Intl.DisplayNames([lang], { type: 'language' });
    return names.of(code) || code;
  } catch {
    return code;
  }
}
