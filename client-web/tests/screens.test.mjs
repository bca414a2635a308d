// Screenshots of the main screens for docs/screenshots: the directory, the
// ground rules, a room in conversation (with quiet reactions), and a room at
// phone width (375 px).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, openMember, joinRoom, sendMessage, waitForMessage, screenshotPath, WAIT } from './browser.mjs';

const env = serverAndBrowser();

test('screenshots of the directory, rules, room and phone layouts', { timeout: 90000 }, async () => {
  // Someone already in the room, so the conversation has two voices.
  const friend = await openMember(env.browser, env.server.url);
  await joinRoom(friend.page, 'grief');

  const { page, context, errors } = await openMember(env.browser, env.server.url);
  await page.locator('.room-card').first().waitFor({ timeout: WAIT });
  // The live member count shows the friend already in the grief room.
  await page.waitForFunction(() => /1 person here/.test(document.getElementById('room-title-grief')?.closest('li')?.querySelector('.room-people')?.textContent || ''), null, { timeout: WAIT });
  await page.screenshot({ path: screenshotPath('directory.png') });

  await page.locator('#room-title-grief').locator('xpath=ancestor::li').locator('.room-join').click();
  await page.locator('#rules-accept').waitFor({ state: 'visible', timeout: WAIT });
  await page.screenshot({ path: screenshotPath('rules.png') });
  await page.locator('#rules-accept').click();
  await page.locator('#composer-text').waitFor({ state: 'visible', timeout: WAIT });

  await sendMessage(friend.page, 'Evening, everyone. Today was a hard one for me.');
  await waitForMessage(page, 'Evening, everyone. Today was a hard one for me.');
  await sendMessage(page, 'I am here too. It has been three months since my dad died, and the evenings are the worst.');
  // A reply from the friend, through the message options dialog.
  await waitForMessage(friend.page, 'I am here too. It has been three months since my dad died, and the evenings are the worst.');
  await friend.page.locator('.msg-more').last().click();
  await friend.page.getByRole('button', { name: 'Reply', exact: true }).click();
  await sendMessage(friend.page, 'Evenings are hard for me too. Thank you for being here.');
  await waitForMessage(page, 'Evenings are hard for me too. Thank you for being here.');
  // Quiet reactions: the friend holds the member's words; the member answers with "same here".
  const byText = (p, start) => p.locator('.msg').filter({ has: p.locator('.msg-text', { hasText: start }) });
  const mine = (p) => byText(p, /^I am here too/).locator('.reactions');
  await mine(friend.page).getByRole('button', { name: 'Hug', exact: true }).click();
  await mine(page).getByRole('button', { name: 'Hug 1 person', exact: true }).waitFor({ timeout: WAIT });
  await byText(page, /^Evenings are hard for me too/).locator('.reactions').getByRole('button', { name: 'Same here', exact: true }).click();
  await friend.page.getByRole('button', { name: 'Same here 1 person', exact: true }).waitFor({ timeout: WAIT });
  // A message behind a content note.
  await friend.page.getByRole('button', { name: 'Add a content note' }).click();
  await friend.page.locator('#composer-cw').fill('loss');
  await friend.page.locator('#composer-text').focus();
  await sendMessage(friend.page, 'Some days I still set a place at the table for her.');
  await page.locator('.msg-cw').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('.msg-cw').evaluate((d) => d.open), false, 'content-noted messages start folded');
  await page.locator('.msg-cw summary').click();
  await page.locator('#composer-text').fill('Take your time. We are listening.');
  await page.screenshot({ path: screenshotPath('room.png') });

  await page.setViewportSize({ width: 375, height: 740 });
  await page.locator('#composer-text').fill('');
  await page.screenshot({ path: screenshotPath('phone.png') });
  // Nothing overflows sideways at 375 px.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px at 375px`);
  assert.deepEqual(errors, []);
  await context.close();
  await friend.context.close();
});
