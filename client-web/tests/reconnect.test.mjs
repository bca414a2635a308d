// A member keeps its place across a server restart: the client (the client
// library, kindred-client.js) reconnects on its own, resumes the room with
// `since`, and shows every message once, with none missing, in order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, openMember, joinRoom, sendMessage, waitForMessage, messageTexts, WAIT } from './browser.mjs';

const env = serverAndBrowser();

async function waitOnline(page, timeout = 30000) {
  await page.locator('.conn[data-state="online"]').waitFor({ state: 'attached', timeout });
  await page.waitForFunction(() => window.kindred?.store.room(window.kindred.activeRoom)?.active === true, null, { timeout });
}

test('after a server restart a member reconnects with no gap and no duplicates', { timeout: 120000 }, async () => {
  const a = await openMember(env.browser, env.server.url);
  const b = await openMember(env.browser, env.server.url);
  await joinRoom(a.page, 'pet-loss');
  await joinRoom(b.page, 'pet-loss');
  const handleA = await a.page.evaluate(() => window.kindred.store.room(window.kindred.activeRoom).me.handle);
  // What reconnects and resumes here is the client library: the page loads it from /sdk/ and connects with it.
  const loaded = await a.page.evaluate(() => performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname));
  assert.ok(loaded.includes('/sdk/kindred-client.js'), `the page loads the client library: ${loaded.join(', ')}`);
  assert.equal(await a.page.evaluate(() => window.kindred.conn.client.constructor.name), 'KindredClient');

  const before = ['I lost my cat last week.', 'She was nineteen.', 'The house is so quiet now.'];
  for (const text of before) await sendMessage(a.page, text);
  for (const text of before) await waitForMessage(b.page, text);

  await env.server.restart();
  // Both notice the drop and come back by themselves.
  await waitOnline(a.page);
  await waitOnline(b.page);

  // A keeps its identity across the reconnect (same session token): the same name in the room.
  assert.equal(await a.page.evaluate(() => window.kindred.store.room(window.kindred.activeRoom).me.handle), handleA);

  await sendMessage(b.page, 'I am so sorry. Nineteen years is a lifetime of love.');
  await waitForMessage(a.page, 'I am so sorry. Nineteen years is a lifetime of love.');
  await sendMessage(a.page, 'Thank you. That helps.');
  await waitForMessage(b.page, 'Thank you. That helps.', WAIT);

  const expected = [...before, 'I am so sorry. Nineteen years is a lifetime of love.', 'Thank you. That helps.'];
  for (const { page } of [a, b]) {
    assert.deepEqual(await messageTexts(page), expected);
    const ids = await page.evaluate(() => [...document.querySelectorAll('#screen-room .messages .msg[data-id]')].map((el) => el.dataset.id));
    assert.equal(new Set(ids).size, ids.length, 'no message shown twice');
    const order = await page.evaluate(() => [...document.querySelectorAll('#screen-room .messages .msg[data-order]')].map((el) => Number(el.dataset.order)));
    assert.deepEqual(order, [...order].sort((x, y) => x - y), 'messages in (epoch, seq) order');
    assert.equal(await page.locator('.msg-system').count(), 0, 'no "could not be loaded" gap marker');
  }
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.context.close();
  await b.context.close();
});
