// "Add to calendar" beside every scheduled room in the directory: a link to
// the room's iCalendar file, named for its room for screen readers, absent
// for always-open rooms, and the directory still axe-clean with it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, openMember, seriousViolations, WAIT } from './browser.mjs';

const env = serverAndBrowser();

test('a scheduled room offers its calendar; always-open rooms do not', { timeout: 60000 }, async () => {
  const { page, context, errors } = await openMember(env.browser, env.server.url, { bypassCSP: true });
  await page.locator('#room-title-grief-evening').waitFor({ timeout: WAIT });

  const card = page.locator('li.room-card', { has: page.locator('#room-title-grief-evening') });
  const link = card.getByRole('link', { name: /^Add to calendar: Grief circle \(evening\)$/ });
  await link.waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await link.textContent(), 'Add to calendar');
  const href = await link.getAttribute('href');
  assert.equal(href, '/rooms/grief-evening/calendar.ics');

  // What the link gives is the room's calendar.
  const got = await page.evaluate(async (url) => {
    const r = await fetch(url);
    return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
  }, href);
  assert.equal(got.status, 200);
  assert.equal(got.type, 'text/calendar; charset=utf-8');
  assert.match(got.body, /^BEGIN:VCALENDAR\r\n/);
  assert.match(got.body, /\r\nRRULE:FREQ=MONTHLY;BYDAY=2TH,4TH\r\n/);
  assert.match(got.body, /\r\nSUMMARY:Grief circle \(evening\)\r\n/);
  assert.match(got.body, /\r\nBEGIN:VTIMEZONE\r\nTZID:Europe\/London\r\n/);

  // Every scheduled room has one, and only those.
  const perRoom = await page.evaluate(() =>
    [...document.querySelectorAll('li.room-card')].map((li) => ({
      id: li.querySelector('.room-name').id.replace('room-title-', ''),
      link: !li.querySelector('.room-calendar').hidden,
    })),
  );
  // In the seeded directory the evening grief circle is the one scheduled room.
  const scheduled = new Set(['grief-evening']);
  assert.ok(perRoom.length >= 12, `${perRoom.length} cards`);
  for (const { id, link } of perRoom) assert.equal(link, scheduled.has(id), `${id}: a calendar link only for scheduled rooms`);

  const violations = await seriousViolations(page);
  assert.deepEqual(violations, [], `directory: ${JSON.stringify(violations, null, 2)}`);
  assert.deepEqual(errors, []);
  await context.close();
});
