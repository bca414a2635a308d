// Crisis alerts across rooms: a facilitator who was offline when a member
// wrote a crisis message signs in later and finds the alert in the inbox
// without joining the room; resolving it closes it for every facilitator on
// duty, who see who resolved it. The member's crisis card offers helplines as
// tel:/sms: links. And axe-core finds nothing serious on the inbox.
//
// Each test starts its own server, so alerts raised by one test (they are
// stored in the data dir) never show up in another.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, kindredBin } from './server.mjs';
import { launchBrowser, openMember, watchErrors, joinRoom, sendMessage, acceptRulesIfAsked, seriousViolations, WAIT } from './browser.mjs';

const CRISIS = 'Honestly, everyone would be better off without me.';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

async function withServer(fn) {
  const server = await startServer();
  try {
    return await fn(server);
  } finally {
    await server.dispose();
  }
}

function staffToken(dataDir, { name, role = 'facilitator', rooms }) {
  const args = ['token', '--role', role, '--name', name, '--ttl', '1h', '--data-dir', dataDir];
  if (rooms) args.push('--rooms', rooms.join(','));
  const out = execFileSync(kindredBin(), args, { encoding: 'utf8', timeout: 30000 });
  return out.trim().split(/\s+/).pop();
}

/**
 * A facilitator signed in through `/#token=` in a context of its own, on the
 * directory. `window.__audioContexts` counts the Web Audio contexts the page
 * made (the alert tone makes one, the first time it plays).
 */
async function openStaff(server, opts, { bypassCSP = false, viewport = { width: 1200, height: 800 }, reducedMotion = 'reduce' } = {}) {
  const context = await browser.newContext({ viewport, reducedMotion, bypassCSP, locale: 'en-GB', timezoneId: 'Europe/London' });
  await context.addInitScript(() => {
    window.__audioContexts = 0;
    const Real = window.AudioContext;
    if (Real) {
      window.AudioContext = class extends Real {
        constructor(...args) {
          super(...args);
          window.__audioContexts += 1;
        }
      };
    }
  });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}/#token=${staffToken(server.dataDir, opts)}`);
  await page.locator('.conn[data-state="online"]').waitFor({ state: 'attached' });
  await page.waitForFunction((role) => window.kindred?.store.session?.role === role, opts.role || 'facilitator');
  return { context, page, errors };
}

/** A member joins `room` and writes a crisis message; resolves with the crisis card's locator. */
async function memberInCrisis(server, room, text = CRISIS) {
  const m = await openMember(browser, server.url);
  await joinRoom(m.page, room);
  await sendMessage(m.page, text);
  const card = m.page.locator('.notice-crisis');
  await card.waitFor({ timeout: WAIT });
  m.handle = await m.page.evaluate(() => window.kindred.store.room(window.kindred.activeRoom).me.handle);
  return m;
}

const waitTitle = (page, title) => page.waitForFunction((t) => document.title === t, title, { timeout: WAIT });

test('an offline facilitator finds the alert after signing in, resolves it, and a second one sees who did', { timeout: 120000 }, async () => {
  await withServer(async (server) => {
    // Nobody on duty when the member writes.
    const member = await memberInCrisis(server, 'grief');
    assert.equal(await member.page.locator('.notice-crisis').getAttribute('data-facilitators-alerted'), '0');

    // Sam signs in afterwards and stays in the directory.
    const sam = await openStaff(server, { name: 'Sam', rooms: ['grief'] });
    const samAlerts = sam.page.getByRole('button', { name: 'Alerts (1)', exact: true });
    await samAlerts.waitFor();
    await waitTitle(sam.page, '(1) Kindred');
    assert.equal(await sam.page.evaluate(() => window.kindred.store.joined.size), 0, 'no room joined');
    assert.equal(await sam.page.evaluate(() => document.body.dataset.screen), 'directory');
    // Screen readers hear of it.
    await sam.page.waitForFunction(() => /Crisis alert in Grief and loss/.test(document.getElementById('announcer').textContent));

    // The same alert again (the server may send one twice) is still one alert.
    await sam.page.evaluate(() => {
      const a = window.kindred.store.alerts.open[0];
      window.kindred.store.apply({ type: 'alert', room: a.room, kind: a.kind, message: a.message, alert_id: a.alert_id, at: a.at, facilitators_alerted: a.facilitators_alerted });
    });
    assert.equal(await sam.page.title(), '(1) Kindred');

    await samAlerts.click();
    const inbox = sam.page.locator('dialog[open].dialog-alerts');
    await inbox.waitFor();
    const item = inbox.locator('.alert-item');
    assert.equal(await item.count(), 1);
    assert.equal(await item.locator('.quote-text').textContent(), CRISIS);
    assert.equal(await item.locator('.alert-room').textContent(), 'Grief and loss');
    assert.match(await item.locator('.tool-alert-title').textContent(), new RegExp(member.handle));
    assert.match(await item.locator('.alert-reach').textContent(), /No facilitator was online/);
    assert.ok(await item.locator('time').getAttribute('datetime'), 'the time it was raised');
    assert.equal(await item.getByRole('button', { name: 'Go to room: Grief and loss' }).count(), 1);

    // A second facilitator comes on duty before Sam resolves it.
    const ana = await openStaff(server, { name: 'Ana', rooms: ['grief'] });
    await ana.page.getByRole('button', { name: 'Alerts (1)', exact: true }).waitFor();
    await waitTitle(ana.page, '(1) Kindred');
    await ana.page.getByRole('button', { name: 'Alerts (1)', exact: true }).click();
    const anaInbox = ana.page.locator('dialog[open].dialog-alerts');
    await anaInbox.locator('.alert-item').waitFor();

    // Sam resolves, with a note.
    await item.getByRole('button', { name: `Resolve: ${member.handle} in Grief and loss` }).click();
    const confirm = sam.page.locator('dialog[open]').last();
    await confirm.locator('textarea').fill('Whispered with them; they are safe tonight.');
    await confirm.getByRole('button', { name: 'Resolve', exact: true }).click();
    await inbox.locator('.alert-resolved', { hasText: 'Resolved by Sam' }).waitFor();
    assert.equal(await inbox.locator('.alert-item').count(), 0);
    await waitTitle(sam.page, 'Kindred');
    await sam.page.getByRole('button', { name: 'Alerts', exact: true }).waitFor({ state: 'attached' });

    // Ana's open inbox follows: resolved by Sam, nothing open, the count back to 0.
    await anaInbox.locator('.alert-resolved', { hasText: 'Resolved by Sam' }).waitFor();
    assert.match(await anaInbox.locator('.alert-resolved').textContent(), new RegExp(`${member.handle} in Grief and loss`));
    assert.equal(await anaInbox.locator('.alert-item').count(), 0);
    await waitTitle(ana.page, 'Kindred');
    await ana.page.waitForFunction(() => /resolved by Sam/.test(document.getElementById('announcer').textContent));
    // A resolved alert never counts as open again, even if it came once more.
    await ana.page.evaluate(() => {
      const a = window.kindred.store.alerts.resolved[0];
      window.kindred.store.apply({ type: 'alert', room: a.room, kind: a.kind, message: a.message, alert_id: a.alert_id, at: a.at, facilitators_alerted: a.facilitators_alerted });
    });
    assert.equal(await ana.page.title(), 'Kindred');
    assert.equal(await anaInbox.locator('.alert-item').count(), 0);

    // The inbox closes with Escape and focus returns to the header button.
    await ana.page.keyboard.press('Escape');
    await anaInbox.waitFor({ state: 'detached' });
    assert.equal(await ana.page.evaluate(() => document.activeElement?.classList.contains('alerts-btn')), true);

    for (const p of [member, sam, ana]) assert.deepEqual(p.errors, []);
    for (const p of [member, sam, ana]) await p.context.close();
  });
});

test("the member's crisis card offers helplines as tel: and sms: links and says whether anyone was told", { timeout: 90000 }, async () => {
  await withServer(async (server) => {
    const member = await memberInCrisis(server, 'depression');
    const card = member.page.locator('.notice-crisis');
    // Nobody on duty: the server's text (it says so) is shown as sent.
    assert.equal(await card.getAttribute('data-facilitators-alerted'), '0');
    const text = (await card.locator('.crisis-text').textContent()).trim();
    assert.ok(text.length > 0, 'the server sent words for the member');
    const sent = await member.page.evaluate(() => window.kindred.store.resources);
    assert.ok(sent.length > 0);

    // "Call 116 123, free, day or night" → tel:116123; "Call or text 988" → tel:988 and sms:988.
    const call = card.locator('a[href="tel:116123"]');
    assert.equal(await call.count(), 1);
    assert.equal(await call.textContent(), 'Call 116 123');
    assert.equal(await card.locator('a[href="tel:988"]').count(), 1);
    assert.equal(await card.locator('a[href="sms:988"]').textContent(), 'Text 988');
    const hrefs = await card.locator('a[href^="tel:"], a[href^="sms:"]').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    for (const href of hrefs) assert.match(href, /^(tel|sms):\+?\d+$/, 'only digits (and a leading +) in the href');
    // Web links as before, the contact text as text.
    assert.ok((await card.locator('a[href^="https://"]').count()) > 0);
    assert.equal(await card.locator('.resources b, .resources img').count(), 0);

    // How other contacts read: a number to text, one in Spanish, none at all.
    const parsed = await member.page.evaluate(async () => {
      const { contactNumbers } = await import('/js/room.js');
      return ['Text SHOUT to 85258', 'Llama al 024', 'findahelpline.com', 'Call 13 11 14'].map((c) => contactNumbers(c).map((n) => [n.tel, n.sms]));
    });
    assert.deepEqual(parsed, [[[null, 'sms:85258']], [['tel:024', null]], [], [['tel:131114', null]]]);

    // The help dialog lists the same helplines with the same links.
    await member.page.locator('.topbar .help-btn').click();
    await member.page.locator('dialog[open] a[href="tel:116123"]').waitFor();
    await member.page.keyboard.press('Escape');

    // With a facilitator on duty, the member hears that someone was told.
    const sam = await openStaff(server, { name: 'Sam' });
    await sam.page.getByRole('button', { name: 'Alerts (1)', exact: true }).waitFor();
    await sendMessage(member.page, 'I keep thinking everyone would be better off without me.');
    await member.page.locator('.notice-crisis[data-facilitators-alerted="1"]').waitFor();
    assert.ok(((await member.page.locator('.notice-crisis .crisis-text').textContent()) || '').trim().length > 0);
    // Still one open alert for this member in this room.
    assert.equal(await sam.page.title(), '(1) Kindred');
    assert.deepEqual(member.errors, []);
    assert.deepEqual(sam.errors, []);
    await member.context.close();
    await sam.context.close();
  });
});

test('axe: no serious or critical violations on the alert inbox, in the dialog and in the tools panel', { timeout: 120000 }, async () => {
  await withServer(async (server) => {
    const a = await memberInCrisis(server, 'anxiety');
    const b = await memberInCrisis(server, 'grief', 'Some nights I want to die.');
    const staff = await openStaff(server, { name: 'Ana', role: 'admin' }, { bypassCSP: true });
    const button = staff.page.getByRole('button', { name: 'Alerts (2)', exact: true });
    await button.waitFor();

    // Resolve one so the inbox has both lists.
    await button.click();
    const inbox = staff.page.locator('dialog[open].dialog-alerts');
    await inbox.locator('.alert-item').nth(1).waitFor();
    await inbox.getByRole('button', { name: `Resolve: ${b.handle} in Grief and loss` }).click();
    await staff.page.locator('dialog[open]').last().getByRole('button', { name: 'Resolve', exact: true }).click();
    await inbox.locator('.alert-resolved').waitFor();
    const dialog = await seriousViolations(staff.page);
    assert.deepEqual(dialog, [], `inbox dialog: ${JSON.stringify(dialog, null, 2)}`);

    // "Go to room" joins the room; the tools panel holds the same inbox, with Whisper.
    await inbox.getByRole('button', { name: 'Go to room: Anxiety and panic' }).click();
    await acceptRulesIfAsked(staff.page);
    const panel = staff.page.locator('#staff-tools');
    await panel.locator('.alert-item').waitFor({ state: 'visible' });
    await panel.locator('.alert-item').getByRole('button', { name: `Whisper: ${a.handle}` }).waitFor();
    assert.equal(await panel.locator('.alert-open-room').count(), 0, 'already in that room');
    const room = await seriousViolations(staff.page);
    assert.deepEqual(room, [], `tools panel: ${JSON.stringify(room, null, 2)}`);

    // At phone width the tools button carries the count, and nothing overflows.
    await staff.page.setViewportSize({ width: 375, height: 740 });
    const toggle = staff.page.getByRole('button', { name: 'Facilitator tools (1 open crisis alert)', exact: true });
    assert.equal(await toggle.locator('.count-badge').textContent(), '1');
    const overflow = await staff.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px at 375px`);
    await toggle.click();
    const phone = await seriousViolations(staff.page);
    assert.deepEqual(phone, [], `tools drawer at 375px: ${JSON.stringify(phone, null, 2)}`);

    // The sound setting is off by default and remembered; with reduced motion asked for, it never plays.
    const sound = panel.getByRole('checkbox', { name: 'Play a sound for new alerts' });
    assert.equal(await sound.isChecked(), false);
    await sound.check();
    assert.equal(await staff.page.evaluate(() => localStorage.getItem('kindred.alert_sound')), '1');
    assert.equal(await staff.page.evaluate(() => window.__audioContexts), 0, 'no tone under prefers-reduced-motion');

    for (const p of [a, b, staff]) assert.deepEqual(p.errors, []);
    for (const p of [a, b, staff]) await p.context.close();
  });
});

test('an alert resolved while a facilitator was offline stops counting when they reconnect; the optional tone plays for new alerts', { timeout: 120000 }, async () => {
  await withServer(async (server) => {
    // Ana has the tone on and no reduced-motion preference.
    const ana = await openStaff(server, { name: 'Ana' }, { reducedMotion: 'no-preference' });
    await ana.page.evaluate(() => localStorage.setItem('kindred.alert_sound', '1'));
    const member = await memberInCrisis(server, 'anxiety');
    await waitTitle(ana.page, '(1) Kindred');
    await ana.page.waitForFunction(() => window.__audioContexts === 1, null, { timeout: WAIT });

    // Ana's connection goes away; Sam resolves meanwhile.
    await ana.page.evaluate(() => window.kindred.conn.stop());
    const sam = await openStaff(server, { name: 'Sam', rooms: ['anxiety'] });
    await sam.page.getByRole('button', { name: 'Alerts (1)', exact: true }).click();
    await sam.page.locator('dialog[open] .alert-resolve').click();
    await sam.page.locator('dialog[open]').last().getByRole('button', { name: 'Resolve', exact: true }).click();
    await waitTitle(sam.page, 'Kindred');

    // Back online, Ana's count drops: the server did not send that alert again.
    await ana.page.evaluate(() => window.kindred.conn.restart());
    await waitTitle(ana.page, 'Kindred');
    await ana.page.getByRole('button', { name: 'Alerts', exact: true }).click();
    const inbox = ana.page.locator('dialog[open].dialog-alerts');
    await inbox.locator('.alert-resolved', { hasText: 'Resolved while you were offline' }).waitFor();
    assert.equal(await inbox.locator('.alert-item').count(), 0);
    assert.equal(await inbox.getByRole('checkbox', { name: 'Play a sound for new alerts' }).isChecked(), true, 'the setting is remembered');
    await ana.page.keyboard.press('Escape');

    // A new alert later: counted, announced, and one more tone (same audio context, so the count stays).
    await sendMessage(member.page, 'I want to die.');
    await waitTitle(ana.page, '(1) Kindred');
    await waitTitle(sam.page, '(1) Kindred');
    assert.equal(await ana.page.evaluate(() => window.__audioContexts), 1);
    for (const p of [member, sam, ana]) assert.deepEqual(p.errors, []);
    for (const p of [member, sam, ana]) await p.context.close();
  });
});
