// Two members chat in one room, each in its own browser context; message
// text that looks like HTML is shown literally and never executed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, openMember, joinRoom, sendMessage, waitForMessage, messageTexts, myHandle } from './browser.mjs';

const env = serverAndBrowser();

test('two members chat in the same room', { timeout: 60000 }, async () => {
  const a = await openMember(env.browser, env.server.url);
  const b = await openMember(env.browser, env.server.url);
  // Without a chosen name, the directory says names differ per room.
  await a.page.locator('.dir-identity', { hasText: 'a different friendly name' }).waitFor();
  await joinRoom(a.page, 'anxiety');
  await joinRoom(b.page, 'anxiety');

  // Each sees the other in the presence list.
  const handleA = await myHandle(a.page);
  const handleB = await myHandle(b.page);
  await a.page.locator('#people-panel .person-name', { hasText: handleB }).waitFor();
  await b.page.locator('#people-panel .person-name', { hasText: handleA }).waitFor();

  await sendMessage(a.page, 'Hello from A. Is anyone here tonight?');
  await waitForMessage(b.page, 'Hello from A. Is anyone here tonight?');
  await sendMessage(b.page, 'Hi A, I am here. How are you doing?');
  await waitForMessage(a.page, 'Hi A, I am here. How are you doing?');

  assert.deepEqual(await a.page.evaluate(() => [...document.querySelectorAll('#screen-room .msg .msg-author')].map((e) => e.textContent)), [handleA, handleB]);
  assert.deepEqual(await messageTexts(a.page), await messageTexts(b.page));
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.context.close();
  await b.context.close();
});

test('message text that looks like HTML is shown literally', { timeout: 60000 }, async () => {
  const a = await openMember(env.browser, env.server.url);
  const b = await openMember(env.browser, env.server.url);
  await joinRoom(a.page, 'grief');
  await joinRoom(b.page, 'grief');
  const nasty = '<b>x</b><img src=x onerror="window.__pwned=1">';
  await sendMessage(a.page, nasty);
  for (const { page } of [a, b]) {
    await waitForMessage(page, nasty);
    const found = await page.evaluate(() => {
      const list = document.querySelector('#screen-room .messages');
      return { imgs: list.querySelectorAll('img').length, bold: list.querySelectorAll('b').length, pwned: window.__pwned === 1 };
    });
    assert.deepEqual(found, { imgs: 0, bold: 0, pwned: false });
  }
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.context.close();
  await b.context.close();
});
