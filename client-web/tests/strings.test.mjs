// The string tables, without a browser: every language has every key English
// has, with the same kind of value (a function where English has one, a list
// of the same length where English has a list), and every function runs and
// gives text. A key English gains fails here until each language has it; in
// the page a missing key falls back to English.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dir = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'static', 'js', 'strings');
const en = (await import(pathToFileURL(resolve(dir, 'en.js')).href)).default;
const files = readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'en.js');

// Arguments to call every string function with: a count or a name first
// (every plural category of every language among the counts), names after.
const SAMPLE_ARGS = [0, 1, 2, 3, 11, 100, 1.5, 'Quiet Heron 42'].map((first) => [first, 'Grief and loss', 'Sam']);

function check(name, table) {
  const problems = [];
  for (const [key, value] of Object.entries(en)) {
    const v = table[key];
    if (v === undefined) {
      problems.push(`missing: ${key}`);
      continue;
    }
    if (typeof value === 'function') {
      if (typeof v !== 'function') {
        problems.push(`${key}: a function in English, ${typeof v} here`);
        continue;
      }
      for (const args of SAMPLE_ARGS) {
        let out;
        try {
          out = v(...args);
        } catch (e) {
          problems.push(`${key}(${args.join(', ')}) throws: ${e.message}`);
          continue;
        }
        if (!['string', 'number'].includes(typeof out) || !String(out).trim() || (typeof args[0] === 'number' ? /undefined|NaN|\[object/ : /undefined|\[object/).test(out)) problems.push(`${key}(${args.join(', ')}) gives ${JSON.stringify(out)}`);
      }
    } else if (Array.isArray(value)) {
      if (!Array.isArray(v)) problems.push(`${key}: a list in English`);
      else if (key !== 'helpLines' && v.length !== value.length) problems.push(`${key}: ${v.length} items, English has ${value.length}`);
      else if (v.some((x) => (typeof x === 'string' ? !x.trim() : typeof x !== 'object'))) problems.push(`${key}: an empty item`);
    } else if (typeof v !== typeof value || (typeof v === 'string' && !v.trim())) problems.push(`${key}: ${JSON.stringify(v)}`);
  }
  for (const key of Object.keys(table)) if (!(key in en)) problems.push(`not in English (a typo?): ${key}`);
  return problems;
}

test('the languages', () => {
  const langs = files.map((f) => f.replace(/\.js$/, '')).sort();
  for (const code of ['ar', 'de', 'es', 'fr', 'pt']) assert.ok(langs.includes(code), `strings/${code}.js is missing`);
});

for (const file of files) {
  test(`strings/${file} has every key English has`, async () => {
    const table = (await import(pathToFileURL(resolve(dir, file)).href)).default;
    assert.equal(`${table.lang}.js`, file, 'its `lang` is its file name');
    assert.ok(table.languageName && table.languageName !== en.languageName, 'its own name, in itself');
    assert.deepEqual(check(file, table), []);
  });
}

test('the fallback to English and the choice of language', async () => {
  const i18n = await import(pathToFileURL(resolve(dir, '..', 'i18n.js')).href);
  assert.equal(i18n.negotiate(['es-MX', 'en']), 'es');
  assert.equal(i18n.negotiate(['pt-BR']), 'pt');
  assert.equal(i18n.negotiate(['ja', 'fr-CA']), 'fr');
  assert.equal(i18n.negotiate(['ja']), 'en');
  assert.equal(i18n.negotiate([]), 'en');
  assert.equal(i18n.isRtl('ar'), true);
  assert.equal(i18n.isRtl('es'), false);
  i18n.setLanguage('es');
  assert.notEqual(i18n.t('joinRoom'), en.joinRoom);
  // A key a language lacks is said in English.
  const kept = i18n.TABLES.es.joinRoom;
  delete i18n.TABLES.es.joinRoom;
  try {
    assert.equal(i18n.t('joinRoom'), en.joinRoom);
  } finally {
    i18n.TABLES.es.joinRoom = kept;
  }
  assert.equal(i18n.t('no such key'), 'no such key');
  i18n.setLanguage('en');
  assert.equal(i18n.t('joinRoom'), en.joinRoom);
});
