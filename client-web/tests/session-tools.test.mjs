// Issue 16, items 11–13: members take back their own words and react
// quietly; facilitators pin a message and run a timed session; staff see
// raised hands with how long each has waited, who is new to the room, and
// open reports in the tab title. Member and facilitator, phone (390 × 844)
// and desktop, with axe-core on every new screen.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { kindredBin } from './server.mjs';
import { serverAndBrowser, openMember, joinRoom, watchErrors, sendMessage, waitForMessage, seriousViolations, WAIT } from './browser.mjs';

const env = serverAndBrowser();
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1200, height: 800 };

function facilitatorToken(dataDir, { name = 'Facilitator Sam', role = 'facilitator' } = {}) {
  const out = execFileSync(kindredBin(), ['token', '--role', role, '--name', name, '--ttl', '1h', '--data-dir', dataDir], { encoding: 'utf8', timeout: 30000 });
  return out.trim().split(/\s+/).pop();
}

async function openFacilitator({ viewport = DESKTOP, bypassCSP = false } = {}) {
  const context = await env.browser.newContext({ viewport, reducedMotion: 'reduce', bypassCSP, locale: 'en-GB', timezoneId: 'Europe/London' });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${env.server.url}/#token=${facilitatorToken(env.server.dataDir)}`);
  await page.locator('.conn[data-state="online"]').waitFor({ state: 'attached' });
  return { context, page, errors };
}

/** Open the ⋯ options of the message with `text`. */
async function openOptions(page, text) {
  await page.locator('.msg', { hasText: text }).locator('.msg-more').click();
  await page.locator('dialog[open]').waitFor();
}

/** Open the facilitator tools (a drawer on a phone; always shown on a desktop). */
async function openTools(page) {
  const toggle = page.locator('#screen-room .panel-toggle[aria-controls="staff-tools"]');
  if ((await toggle.isVisible()) && (await toggle.getAttribute('aria-expanded')) !== 'true') {
    await toggle.click();
    await page.locator('#staff-tools.open').waitFor();
  }
  await page.locator('#staff-tools').waitFor({ state: 'visible' });
}

/** Open the people list (a drawer on a phone; always shown on a desktop). */
async function openPeople(page) {
  const toggle = page.locator('#screen-room .panel-toggle[aria-controls="people-panel"]');
  if (await toggle.isVisible()) {
    await toggle.click();
    await page.locator('#people-panel.open').waitFor();
  }
  await page.locator('#people-panel').waitFor({ state: 'visible' });
}

/** Close whichever drawer is open (phones); nothing to do on a desktop. */
async function closeDrawer(page) {
  const close = page.locator('.panel.open .panel-close');
  if (await close.count()) await close.click();
}

function announcements(page) {
  return page.locator('#announcer').textContent();
}

async function noSeriousViolations(page, where) {
  const found = await seriousViolations(page);
  assert.deepEqual(found, [], `${where}: ${JSON.stringify(found, null, 2)}`);
}

test('a member deletes their own message after confirming, and it goes for everyone (phone)', { timeout: 90000 }, async () => {
  const me = await openMember(env.browser, env.server.url, { viewport: PHONE, bypassCSP: true });
  const other = await openMember(env.browser, env.server.url);
  await joinRoom(me.page, 'grief');
  await joinRoom(other.page, 'grief');
  await sendMessage(me.page, 'I said more than I meant to just now.');
  await waitForMessage(other.page, 'I said more than I meant to just now.');

  // Someone else's message offers no Delete to a member.
  await openOptions(other.page, 'I said more than I meant to just now.');
  assert.equal(await other.page.locator('dialog[open]').getByRole('button', { name: 'Delete', exact: true }).count(), 0);
  await other.page.keyboard.press('Escape');

  // Cancel keeps it; the confirmation names what will happen.
  await openOptions(me.page, 'I said more than I meant to just now.');
  await me.page.locator('dialog[open]').getByRole('button', { name: 'Delete', exact: true }).click();
  const confirm = me.page.locator('dialog[open]');
  await confirm.getByRole('heading', { name: 'Delete your message?' }).waitFor();
  assert.match(await confirm.textContent(), /removed for everyone in the room/);
  await noSeriousViolations(me.page, 'the delete confirmation at 390 px');
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await me.page.locator('dialog[open]').waitFor({ state: 'detached' });
  assert.equal(await me.page.locator('.msg', { hasText: 'I said more than I meant to just now.' }).count(), 1);

  await openOptions(me.page, 'I said more than I meant to just now.');
  await me.page.locator('dialog[open]').getByRole('button', { name: 'Delete', exact: true }).click();
  await me.page.locator('dialog[open]').getByRole('button', { name: 'Delete message', exact: true }).click();
  for (const page of [me.page, other.page]) {
    await page.locator('.msg', { hasText: 'I said more than I meant to just now.' }).waitFor({ state: 'detached' });
  }
  // Gone from history too: a newcomer never sees it.
  const late = await openMember(env.browser, env.server.url);
  await joinRoom(late.page, 'grief');
  assert.equal(await late.page.locator('.msg', { hasText: 'I said more than I meant to just now.' }).count(), 0);
  assert.deepEqual([...me.errors, ...other.errors, ...late.errors], []);
  for (const c of [me, other, late]) await c.context.close();
});

test('quiet reactions: counts for everyone, aria-pressed toggles, accessible names (desktop and phone)', { timeout: 90000 }, async () => {
  const writer = await openMember(env.browser, env.server.url, { bypassCSP: true });
  const reader = await openMember(env.browser, env.server.url, { viewport: PHONE, bypassCSP: true });
  await joinRoom(writer.page, 'anxiety');
  await joinRoom(reader.page, 'anxiety');
  await sendMessage(writer.page, 'First week back at work after the panic attacks.');
  await waitForMessage(reader.page, 'First week back at work after the panic attacks.');

  const row = (page) => page.locator('.msg', { hasText: 'First week back at work' }).locator('.reactions');
  assert.equal(await row(reader.page).getAttribute('role'), 'group');
  assert.match(await row(reader.page).getAttribute('aria-label'), /Reactions to .+'s message/);
  const hug = row(reader.page).getByRole('button', { name: 'Hug', exact: true });
  assert.equal(await hug.getAttribute('aria-pressed'), 'false');
  await hug.click();
  // The giver's button is pressed; everyone sees the count, named in words.
  await row(reader.page).getByRole('button', { name: 'Hug 1 person', exact: true }).waitFor();
  assert.equal(await row(reader.page).getByRole('button', { name: 'Hug 1 person' }).getAttribute('aria-pressed'), 'true');
  const counted = row(writer.page).getByRole('button', { name: 'Hug 1 person', exact: true });
  await counted.waitFor();
  assert.equal(await counted.getAttribute('aria-pressed'), 'false', 'anonymous: the writer does not see who');
  assert.equal((await counted.textContent()).trim(), 'Hug 1 person');
  await writer.page.locator('.msg', { hasText: 'First week back at work' }).locator('.reactions').getByRole('button', { name: 'Support', exact: true }).click();
  await row(reader.page).getByRole('button', { name: 'Support 1 person', exact: true }).waitFor();
  await noSeriousViolations(reader.page, 'reactions at 390 px');
  await noSeriousViolations(writer.page, 'reactions on a desktop');

  // Taken back with the same button, from the keyboard: the count goes for everyone, focus stays.
  await row(reader.page).getByRole('button', { name: 'Hug 1 person' }).focus();
  await reader.page.keyboard.press('Enter');
  await row(writer.page).getByRole('button', { name: 'Hug', exact: true }).waitFor();
  await row(reader.page).getByRole('button', { name: 'Hug', exact: true }).waitFor();
  assert.equal(await reader.page.evaluate(() => document.activeElement?.dataset.reaction), 'hug', 'focus stays on the button');
  assert.equal(await row(reader.page).getByRole('button', { name: 'Hug', exact: true }).getAttribute('aria-pressed'), 'false');
  // Still one tab stop in the whole list (issue 16, bug 8): the button last used; left and right
  // move between a message's reactions and its "⋯".
  const stops = () => reader.page.evaluate(() => [...document.querySelectorAll('#screen-room .messages button, #screen-room .messages summary')].filter((el) => el.tabIndex >= 0).map((el) => el.dataset.reaction || el.className));
  assert.deepEqual(await stops(), ['hug']);
  await reader.page.keyboard.press('ArrowRight');
  assert.equal(await reader.page.evaluate(() => document.activeElement?.dataset.reaction), 'same');
  await reader.page.keyboard.press('ArrowRight');
  assert.equal(await reader.page.evaluate(() => document.activeElement?.classList.contains('msg-more')), true);
  assert.deepEqual(await stops(), ['msg-more']);
  assert.deepEqual([...writer.errors, ...reader.errors], []);
  await writer.context.close();
  await reader.context.close();
});

test('a facilitator pins a message and runs a session; members see the pin and the session bar', { timeout: 120000 }, async () => {
  const fac = await openFacilitator({ bypassCSP: true });
  const phone = await openMember(env.browser, env.server.url, { viewport: PHONE, bypassCSP: true });
  const desk = await openMember(env.browser, env.server.url);
  await joinRoom(fac.page, 'pet-loss');
  await joinRoom(phone.page, 'pet-loss');
  await joinRoom(desk.page, 'pet-loss');

  await sendMessage(fac.page, 'Welcome. Tonight we have an hour; share as much or as little as you like.');
  await waitForMessage(phone.page, 'Welcome. Tonight we have an hour; share as much or as little as you like.');
  // Members are not offered Pin.
  await openOptions(desk.page, 'Welcome. Tonight we have an hour');
  assert.equal(await desk.page.locator('dialog[open]').getByRole('button', { name: 'Pin to top of room' }).count(), 0);
  await desk.page.keyboard.press('Escape');

  await openOptions(fac.page, 'Welcome. Tonight we have an hour');
  await fac.page.locator('dialog[open]').getByRole('button', { name: 'Pin to top of room' }).click();
  for (const page of [phone.page, desk.page, fac.page]) {
    const pinned = page.getByRole('region', { name: 'Pinned message' });
    await pinned.waitFor();
    assert.match(await pinned.textContent(), /Welcome\. Tonight we have an hour/);
  }
  assert.equal(await phone.page.getByRole('region', { name: 'Pinned message' }).getByRole('button', { name: 'Unpin' }).count(), 0, 'members cannot unpin');

  // The session, from the tools: a length and an agenda.
  await openTools(fac.page);
  await fac.page.getByLabel('Length').selectOption('30');
  await fac.page.getByLabel('Agenda (optional)').fill('Check-in round, then open sharing.');
  await fac.page.getByRole('button', { name: 'Start session' }).click();
  for (const page of [phone.page, desk.page]) {
    const bar = page.getByRole('region', { name: 'Session' });
    await bar.waitFor();
    const text = await bar.textContent();
    assert.match(text, /(30|29) min left/, text);
    assert.match(text, /Agenda: Check-in round, then open sharing\./);
  }
  await fac.page.getByText(/A session is running: (30|29) min left\./).waitFor();
  // The bar's clock is not a live region: it would talk every minute.
  assert.equal(await phone.page.locator('.session-bar').evaluate((el) => !!el.closest('[aria-live], [role="status"], [role="log"]')), false);
  assert.equal(await phone.page.locator('.session-bar').evaluate((el) => el.getBoundingClientRect().bottom <= document.querySelector('.timeline').getBoundingClientRect().top + 1), true, 'above the messages');
  await noSeriousViolations(phone.page, 'pin and session bar at 390 px');
  await noSeriousViolations(fac.page, 'facilitator tools with a session running');

  // Screen readers hear "10 minutes left" once, then "one minute left", through the announcer.
  const told = await phone.page.evaluate(() => {
    const bar = window.kindred.room.sessionBar;
    const said = () => document.getElementById('announcer').textContent;
    const out = [];
    bar.tick(Date.now() + 10 * 60000 - 2000);
    out.push(said());
    bar.tick(Date.now() + 9 * 60000);
    out.push(said());
    bar.tick(Date.now() + 50000);
    out.push(said());
    bar.render(window.kindred.store.room('pet-loss'));
    return out;
  });
  assert.equal((told[0].match(/10 minutes left in this session\./g) || []).length, 1, told[0]);
  assert.equal((told[1].match(/10 minutes left in this session\./g) || []).length, 1, 'not again at 9 minutes');
  assert.match(told[2], /One minute left in this session\./);

  // End, with a note: every member reads it, the bar goes.
  await fac.page.getByRole('button', { name: 'End session' }).click();
  await fac.page.locator('dialog[open]').getByLabel('Closing note (optional)').fill('Thank you all. Same time next week.');
  await noSeriousViolations(fac.page, 'the end-session dialog');
  await fac.page.locator('dialog[open]').getByRole('button', { name: 'End session' }).click();
  for (const page of [phone.page, desk.page]) {
    await page.locator('.msg-system', { hasText: 'Thank you all. Same time next week.' }).waitFor();
    await page.locator('.session-bar').waitFor({ state: 'hidden' });
  }
  assert.match(await announcements(desk.page), /Thank you all\. Same time next week\./);

  // Unpin from the pinned bar.
  await fac.page.getByRole('region', { name: 'Pinned message' }).getByRole('button', { name: 'Unpin' }).click();
  await phone.page.locator('.pinned').waitFor({ state: 'hidden' });
  assert.deepEqual([...fac.errors, ...phone.errors, ...desk.errors], []);
  for (const c of [fac, phone, desk]) await c.context.close();
});

test('facilitator awareness: hands first with their wait, "new here" for staff only, reports in the tab title (phone)', { timeout: 120000 }, async () => {
  const fac = await openFacilitator({ viewport: PHONE, bypassCSP: true });
  await joinRoom(fac.page, 'caregivers');
  const newcomer = await openMember(env.browser, env.server.url);
  const other = await openMember(env.browser, env.server.url);
  await joinRoom(newcomer.page, 'caregivers');
  await joinRoom(other.page, 'caregivers');
  const handle = await newcomer.page.evaluate(() => window.kindred.store.room('caregivers').me.handle);

  // "new here" beside the newcomer's name, in the people list, for the facilitator alone.
  await openPeople(fac.page);
  const person = fac.page.locator('#people-panel .person', { hasText: handle });
  await person.locator('.badge-new', { hasText: 'new here' }).waitFor();
  await noSeriousViolations(fac.page, 'the people drawer with a newcomer at 390 px');
  await closeDrawer(fac.page);
  await openPeople(other.page);
  await other.page.locator('#people-panel .person', { hasText: handle }).waitFor();
  assert.equal(await other.page.locator('#people-panel .badge-new').count(), 0, 'members never see it');
  assert.equal(await other.page.evaluate(() => [...window.kindred.store.room('caregivers').members.values()].some((m) => m.first_time)), false, 'nor receive it');

  // Raised hands lead the tools, each with how long it has waited.
  assert.equal(await fac.page.evaluate(() => window.kindred.act({ type: 'moderate', room: 'caregivers', action: 'set_mode', mode: 'structured' }, { quiet: true })), true);
  await newcomer.page.getByRole('button', { name: 'Raise hand' }).click();
  await openTools(fac.page);
  const firstSection = fac.page.locator('#staff-tools .tool-section').first();
  assert.equal(await firstSection.locator('h3').textContent(), 'Raised hands');
  const hand = firstSection.locator('.tool-hand', { hasText: handle });
  await hand.waitFor();
  assert.match(await hand.textContent(), /waiting less than a minute/);
  // A minute on, the wait says so (the client counts from when it saw the hand go up).
  await fac.page.evaluate(() => {
    const r = window.kindred.store.room('caregivers');
    for (const id of r.handSince.keys()) r.handSince.set(id, Date.now() - 3 * 60000 - 1000);
    window.kindred.room.staff.renderHands();
  });
  assert.match(await hand.textContent(), /waiting 3 min/);
  await noSeriousViolations(fac.page, 'facilitator tools at 390 px');

  // Open reports count in the tab title.
  assert.equal(await fac.page.title(), 'Kindred');
  await closeDrawer(fac.page);
  assert.equal(await fac.page.evaluate(() => window.kindred.act({ type: 'moderate', room: 'caregivers', action: 'set_mode', mode: 'open' }, { quiet: true })), true);
  await sendMessage(other.page, 'Nobody here knows what they are talking about.');
  await waitForMessage(newcomer.page, 'Nobody here knows what they are talking about.');
  await openOptions(newcomer.page, 'Nobody here knows what they are talking about.');
  await newcomer.page.getByRole('button', { name: 'Report to a facilitator' }).click();
  await newcomer.page.locator('dialog[open] select').selectOption({ index: 1 });
  await newcomer.page.locator('dialog[open]').getByRole('button', { name: 'Send report' }).click();
  await fac.page.waitForFunction(() => document.title === '(1) Kindred', null, { timeout: WAIT });
  assert.equal(await other.page.title(), 'Kindred', 'members have no report count');
  const reportId = await fac.page.evaluate(() => [...window.kindred.store.room('caregivers').reports.keys()][0]);
  await fac.page.evaluate((id) => window.kindred.act({ type: 'resolve_report', room: 'caregivers', report_id: id, resolution: 'dismissed' }, { quiet: true }), reportId);
  await fac.page.waitForFunction(() => document.title === 'Kindred', null, { timeout: WAIT });
  assert.deepEqual([...fac.errors, ...newcomer.errors, ...other.errors], []);
  for (const c of [fac, newcomer, other]) await c.context.close();
});
