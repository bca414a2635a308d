// Helpers for the client library's tests (sdk*.test.mjs): clients with quick
// reconnects, joining through the ground rules, collecting what a client
// receives, waiting for a condition, and staff tokens from the real binary.

import { execFileSync } from 'node:child_process';
import { KindredClient } from '../sdk/kindred-client.js';
import { kindredBin } from './server.mjs';

/** Each member may send this many messages per 10 s in these tests (the default 10 is too few). */
export const SERVER_ARGS = ['--messages-per-10s', '10000'];

/** A client that comes back quickly, recording its own events. */
export function client(url, options = {}) {
  const c = new KindredClient(url, { baseDelayMs: 100, maxDelayMs: 1000, requestTimeoutMs: 5000, ...options });
  c.seen = { message: [], reconnecting: [], reconnected: [], closed: [] };
  for (const type of Object.keys(c.seen)) c.on(type, (e) => c.seen[type].push(e));
  return c;
}

/** Join, accepting the room's rules when asked. */
export async function joinAccepting(c, room) {
  try {
    return await c.join(room);
  } catch (err) {
    if (err.code !== 'rules_not_accepted') throw err;
    return c.join(room, { acceptRules: err.frame.rules_version });
  }
}

/** Resolves once `cond()` is true; fails after `timeoutMs` saying what it waited for. */
export async function until(what, cond, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A staff JWT signed with the server's secret (its data dir, or KINDRED_JWT_SECRET). */
export function staffToken(dataDir, { name, role = 'facilitator', ttl = '1h', env = {} }) {
  const args = ['token', '--role', role, '--name', name, '--ttl', ttl, '--data-dir', dataDir];
  return execFileSync(kindredBin(), args, { encoding: 'utf8', timeout: 30000, env: { ...process.env, ...env } }).trim().split(/\s+/).pop();
}

/**
 * Send `text-0`, `text-1`, … from `c` until `stop()` says so (or `count` were
 * tried), pausing `gapMs` between them; returns the ids the server acknowledged
 * (`sent`), in order. Sends refused because the connection is down are skipped.
 */
export async function sendWhile(c, room, text, { count = Infinity, stop = () => false, gapMs = 0 } = {}) {
  const acked = [];
  for (let i = 0; i < count && !stop(); i++) {
    try {
      acked.push((await c.send(room, `${text}-${i}`)).message_id);
    } catch (err) {
      if (err.code !== 'disconnected' && err.code !== 'timeout') throw err;
    }
    if (gapMs) await sleep(gapMs);
  }
  return acked;
}

/**
 * What `receiver` got from `senderId` in `room`: no message twice, seqs only
 * growing, and every acknowledged id there in the order it was sent.
 */
export function assertOnceInOrder(assert, receiver, room, senderId, acked) {
  const got = receiver.seen.message.filter((m) => m.room === room && m.from.member_id === senderId);
  const ids = got.map((m) => m.message_id);
  assert.equal(new Set(ids).size, ids.length, 'no message delivered twice');
  for (let i = 1; i < got.length; i++) assert.ok(got[i].seq > got[i - 1].seq, `in order: seq ${got[i].seq} after ${got[i - 1].seq}`);
  const ackedSet = new Set(acked);
  assert.deepEqual(
    ids.filter((id) => ackedSet.has(id)),
    acked,
    'every acknowledged message, in the order sent',
  );
}
