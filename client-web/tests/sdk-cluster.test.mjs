// The client library on a two-node cluster sharing rooms through a real
// redis-server: a client whose node is killed fails over to the other node
// (it was given both URLs) and resumes there; every message acknowledged on
// either side arrives once, in order, at the other client.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KindredServer } from './server.mjs';
import { SERVER_ARGS, client, joinAccepting, until, sendWhile, assertOnceInOrder } from './sdk.mjs';

const ROOM = 'grief';
/** Every node of a cluster signs and checks tokens with the same secret. */
const SECRET = 'sdk-cluster-test-secret-sdk-cluster-test-secret';

/** A free port on 127.0.0.1 (redis-server cannot pick one itself and say which). */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

/** A redis-server without persistence on a free port; resolves once it accepts connections. */
async function startRedis(dir) {
  const port = await freePort();
  const proc = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  await new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${log.join('')}`)), 15000);
    proc.once('error', (err) => reject(new Error(`redis-server could not be run (apt-get install redis-server): ${err.message}`)));
    proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${log.join('')}`)));
    proc.stdout.on('data', (chunk) => {
      log.push(String(chunk));
      if (/Ready to accept connections/.test(log.join(''))) {
        clearTimeout(timer);
        resolveReady();
      }
    });
  });
  return { proc, url: `redis://127.0.0.1:${port}` };
}

/** A kindred node on the cluster; resolves once it is ready (its Redis is reachable). */
async function startNode(redisUrl, name) {
  const node = new KindredServer({ env: { KINDRED_JWT_SECRET: SECRET }, args: ['--node', name, '--redis', redisUrl, ...SERVER_ARGS] });
  await node.start();
  const deadline = Date.now() + 15000;
  while ((await fetch(`${node.url}/readyz`).then((r) => r.status, () => 0)) !== 200) {
    if (Date.now() > deadline) throw new Error(`node ${name} never became ready\n${node.tail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return node;
}

let dir;
let redis;
const nodes = [];
const clients = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kindred-sdk-cluster-'));
  redis = await startRedis(dir);
  for (const name of ['a', 'b']) nodes.push(await startNode(redis.url, name));
});

after(async () => {
  for (const c of clients) c.close();
  for (const node of nodes) await node.dispose();
  redis?.proc.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a client whose node is killed fails over to the other node and misses nothing', { timeout: 120000 }, async () => {
  const [a, b] = nodes;
  // Each client is given both nodes, its own first: a reconnect moves on to the next one.
  const ann = client([a.wsUrl, b.wsUrl], { handle: 'Ann' });
  const bo = client([b.wsUrl, a.wsUrl], { handle: 'Bo' });
  clients.push(ann, bo);
  assert.equal((await ann.connect()).server.node, 'a');
  assert.equal((await bo.connect()).server.node, 'b');
  const annId = (await joinAccepting(ann, ROOM)).me.member_id;
  const boId = (await joinAccepting(bo, ROOM)).me.member_id;

  let stop = false;
  const annTalks = sendWhile(ann, ROOM, 'ann', { stop: () => stop, gapMs: 15 });
  const boTalks = sendWhile(bo, ROOM, 'bo', { stop: () => stop, gapMs: 15 });
  await until('both hear each other', () => bo.seen.message.some((m) => m.from.member_id === annId) && ann.seen.message.some((m) => m.from.member_id === boId));

  await a.kill();
  await until('Ann is back, on node b', () => ann.seen.reconnected.length === 1);
  assert.equal(ann.welcome.server.node, 'b');
  const heardBefore = bo.seen.message.filter((m) => m.from.member_id === annId).length;
  await until('Ann heard again after the failover', () => bo.seen.message.filter((m) => m.from.member_id === annId).length >= heardBefore + 10);
  stop = true;
  const [annAcked, boAcked] = await Promise.all([annTalks, boTalks]);

  await until('every acknowledged message arrived', () => annAcked.every((id) => bo.seen.message.some((m) => m.message_id === id)) && boAcked.every((id) => ann.seen.message.some((m) => m.message_id === id)));
  assertOnceInOrder(assert, bo, ROOM, annId, annAcked);
  assertOnceInOrder(assert, ann, ROOM, boId, boAcked);
  assertOnceInOrder(assert, ann, ROOM, annId, annAcked);

  // The room's history is in Redis: the resume on the other node filled the gap.
  assert.deepEqual(ann.seen.reconnected[0].rooms, [{ room: ROOM, recovered: true }]);
  assert.ok(ann.seen.closed.every((e) => e.willReconnect));
  assert.equal(bo.seen.reconnecting.length, 0, 'the client on the surviving node stayed connected');
});
