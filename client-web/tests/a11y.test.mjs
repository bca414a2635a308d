// Accessibility: joining a room and sending a message with the keyboard
// alone, and axe-core finding no serious or critical violations on the
// directory and room screens.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, openMember, joinRoom, sendMessage, waitForMessage, seriousViolations, WAIT } from './browser.mjs';

const env = serverAndBrowser();

/** Press Tab (or Shift+Tab) until `predicate`, run in the page, holds. */
async function tabTo(page, predicate, { back = false, maxPresses = 60 } = {}) {
  for (let i = 0; i < maxPresses; i++) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    if (await page.evaluate(predicate)) return;
  }
  throw new Error(`focus never reached the target after ${maxPresses} Tab presses`);
}

test('keyboard only: join a room and send a message', { timeout: 60000 }, async () => {
  const { page, context, errors } = await openMember(env.browser, env.server.url);
  await page.locator('#room-title-anxiety').waitFor({ timeout: WAIT });
  await tabTo(page, () => document.activeElement?.closest('li')?.querySelector('#room-title-anxiety') !== null && document.activeElement.classList.contains('room-join'));
  await page.keyboard.press('Enter');
  // First visit: the ground rules. Their heading takes focus; Tab reaches "accept".
  await page.locator('#rules-accept').waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'rules-title');
  await tabTo(page, () => document.activeElement?.id === 'rules-accept');
  await page.keyboard.press('Enter');
  // In the room, focus lands in the composer.
  await page.waitForFunction(() => document.activeElement?.id === 'composer-text', null, { timeout: WAIT });
  await page.keyboard.type('Typed with the keyboard only.');
  await page.keyboard.press('Enter');
  await waitForMessage(page, 'Typed with the keyboard only.');
  // The message options are reachable and open a dialog that Escape closes.
  await tabTo(page, () => document.activeElement?.classList.contains('msg-more'), { back: true });
  await page.keyboard.press('Enter');
  await page.locator('dialog[open]').waitFor({ timeout: WAIT });
  await page.keyboard.press('Escape');
  await page.locator('dialog[open]').waitFor({ state: 'detached', timeout: WAIT });
  assert.equal(await page.evaluate(() => document.activeElement?.classList.contains('msg-more')), true, 'focus returns to the opener');
  assert.deepEqual(errors, []);
  await context.close();
});

test('axe: no serious or critical violations on the directory and room screens', { timeout: 90000 }, async () => {
  const other = await openMember(env.browser, env.server.url);
  await joinRoom(other.page, 'grief');
  await sendMessage(other.page, 'Welcome, whoever comes in next.');

  const { page, context } = await openMember(env.browser, env.server.url, { bypassCSP: true });
  await page.locator('.room-card').first().waitFor({ timeout: WAIT });
  const dir = await seriousViolations(page);
  assert.deepEqual(dir, [], `directory: ${JSON.stringify(dir, null, 2)}`);

  await joinRoom(page, 'grief');
  await waitForMessage(page, 'Welcome, whoever comes in next.');
  await sendMessage(page, 'Thank you for the welcome.');
  await waitForMessage(page, 'Thank you for the welcome.');
  const room = await seriousViolations(page);
  assert.deepEqual(room, [], `room: ${JSON.stringify(room, null, 2)}`);

  // The same at phone width.
  await page.setViewportSize({ width: 375, height: 740 });
  const phone = await seriousViolations(page);
  assert.deepEqual(phone, [], `room at 375px: ${JSON.stringify(phone, null, 2)}`);
  await context.close();
  await other.context.close();
});
