// The web client in several languages: a Spanish browser gets Spanish
// screens (and dates, and the server's crisis notice through hello.locale);
// an Arabic one a mirrored right-to-left page that axe-core passes; an
// Arabic message in an English room reads right to left; the language picker
// switches without a reload and is remembered after one; the directory
// filters by language and finds rooms by words in any language. Also makes
// the Spanish and Arabic phone screenshots (docs/screenshots).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startServer } from './server.mjs';
import { serverAndBrowser, watchErrors, acceptRulesIfAsked, sendMessage, waitForMessage, seriousViolations, screenshotPath, WAIT } from './browser.mjs';

const env = serverAndBrowser();
const PHONE = { width: 390, height: 844 };

/** A member whose browser speaks `locale` (navigator.languages and Intl). */
async function openIn(locale, { viewport = { width: 1200, height: 800 }, bypassCSP = false, timezoneId = 'Europe/Madrid', server = env.server } = {}) {
  const context = await env.browser.newContext({ viewport, reducedMotion: 'reduce', bypassCSP, locale, timezoneId });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}/`);
  await page.locator('.conn[data-state="online"]').waitFor({ state: 'attached', timeout: WAIT });
  await page.locator('.room-card').first().waitFor({ timeout: WAIT });
  return { context, page, errors };
}

/** Join by room id through its card's Join button, accepting the rules; whatever the language. */
async function join(page, roomId) {
  await page.locator('#screen-directory:not([hidden])').waitFor({ timeout: WAIT });
  await page.locator(`#room-title-${roomId}`).locator('xpath=ancestor::li').locator('.room-join').click();
  await acceptRulesIfAsked(page);
}

test('app.css uses no physical left or right, so the layout mirrors for right-to-left', () => {
  const css = readFileSync(new URL('../static/app.css', import.meta.url), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  // Declarations only: a selector may name a class such as `.session-left`.
  const declarations = css.replace(/[^{}]*\{/g, '{\n').split('\n');
  const physical = declarations.filter((line) => /(^|[^\w-])(left|right)\b|-(left|right)\b|translateX/.test(line));
  assert.deepEqual(physical, [], 'use inline-start/inline-end instead');
});

function docLang(page) {
  return page.evaluate(() => ({ lang: document.documentElement.lang, dir: document.documentElement.dir }));
}

/** The ids of the room cards on screen, in order. */
function shownRooms(page) {
  return page.locator('.room-card .room-name').evaluateAll((els) => els.map((el) => el.id.replace(/^room-title-/, '')));
}

test('a Spanish browser: directory, rules, dates and the crisis notice in Spanish', { timeout: 90000 }, async () => {
  const { page, context, errors } = await openIn('es-ES');
  assert.deepEqual(await docLang(page), { lang: 'es', dir: 'ltr' });
  assert.equal(await page.locator('#dir-title').textContent(), 'Encuentra una sala');
  assert.equal(await page.locator('label[for="dir-search"]').textContent(), 'Buscar salas');
  assert.equal(await page.getByRole('button', { name: 'Ayuda inmediata' }).count(), 1);
  assert.match(await page.locator('.dir-count').textContent(), /^\d+ salas$/);
  // The picker shows the language by its own name.
  assert.equal(await page.locator('#language-picker option:checked').textContent(), 'Español');

  // The language filter offers every language of the directory, named in
  // Spanish, the member's own first; the rooms in Spanish come first.
  const options = await page.locator('#dir-language option').allTextContents();
  assert.equal(options[0], 'Todos los idiomas');
  assert.equal(options[1], 'español');
  for (const name of ['inglés', 'francés', 'alemán', 'portugués', 'árabe']) assert.ok(options.includes(name), `${name} in ${options}`);
  const first = await page.locator('.room-card.is-open .room-name').first().getAttribute('lang');
  assert.equal(first, 'es', 'rooms in the member’s language come first');

  // Filtering by French leaves only French rooms, and topics of French rooms.
  await page.locator('#dir-language').selectOption('fr');
  assert.deepEqual(await shownRooms(page), ['grief-fr']);
  assert.deepEqual((await page.locator('#dir-topic option').allTextContents()).slice(1), ['chagrin', 'deuil', 'perte']);
  await page.locator('#dir-language').selectOption('');

  // Search in any language, without accents or case.
  await page.locator('#dir-search').fill('duelo');
  assert.deepEqual(await shownRooms(page), ['grief-es']);
  await page.locator('#dir-search').fill('PERDIDA');
  assert.deepEqual(await shownRooms(page), ['grief-es']);
  await page.locator('#dir-search').fill('trauer');
  assert.deepEqual(await shownRooms(page), ['grief-de']);
  await page.locator('#dir-search').fill('الحزن');
  assert.deepEqual(await shownRooms(page), ['grief-ar']);
  await page.locator('#dir-search').fill('grief');
  assert.ok((await shownRooms(page)).includes('grief'), 'English words still find English rooms');
  await page.locator('#dir-search').fill('');

  // Dates: all Spanish, the day and the time in one language.
  const when = await page.evaluate(async () => {
    const i18n = await import('/js/i18n.js');
    const now = new Date('2025-12-08T10:00:00Z');
    return [i18n.formatWhen('2025-12-11T18:00:00Z', now), i18n.formatWhen('2025-12-09T18:00:00Z', now), i18n.t('nextSession', i18n.formatWhen('2025-12-11T18:00:00Z', now))];
  });
  assert.deepEqual(when, ['jueves, 11 de diciembre a las 19:00', 'mañana a las 19:00', 'Próxima sesión: jueves, 11 de diciembre a las 19:00']);
  const next = await page.locator('#room-title-grief-evening').locator('xpath=ancestor::li').locator('.room-when').textContent();
  assert.doesNotMatch(next, /\b(at|Next|Open)\b/, `no English in "${next}"`);

  // The rules screen, in Spanish around the room's own (Spanish) rules.
  await page.locator('#room-title-grief-es').locator('xpath=ancestor::li').locator('.room-join').click();
  await page.locator('#rules-accept').waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await page.locator('#rules-title').textContent(), 'Antes de entrar en Duelo y pérdida');
  assert.equal(await page.locator('#rules-accept').textContent(), 'Las respetaré. Entrar en la sala');
  assert.equal(await page.locator('.rules-text').getAttribute('lang'), 'es');
  assert.match((await page.locator('.rules-list li').first().textContent()) || '', /^Lo que se comparte aquí se queda aquí/);
  await page.locator('#rules-accept').click();
  await page.locator('#composer-text').waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await page.locator('#composer-text').getAttribute('placeholder'), 'Escribe un mensaje…');

  // hello.locale was "es": the server's crisis notice is in Spanish, with Spain's helpline first.
  assert.equal(await page.evaluate(() => window.kindred.conn.locale), 'es');
  await sendMessage(page, 'A veces pienso que quiero morir');
  await page.locator('.notice-crisis').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#crisis-title').textContent(), 'No estás solo ni sola');
  assert.match(await page.locator('.notice-crisis .resource-name').first().textContent(), /024/);
  assert.doesNotMatch(await page.locator('.crisis-text').textContent(), /\b(you|the|are)\b/i, 'the server wrote it in Spanish');
  assert.deepEqual(errors, []);
  await context.close();
});

test('Arabic: right to left, mirrored, and no serious axe violation', { timeout: 120000 }, async () => {
  const en = await openIn('en-GB', { timezoneId: 'Europe/London' });
  const { page, context, errors } = await openIn('ar', { bypassCSP: true, timezoneId: 'Asia/Beirut' });
  assert.deepEqual(await docLang(page), { lang: 'ar', dir: 'rtl' });
  assert.equal(await page.locator('#dir-title').textContent(), 'ابحث عن غرفة');
  assert.equal(await page.locator('#language-picker option:checked').textContent(), 'العربية');

  // Mirrored: the brand sits at the right in Arabic, at the left in English;
  // the search box starts at the right.
  const width = 1200;
  const box = (p, sel) => p.locator(sel).first().boundingBox();
  const brandAr = await box(page, '.brand');
  const brandEn = await box(en.page, '.brand');
  assert.ok(brandEn.x < 100, `English brand at the left (${brandEn.x})`);
  assert.ok(brandAr.x + brandAr.width > width - 100, `Arabic brand at the right (${brandAr.x})`);
  const labelAr = await box(page, 'label[for="dir-search"]');
  const inputAr = await box(page, '#dir-search');
  assert.ok(Math.abs(labelAr.x + labelAr.width - (inputAr.x + inputAr.width)) < 4, 'label and field start at the right edge');
  const cardAr = await box(page, '.room-card');
  const joinAr = await box(page, '.room-card .room-join');
  assert.ok(joinAr.x < cardAr.x + cardAr.width / 2, 'the Join button is at the card’s left end');

  const dir = await seriousViolations(page);
  assert.deepEqual(dir, [], `directory: ${JSON.stringify(dir, null, 2)}`);

  await join(page, 'grief-ar');
  assert.equal(await page.locator('#composer-text').getAttribute('placeholder'), 'اكتب رسالة…');
  await join(en.page, 'grief-ar');
  await sendMessage(page, 'مساء الخير. اليوم كان صعبًا عليّ، وأنا ممتن لوجودكم هنا.');
  await waitForMessage(en.page, 'مساء الخير. اليوم كان صعبًا عليّ، وأنا ممتن لوجودكم هنا.');
  // An English message in an Arabic interface still reads left to right.
  await sendMessage(en.page, 'Hello from London. I am here too.');
  await waitForMessage(page, 'Hello from London. I am here too.');
  const direction = (p, text) => p.locator('.msg-text', { hasText: text }).evaluate((el) => ({ attr: el.getAttribute('dir'), css: getComputedStyle(el).direction }));
  assert.deepEqual(await direction(page, 'Hello from London'), { attr: 'auto', css: 'ltr' });
  assert.deepEqual(await direction(page, 'مساء الخير'), { attr: 'auto', css: 'rtl' });
  // The back arrow points the way the page reads (mirrored).
  assert.match(await page.locator('.back-arrow').evaluate((el) => getComputedStyle(el).transform), /^matrix\(-1/);

  const room = await seriousViolations(page);
  assert.deepEqual(room, [], `room: ${JSON.stringify(room, null, 2)}`);
  await page.setViewportSize(PHONE);
  const phone = await seriousViolations(page);
  assert.deepEqual(phone, [], `room at 390px: ${JSON.stringify(phone, null, 2)}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px`);
  assert.deepEqual(errors, []);
  await context.close();
  await en.context.close();
});

test('an Arabic message in an English room renders right to left', { timeout: 60000 }, async () => {
  const { page, context, errors } = await openIn('en-GB', { timezoneId: 'Europe/London' });
  assert.deepEqual(await docLang(page), { lang: 'en', dir: 'ltr' });
  await join(page, 'grief');
  const text = 'أفتقد أمي كثيرًا هذا المساء';
  await sendMessage(page, text);
  await waitForMessage(page, text);
  const el = page.locator('.msg-text', { hasText: text });
  assert.equal(await el.getAttribute('dir'), 'auto');
  assert.equal(await el.evaluate((e) => getComputedStyle(e).direction), 'rtl');
  // Its text starts at the right of the bubble, not the left.
  const [b, box] = [await el.boundingBox(), await el.evaluate((e) => { const r = document.createRange(); r.selectNodeContents(e); const t = r.getBoundingClientRect(); return { x: t.x, width: t.width }; })];
  assert.ok(Math.abs(box.x + box.width - (b.x + b.width)) < 2, 'right-aligned text');
  // The handle is isolated too, so a name in either script does not reorder the line.
  assert.equal(await page.locator('.msg-author').last().getAttribute('dir'), 'auto');
  assert.equal(await page.locator('#room-title').getAttribute('dir'), 'auto');
  assert.deepEqual(errors, []);
  await context.close();
});

test('the language picker switches without a reload and keeps the choice after one', { timeout: 60000 }, async () => {
  const { page, context, errors } = await openIn('en-GB', { timezoneId: 'Europe/London' });
  assert.equal(await page.locator('#dir-title').textContent(), 'Find a room');
  await page.evaluate(() => { window.notReloaded = 'still here'; });

  await page.locator('#language-picker').selectOption('fr');
  await page.waitForFunction(() => document.getElementById('dir-title').textContent === 'Trouver un salon', null, { timeout: WAIT });
  assert.equal(await page.evaluate(() => window.notReloaded), 'still here', 'no reload');
  assert.deepEqual(await docLang(page), { lang: 'fr', dir: 'ltr' });
  assert.equal(await page.locator('#dir-search').getAttribute('placeholder'), 'Deuil, anxiété, aidants…');
  assert.equal(await page.locator('#dir-language option').first().textContent(), 'Toutes les langues');
  assert.match(await page.locator('.room-card .room-join').first().textContent(), /^Rejoindre$/);
  // The next hello tells the server.
  assert.equal(await page.evaluate(() => window.kindred.conn.locale), 'fr');

  // In a room: the draft stays, the labels change, the direction flips.
  await join(page, 'grief');
  await page.locator('#composer-text').fill('Un brouillon qui reste');
  await page.locator('#language-picker').selectOption('ar');
  await page.waitForFunction(() => document.documentElement.dir === 'rtl', null, { timeout: WAIT });
  assert.equal(await page.locator('#composer-text').inputValue(), 'Un brouillon qui reste');
  assert.equal(await page.locator('.composer .send').textContent(), 'أرسل');
  assert.equal(await page.evaluate(() => window.notReloaded), 'still here', 'no reload');

  // Remembered on this device: after a reload, still Arabic, whatever the browser says.
  await page.reload();
  await page.locator('.conn[data-state="online"]').waitFor({ state: 'attached', timeout: WAIT });
  assert.equal(await page.evaluate(() => window.notReloaded), undefined, 'this one did reload');
  assert.deepEqual(await docLang(page), { lang: 'ar', dir: 'rtl' });
  assert.equal(await page.locator('#language-picker').inputValue(), 'ar');
  assert.equal(await page.evaluate(() => window.kindred.conn.locale), 'ar');

  await page.locator('#language-picker').selectOption('en');
  await page.waitForFunction(() => document.documentElement.dir === 'ltr' && document.documentElement.lang === 'en', null, { timeout: WAIT });
  assert.deepEqual(errors, []);
  await context.close();
});

test('screenshots: a Spanish and an Arabic room on a phone', { timeout: 120000 }, async () => {
  const conversations = [
    {
      locale: 'es-ES',
      room: 'grief-es',
      file: 'room-es-phone.png',
      lines: [
        ['friend', 'Buenas noches a todos. Hoy ha sido un día difícil para mí.'],
        ['me', 'Yo también estoy aquí. Hace tres meses que murió mi padre, y las noches son lo peor.'],
        ['friend', 'Las noches también me cuestan. Gracias por estar aquí.'],
      ],
      draft: 'Tómate tu tiempo. Te escuchamos.',
    },
    {
      locale: 'ar',
      room: 'grief-ar',
      file: 'room-ar-phone.png',
      lines: [
        ['friend', 'مساء الخير جميعًا. كان اليوم صعبًا عليّ.'],
        ['me', 'أنا هنا أيضًا. مرّت ثلاثة أشهر على وفاة والدي، والمساء هو الأصعب.'],
        ['friend', 'المساء صعب عليّ أيضًا. شكرًا لوجودك هنا.'],
      ],
      draft: 'خذ وقتك. نحن نستمع إليك.',
    },
  ];
  // A server of their own, so the rooms hold only these conversations.
  const server = await startServer();
  try {
    for (const c of conversations) await screenshotConversation(server, c);
  } finally {
    await server.dispose();
  }
});

/** Two members talk in `c.room`; the one on a phone is photographed with a reply drafted. */
async function screenshotConversation(server, c) {
  const friend = await openIn(c.locale, { server });
  const me = await openIn(c.locale, { viewport: PHONE, server });
  await join(friend.page, c.room);
  await join(me.page, c.room);
  for (const [who, text] of c.lines) {
    await sendMessage((who === 'me' ? me : friend).page, text);
    await waitForMessage(me.page, text);
  }
  await me.page.locator('#composer-text').fill(c.draft);
  await me.page.locator('#composer-text').blur();
  await me.page.screenshot({ path: screenshotPath(c.file) });
  const overflow = await me.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${c.file}: page scrolls sideways by ${overflow}px`);
  assert.deepEqual(me.errors, []);
  await me.context.close();
  await friend.context.close();
}
