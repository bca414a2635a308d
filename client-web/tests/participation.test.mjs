// The facilitator's participation panel: every member with a count, the
// quiet one called out, read as a list with numbers; one click gives the
// floor in structured mode; axe-clean.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { kindredBin } from './server.mjs';
import { serverAndBrowser, openMember, joinRoom, sendMessage, waitForMessage, seriousViolations, WAIT } from './browser.mjs';

function facilitatorToken(dataDir) {
  const out = execFileSync(kindredBin(), ['token', '--role', 'facilitator', '--name', 'Facilitator Sam', '--ttl', '1h', '--data-dir', dataDir], { encoding: 'utf8', timeout: 30000 });
  return out.trim().split(/\s+/).pop();
}

const env = serverAndBrowser();

test('participation panel: counts, the quiet member called out, the floor in one click', { timeout: 90000 }, async () => {
  const a = await openMember(env.browser, env.server.url);
  const b = await openMember(env.browser, env.server.url);
  await joinRoom(a.page, 'caregivers');
  await joinRoom(b.page, 'caregivers');

  const fac = await env.browser.newContext({ viewport: { width: 1200, height: 800 }, bypassCSP: true });
  const fpage = await fac.newPage();
  fpage.setDefaultTimeout(WAIT);
  await fpage.goto(`${env.server.url}/#token=${facilitatorToken(env.server.dataDir)}`);
  await fpage.locator('.conn[data-state="online"]').waitFor({ state: 'attached' });
  await joinRoom(fpage, 'caregivers');

  await sendMessage(a.page, 'It has been a long week of appointments.');
  await sendMessage(a.page, 'Thank you for listening.');
  await waitForMessage(fpage, 'Thank you for listening.');

  const handleA = await a.page.evaluate(() => [...window.kindred.store.room('caregivers').members.values()].find((m) => m.member_id === window.kindred.store.room('caregivers').me.member_id).handle);
  const handleB = await b.page.evaluate(() => [...window.kindred.store.room('caregivers').members.values()].find((m) => m.member_id === window.kindred.store.room('caregivers').me.member_id).handle);

  const list = fpage.getByRole('list', { name: 'Who has spoken' });
  await list.locator('li', { hasText: '2 messages' }).waitFor({ timeout: WAIT });
  const rows = await list.locator('li').evaluateAll((lis) => lis.map((li) => li.textContent));
  assert.equal(rows.length, 3, rows.join(' | '));
  assert.ok(rows[0].includes("Hasn’t spoken yet"), `the quietest first: ${rows}`);
  assert.ok(rows.some((r) => r.includes(handleB) && r.includes("Hasn’t spoken yet")), `${handleB} has not spoken: ${rows}`);
  assert.ok(rows[rows.length - 1].includes(handleA) && rows[rows.length - 1].includes('2 messages'), `${handleA} last: ${rows}`);

  const violations = await seriousViolations(fpage);
  assert.deepEqual(violations, [], `tools: ${JSON.stringify(violations, null, 2)}`);

  // Structured mode: one click gives the quiet member the floor.
  await fpage.locator('#tools-structured').check();
  const give = list.getByRole('button', { name: `Give floor: ${handleB}` });
  await give.waitFor({ timeout: WAIT });
  await give.click();
  await fpage.waitForFunction((h) => [...window.kindred.store.room('caregivers').members.values()].find((m) => m.handle === h)?.has_floor === true, handleB, { timeout: WAIT });
  // The floor holder has no button; the others still do.
  await give.waitFor({ state: 'detached', timeout: WAIT });
  await a.context.close();
  await b.context.close();
  await fac.close();
});
