// Browser helpers for the tests: launch Debian's Chromium through
// playwright-core, open a member in its own context, join a room (accepting
// the ground rules), send and wait for messages. Every wait has a timeout.

import { before, after } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve, dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// Test runs leave the committed screenshots alone; refresh them on purpose
// with KINDRED_UPDATE_SCREENSHOTS=1.
export const SCREENSHOT_DIR = process.env.KINDRED_UPDATE_SCREENSHOTS
  ? resolve(here, '..', '..', 'docs', 'screenshots')
  : join(tmpdir(), 'kindred-screenshots');
export const WAIT = 10000;

/**
 * Start a real server and a browser before the calling file's tests, and
 * close both after them. Returns `{ server, browser }`, filled in by `before`.
 */
export function serverAndBrowser() {
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer();
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.dispose();
  });
  return env;
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A member in a fresh browser context (own localStorage = own identity).
 * `errors` collects page errors and CSP violations so tests can assert none happened.
 */
/** Collect the page's script errors and CSP refusals (to assert there are none); sets the wait timeout. */
export function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) errors.push(`csp: ${m.text()}`);
  });
  page.setDefaultTimeout(WAIT);
  return errors;
}

export async function openMember(browser, baseUrl, { viewport = { width: 1200, height: 800 }, reducedMotion = 'reduce', bypassCSP = false } = {}) {
  // bypassCSP only for axe-core, which is injected as an inline script.
  const context = await browser.newContext({ viewport, reducedMotion, bypassCSP, locale: 'en-GB', timezoneId: 'Europe/London' });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${baseUrl}/`);
  await page.locator('.conn[data-state="online"]').waitFor({ state: 'attached', timeout: WAIT });
  return { context, page, errors };
}

/** The member's handle in the room on screen (generated handles differ per room). */
export function myHandle(page) {
  return page.evaluate(() => window.kindred.store.room(window.kindred.activeRoom).me.handle);
}

/** Wait for the directory to list a room, click its Join, accept rules if asked, and wait for the composer. */
export async function joinRoom(page, roomId, roomName) {
  await page.locator('#screen-directory:not([hidden])').waitFor({ timeout: WAIT });
  const join = roomName ? page.getByRole('button', { name: `Join ${roomName}`, exact: true }) : page.locator(`#room-title-${roomId}`).locator('xpath=ancestor::li').locator('.room-join');
  await join.click({ timeout: WAIT });
  await acceptRulesIfAsked(page);
  await page.locator('#composer-text').waitFor({ state: 'visible', timeout: WAIT });
  await page.locator('#screen-room .messages').waitFor({ state: 'attached', timeout: WAIT });
}

export async function acceptRulesIfAsked(page) {
  const outcome = () =>
    page
      .waitForFunction(
        () => {
          if (!document.getElementById('screen-rules').hidden) return 'rules';
          if (window.kindred?.store.room(window.kindred.activeRoom)?.active) return 'joined';
          return false;
        },
        null,
        { timeout: WAIT },
      )
      .then((h) => h.jsonValue());
  if ((await outcome()) === 'rules') {
    await page.locator('#rules-accept').click();
    await page.waitForFunction(() => window.kindred?.store.room(window.kindred.activeRoom)?.active === true, null, { timeout: WAIT });
  }
  await page.locator('#screen-room:not([hidden]) #composer-text').waitFor({ state: 'visible', timeout: WAIT });
}

/** Type and send with Enter; resolves once the server accepted it (the composer empties). */
export async function sendMessage(page, text) {
  const box = page.locator('#composer-text');
  await box.fill(text);
  await box.press('Enter');
  await page.waitForFunction(() => document.getElementById('composer-text').value === '', null, { timeout: WAIT });
}

export function messageTexts(page) {
  return page.locator('#screen-room .messages .msg:not(.msg-whisper) .msg-text').allTextContents();
}

export async function waitForMessage(page, text, timeout = WAIT) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#screen-room .messages .msg-text')].some((el) => el.textContent === t),
    text,
    { timeout },
  );
}

/** Run axe-core in the page (open it with bypassCSP) and return violations of impact serious or critical. */
export async function seriousViolations(page) {
  const require = createRequire(import.meta.url);
  const axePath = require.resolve('axe-core/axe.min.js');
  await page.addScriptTag({ content: readFileSync(axePath, 'utf8') });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export function screenshotPath(name) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  return resolve(SCREENSHOT_DIR, name);
}
