// Issue 16, "Bugs to fix": each test here failed before its fix.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { kindredBin } from './server.mjs';
import { serverAndBrowser, openMember, joinRoom, watchErrors, sendMessage, waitForMessage, messageTexts, WAIT } from './browser.mjs';

const env = serverAndBrowser();

function facilitatorToken(dataDir, { name = 'Facilitator Kim', role = 'facilitator' } = {}) {
  const out = execFileSync(kindredBin(), ['token', '--role', role, '--name', name, '--ttl', '1h', '--data-dir', dataDir], { encoding: 'utf8', timeout: 30000 });
  return out.trim().split(/\s+/).pop();
}

async function openFacilitator() {
  const context = await env.browser.newContext({ viewport: { width: 1200, height: 800 }, reducedMotion: 'reduce', locale: 'en-GB', timezoneId: 'Europe/London' });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${env.server.url}/#token=${facilitatorToken(env.server.dataDir)}`);
  await page.locator('.conn[data-state="online"]').waitFor({ state: 'attached' });
  return { context, page, errors };
}

function memberId(page) {
  return page.evaluate(() => window.kindred.store.room(window.kindred.activeRoom).me.member_id);
}

test('a kick without a reason shows no "null", and a kicked member who rejoins gets the composer back', { timeout: 90000 }, async () => {
  const fac = await openFacilitator();
  const m = await openMember(env.browser, env.server.url);
  await joinRoom(fac.page, 'grief');
  await joinRoom(m.page, 'grief');
  const id = await memberId(m.page);
  assert.equal(await fac.page.evaluate((mid) => window.kindred.act({ type: 'moderate', room: 'grief', action: 'kick', member_id: mid }, { quiet: true }), id), true);

  const card = m.page.locator('.removed-card:not([hidden])');
  await card.waitFor({ timeout: WAIT });
  const text = await card.textContent();
  assert.doesNotMatch(text, /null|undefined/, text);
  assert.ok(await m.page.locator('#composer-text').isHidden(), 'no composer while removed');

  // Kicks are not bans: coming back is allowed, and the room works again.
  await card.getByRole('button', { name: 'Back to rooms' }).click();
  await joinRoom(m.page, 'grief');
  assert.ok(await m.page.locator('.removed-card').isHidden(), 'the removal card is gone after rejoining');
  assert.ok(await m.page.locator('#composer-text').isVisible(), 'the composer is back');
  assert.deepEqual([...m.errors, ...fac.errors], []);
  await m.context.close();
  await fac.context.close();
});

test('the staff back-channel has its own box, and the next public message reaches the room', { timeout: 90000 }, async () => {
  const fac = await openFacilitator();
  const m = await openMember(env.browser, env.server.url);
  await joinRoom(fac.page, 'anxiety');
  await joinRoom(m.page, 'anxiety');
  assert.equal(await fac.page.locator('#screen-room .composer input[type="checkbox"]').count(), 0, 'no staff-only tick box in the public composer');

  await fac.page.getByLabel('Note to facilitators (members never see it)').fill('Checking in with Heron privately.');
  await fac.page.getByRole('button', { name: 'Send to staff', exact: true }).click();
  await fac.page.locator('.msg.msg-staff', { hasText: 'Checking in with Heron privately.' }).waitFor({ timeout: WAIT });

  await fac.page.locator('#composer-text').fill('Welcome everyone');
  await fac.page.locator('#composer-text').press('Enter');
  await m.page.locator('.msg', { hasText: 'Welcome everyone' }).waitFor({ timeout: WAIT });
  assert.equal(await m.page.locator('.msg', { hasText: 'Welcome everyone' }).locator('.badge-staff-only').count(), 0);
  assert.equal(await m.page.locator('.msg', { hasText: 'Checking in with Heron' }).count(), 0, 'members never see the back-channel');
  assert.deepEqual([...m.errors, ...fac.errors], []);
  await m.context.close();
  await fac.context.close();
});

test('a locked room says so in the directory, offers no Join, and shows no rules to a newcomer', { timeout: 90000 }, async () => {
  const fac = await openFacilitator();
  await joinRoom(fac.page, 'pet-loss');
  assert.equal(await fac.page.evaluate(() => window.kindred.act({ type: 'moderate', room: 'pet-loss', action: 'lock' }, { quiet: true })), true);

  const m = await openMember(env.browser, env.server.url);
  const card = m.page.locator('#room-title-pet-loss').locator('xpath=ancestor::li');
  await card.waitFor({ timeout: WAIT });
  await m.page.waitForFunction(() => document.querySelector('#room-title-pet-loss')?.closest('li')?.textContent.includes('not taking new people'), null, { timeout: WAIT });
  assert.ok(await card.locator('.room-join').isHidden(), 'no Join on a locked room');

  // Even by its address, the newcomer is told it is locked before reading any rules.
  await m.page.goto(`${env.server.url}/#/room/pet-loss`);
  await m.page.locator('dialog[open]').waitFor({ timeout: WAIT });
  assert.match(await m.page.locator('dialog[open]').textContent(), /lock|new people/i);
  assert.ok(await m.page.locator('#screen-rules').isHidden(), 'the rules were not shown');
  assert.deepEqual([...m.errors, ...fac.errors], []);
  await fac.page.evaluate(() => window.kindred.act({ type: 'moderate', room: 'pet-loss', action: 'unlock' }, { quiet: true }));
  await m.context.close();
  await fac.context.close();
});

test('a whisper thread survives a reload in the same tab, and never reaches localStorage', { timeout: 90000 }, async () => {
  const fac = await openFacilitator();
  const m = await openMember(env.browser, env.server.url);
  await joinRoom(fac.page, 'caregivers');
  await joinRoom(m.page, 'caregivers');
  const id = await memberId(m.page);
  assert.equal(await fac.page.evaluate((to) => window.kindred.act({ type: 'whisper', room: 'caregivers', to, text: 'Checking in privately: how are you doing?' }, { quiet: true }), id), true);
  await m.page.locator('.msg-whisper', { hasText: 'Checking in privately' }).waitFor({ timeout: WAIT });

  await m.page.reload();
  await m.page.locator('.conn[data-state="online"]').waitFor({ state: 'attached', timeout: WAIT });
  await m.page.waitForFunction(() => window.kindred?.store.room(window.kindred.activeRoom)?.active === true, null, { timeout: WAIT });
  await m.page.locator('.msg-whisper', { hasText: 'Checking in privately' }).waitFor({ timeout: WAIT });
  const local = await m.page.evaluate(() => Object.keys(localStorage).map((k) => localStorage.getItem(k)).join(' '));
  assert.doesNotMatch(local, /Checking in privately/, 'whispers stay out of localStorage');
  assert.deepEqual([...m.errors, ...fac.errors], []);
  await m.context.close();
  await fac.context.close();
});

test('the delete dialog does not promise the author will see the reason', { timeout: 90000 }, async () => {
  const fac = await openFacilitator();
  const m = await openMember(env.browser, env.server.url);
  await joinRoom(fac.page, 'recovery');
  await joinRoom(m.page, 'recovery');
  await sendMessage(m.page, 'A message a facilitator will remove.');
  await fac.page.locator('.msg', { hasText: 'A message a facilitator will remove.' }).locator('.msg-more').click();
  await fac.page.getByRole('button', { name: 'Delete message', exact: true }).click();
  const label = await fac.page.locator('dialog[open] label').first().textContent();
  assert.doesNotMatch(label, /will see/i, label);
  await fac.page.locator('dialog[open]').getByRole('button', { name: 'Cancel' }).click();
  assert.deepEqual([...m.errors, ...fac.errors], []);
  await m.context.close();
  await fac.context.close();
});

test('muted or in slow mode, the composer is closed with a countdown, sends no typing, and opens again cleanly', { timeout: 120000 }, async () => {
  const fac = await openFacilitator();
  const m = await openMember(env.browser, env.server.url);
  await joinRoom(fac.page, 'veterans');
  await joinRoom(m.page, 'veterans');
  const id = await memberId(m.page);
  const closed = () => m.page.evaluate(() => { const box = document.getElementById('composer-text'); return box.readOnly || box.disabled; });

  await fac.page.evaluate((mid) => window.kindred.act({ type: 'moderate', room: 'veterans', action: 'mute', member_id: mid, duration_s: 600 }, { quiet: true }), id);
  await m.page.locator('#composer-block:not([hidden])').waitFor({ timeout: WAIT });
  assert.match(await m.page.locator('#composer-block').textContent(), /muted.*\d/);
  assert.equal(await closed(), true, 'a muted member cannot write');
  // Whatever reaches the box while muted, the room is not told "typing…".
  await m.page.evaluate(() => { const box = document.getElementById('composer-text'); box.value = 'hello?'; box.dispatchEvent(new Event('input', { bubbles: true })); });
  await fac.page.waitForTimeout(1500);
  assert.equal(await fac.page.locator('.typing').textContent().catch(() => ''), '', 'no typing shown for a muted member');
  await m.page.evaluate(() => { document.getElementById('composer-text').value = ''; });

  await fac.page.evaluate((mid) => window.kindred.act({ type: 'moderate', room: 'veterans', action: 'unmute', member_id: mid }, { quiet: true }), id);
  await m.page.locator('.notice', { hasText: 'Your mute was lifted' }).waitFor({ timeout: WAIT });
  assert.equal(await m.page.locator('.notice-warning').count(), 0, 'the old "muted" notice is gone');
  assert.equal(await closed(), false);

  await fac.page.evaluate(() => window.kindred.act({ type: 'moderate', room: 'veterans', action: 'slow_mode', seconds: 30 }, { quiet: true }));
  await m.page.waitForFunction(() => window.kindred.store.room('veterans').info.slow_mode_s === 30, null, { timeout: WAIT });
  await sendMessage(m.page, 'One message in slow mode.');
  await m.page.locator('#composer-block', { hasText: 'Slow mode' }).waitFor({ timeout: WAIT });
  assert.equal(await closed(), true, 'closed until slow mode allows the next message');
  await fac.page.evaluate(() => window.kindred.act({ type: 'moderate', room: 'veterans', action: 'slow_mode', seconds: 0 }, { quiet: true }));
  await m.page.locator('#composer-block').waitFor({ state: 'hidden', timeout: WAIT });
  assert.equal(await closed(), false);
  assert.equal(await m.page.locator('#composer-feedback').textContent(), '', 'no stale error');
  assert.deepEqual([...m.errors, ...fac.errors], []);
  await m.context.close();
  await fac.context.close();
});

test('the message list is one tab stop: arrow keys move between messages, Tab leaves', { timeout: 90000 }, async () => {
  const a = await openMember(env.browser, env.server.url);
  const b = await openMember(env.browser, env.server.url);
  await joinRoom(a.page, 'parenting');
  await joinRoom(b.page, 'parenting');
  for (let i = 1; i <= 8; i++) await sendMessage(b.page, `Message number ${i}`);
  await waitForMessage(a.page, 'Message number 8');

  const tabStops = await a.page.evaluate(() => [...document.querySelectorAll('#screen-room .messages button, #screen-room .messages summary')].filter((el) => el.tabIndex >= 0).length);
  assert.equal(tabStops, 1, 'one tab stop in the list');
  await a.page.locator('#composer-text').focus();
  const inList = () => a.page.evaluate(() => !!document.activeElement?.closest('.messages'));
  let presses = 0;
  while (!(await inList()) && presses < 20) {
    await a.page.keyboard.press('Shift+Tab');
    presses++;
  }
  assert.ok(await inList(), 'Shift+Tab from the composer reaches the list');
  assert.match(await a.page.evaluate(() => document.activeElement.closest('li').textContent), /Message number 8/);
  await a.page.keyboard.press('ArrowUp');
  assert.match(await a.page.evaluate(() => document.activeElement.closest('li').textContent), /Message number 7/);
  await a.page.keyboard.press('Shift+Tab');
  assert.equal(await inList(), false, 'one more Shift+Tab leaves the list');
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context.close();
  await b.context.close();
});

test('phone: the drawer keeps focus and Escape closes it, no keyboard on join, and the list keeps its height at 200 % zoom', { timeout: 90000 }, async () => {
  const m = await openMember(env.browser, env.server.url, { viewport: { width: 375, height: 740 } });
  await joinRoom(m.page, 'new-in-town');
  await m.page.waitForTimeout(300);
  assert.notEqual(await m.page.evaluate(() => document.activeElement?.id), 'composer-text', 'the composer is not focused on join on a phone');

  const toggle = m.page.locator('#screen-room .panel-toggle[aria-controls="people-panel"]');
  await toggle.click();
  await m.page.locator('#people-panel.open').waitFor({ timeout: WAIT });
  for (let i = 0; i < 8; i++) {
    await m.page.keyboard.press('Tab');
    assert.equal(await m.page.evaluate(() => !!document.activeElement?.closest('#people-panel')), true, `Tab ${i + 1} stays in the drawer`);
  }
  await m.page.keyboard.press('Shift+Tab');
  assert.equal(await m.page.evaluate(() => !!document.activeElement?.closest('#people-panel')), true, 'Shift+Tab stays in the drawer');
  await m.page.keyboard.press('Escape');
  await m.page.locator('#people-panel.open').waitFor({ state: 'detached', timeout: WAIT });
  assert.equal(await m.page.evaluate(() => document.activeElement?.getAttribute('aria-controls')), 'people-panel', 'focus goes back to the toggle');

  // 1200 × 800 at 200 % zoom is a 600 × 400 CSS-pixel viewport.
  await m.page.setViewportSize({ width: 600, height: 400 });
  await m.page.waitForTimeout(300);
  const height = await m.page.evaluate(() => document.querySelector('#screen-room .timeline').getBoundingClientRect().height);
  assert.ok(height >= 150, `message list is ${height}px high at 200 % zoom`);
  assert.deepEqual(m.errors, []);
  await m.context.close();
});

test('a message written while offline waits, then is sent once after reconnecting', { timeout: 120000 }, async () => {
  const a = await openMember(env.browser, env.server.url);
  const b = await openMember(env.browser, env.server.url);
  await joinRoom(a.page, 'depression');
  await joinRoom(b.page, 'depression');

  await env.server.stop();
  await a.page.waitForFunction(() => document.querySelector('.conn')?.dataset.state !== 'online', null, { timeout: WAIT });
  await sendMessage(a.page, 'Written while the line was down.');
  await a.page.locator('.msg-pending', { hasText: 'Written while the line was down.' }).waitFor({ timeout: WAIT });

  await env.server.start();
  for (const { page } of [a, b]) {
    await page.locator('.conn[data-state="online"]').waitFor({ state: 'attached', timeout: 30000 });
    await page.waitForFunction(() => window.kindred?.store.room(window.kindred.activeRoom)?.active === true, null, { timeout: 30000 });
  }
  await waitForMessage(b.page, 'Written while the line was down.', 30000);
  await a.page.locator('.msg-pending').waitFor({ state: 'detached', timeout: WAIT });
  await a.page.waitForTimeout(1000);
  for (const { page } of [a, b]) {
    const same = (await messageTexts(page)).filter((x) => x === 'Written while the line was down.');
    assert.equal(same.length, 1, 'sent exactly once');
  }
  assert.equal(await a.page.locator('#composer-feedback').textContent(), '', 'no stale "not sent" line');
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context.close();
  await b.context.close();
});
