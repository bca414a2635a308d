// A facilitator deletes a message and it disappears for every member.
// Facilitators sign in with a JWT; the test mints one with `kindred token`,
// signed with the secret the test server created in its data dir.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { kindredBin } from './server.mjs';
import { serverAndBrowser, openMember, joinRoom, sendMessage, waitForMessage, screenshotPath, WAIT } from './browser.mjs';

function facilitatorToken(dataDir, { name = 'Facilitator Sam', role = 'facilitator' } = {}) {
  const out = execFileSync(kindredBin(), ['token', '--role', role, '--name', name, '--ttl', '1h', '--data-dir', dataDir], { encoding: 'utf8', timeout: 30000 });
  return out.trim().split(/\s+/).pop();
}

const env = serverAndBrowser();

test('a facilitator deletes a message and it disappears for both members', { timeout: 90000 }, async () => {
  const a = await openMember(env.browser, env.server.url);
  const b = await openMember(env.browser, env.server.url);
  await joinRoom(a.page, 'anxiety');
  await joinRoom(b.page, 'anxiety');

  // The facilitator signs in through the URL fragment, which the client strips.
  const fac = await env.browser.newContext({ viewport: { width: 1200, height: 800 } });
  const fpage = await fac.newPage();
  fpage.setDefaultTimeout(WAIT);
  await fpage.goto(`${env.server.url}/#token=${facilitatorToken(env.server.dataDir)}`);
  await fpage.locator('.conn[data-state="online"]').waitFor({ state: 'attached' });
  assert.ok(!fpage.url().includes('token='), 'the token is stripped from the URL');
  assert.equal(await fpage.evaluate(() => window.kindred.store.session.role), 'facilitator');
  await joinRoom(fpage, 'anxiety');

  await sendMessage(a.page, 'This message will be removed by a facilitator.');
  await waitForMessage(b.page, 'This message will be removed by a facilitator.');
  await waitForMessage(fpage, 'This message will be removed by a facilitator.');

  await fpage.locator('.msg', { hasText: 'This message will be removed by a facilitator.' }).locator('.msg-more').click();
  await fpage.getByRole('button', { name: 'Delete message', exact: true }).click();
  await fpage.locator('dialog[open] textarea').fill('Removing this while we check in.');
  await fpage.locator('dialog[open]').getByRole('button', { name: 'Delete message', exact: true }).click();

  for (const page of [a.page, b.page, fpage]) {
    await page.locator('.msg', { hasText: 'This message will be removed by a facilitator.' }).waitFor({ state: 'detached', timeout: WAIT });
  }

  // The facilitator's view, with a report open, for the docs.
  await sendMessage(b.page, 'Thank you for keeping this place gentle.');
  await waitForMessage(a.page, 'Thank you for keeping this place gentle.');
  await sendMessage(a.page, 'Nobody here understands anything.');
  await waitForMessage(b.page, 'Nobody here understands anything.');
  await b.page.locator('.msg', { hasText: 'Nobody here understands anything.' }).locator('.msg-more').click();
  await b.page.getByRole('button', { name: 'Report to a facilitator' }).click();
  await b.page.locator('dialog[open] select').selectOption({ index: 1 });
  await b.page.locator('dialog[open]').getByRole('button', { name: 'Send report' }).click();
  await fpage.locator('.tool-report').waitFor({ timeout: WAIT });
  // A crisis message: the alert inbox at the top of the tools, with the count in the header.
  await sendMessage(b.page, 'Some nights I think everyone would be better off without me.');
  await fpage.locator('#staff-tools .alert-item').waitFor({ timeout: WAIT });
  await fpage.getByRole('button', { name: 'Alerts (1)', exact: true }).waitFor({ timeout: WAIT });
  // A session running, with the welcome pinned and a hand raised waiting (the docs' view of a session).
  const welcome = await fpage.evaluate(() => [...window.kindred.store.room('anxiety').messages].find((m) => m.text === 'Thank you for keeping this place gentle.').message_id);
  assert.equal(await fpage.evaluate((id) => window.kindred.act({ type: 'moderate', room: 'anxiety', action: 'pin', message_id: id }, { quiet: true }), welcome), true);
  assert.equal(await fpage.evaluate(() => window.kindred.act({ type: 'moderate', room: 'anxiety', action: 'start_session', minutes: 60, agenda: 'Check-in round, then open sharing.' }, { quiet: true })), true);
  await fpage.locator('.session-bar:not([hidden])').waitFor({ timeout: WAIT });
  await fpage.locator('.pinned:not([hidden])').waitFor({ timeout: WAIT });
  await fpage.waitForFunction(() => !document.querySelector('.toast'), null, { timeout: WAIT });
  await fpage.screenshot({ path: screenshotPath('facilitator.png') });
  await a.context.close();
  await b.context.close();
  await fac.close();
});
