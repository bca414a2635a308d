// The client library (client-web/sdk/kindred-client.js) against the real
// server: two clients chat; the server is killed and restarted mid-conversation
// and every acknowledged message still arrives once and in order; closes that
// must not be retried (4403, 4401) are not; the example bot answers.
//
// Node 20 needs --experimental-websocket for the global WebSocket
// (server/tests/it/web_client.rs passes it).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KindredClient, KindredError } from '../sdk/kindred-client.js';
import { startServer } from './server.mjs';
import { SERVER_ARGS, client, joinAccepting, until, sleep, staffToken, sendWhile, assertOnceInOrder } from './sdk.mjs';

const here = dirname(fileURLToPath(import.meta.url));
let server;
const open = [];
/** A client closed after the test. */
const make = (url, options) => {
  const c = client(url, options);
  open.push(c);
  return c;
};

before(async () => {
  server = await startServer({ args: SERVER_ARGS });
});
after(async () => {
  for (const c of open) c.close();
  await server?.dispose();
});

test('two clients chat', { timeout: 30000 }, async () => {
  const ann = make(server.wsUrl, { handle: 'Ann' });
  const bo = make(server.wsUrl, { handle: 'Bo' });
  const welcome = await ann.connect();
  assert.equal(welcome.type, 'welcome');
  assert.equal(welcome.handle, 'Ann');
  assert.ok(ann.token, 'the session token is kept for reconnecting');
  await bo.connect();
  const joinedA = await joinAccepting(ann, 'anxiety');
  const joinedB = await joinAccepting(bo, 'anxiety');
  assert.equal(joinedB.room.id, 'anxiety');
  assert.deepEqual(ann.rooms, ['anxiety']);

  const presence = [];
  ann.on('presence', (p) => presence.push(p));
  const sent = await ann.send('anxiety', 'Is anyone around tonight?');
  assert.equal(sent.type, 'sent');
  await until('Bo gets the message', () => bo.seen.message.some((m) => m.message_id === sent.message_id));
  const reply = await bo.send('anxiety', 'I am here.', { replyTo: sent.message_id, cw: 'gentle' });
  await until('Ann gets the reply', () => ann.seen.message.some((m) => m.message_id === reply.message_id));
  const got = ann.seen.message.find((m) => m.message_id === reply.message_id);
  assert.equal(got.reply_to, sent.message_id);
  assert.equal(got.cw, 'gentle');
  assert.equal(got.from.member_id, joinedB.me.member_id);
  assert.deepEqual(ann.position('anxiety'), { epoch: joinedA.epoch, seq: reply.seq });

  // Anything else goes through request(); an error reply rejects with the error frame.
  const rooms = await ann.request({ type: 'list_rooms' });
  assert.ok(rooms.rooms.some((r) => r.id === 'anxiety'));
  await assert.rejects(ann.request({ type: 'leave', room: 'no-such-room' }), (err) => err instanceof KindredError && err.frame.type === 'error' && typeof err.code === 'string');
  await assert.rejects(ann.send('anxiety', 'x'.repeat(5000)), (err) => err.code === 'too_large');

  await bo.leave('anxiety');
  assert.deepEqual(bo.rooms, []);
  await until('Ann sees Bo leave', () => presence.some((p) => p.left === joinedB.me.member_id));
  assert.equal(ann.seen.reconnecting.length, 0);
});

test('a server killed and restarted mid-conversation: every acknowledged message arrives once, in order', { timeout: 120000 }, async () => {
  const room = 'grief';
  const ann = make(server.wsUrl, { handle: 'Ann' });
  const bo = make(server.wsUrl, { handle: 'Bo' });
  await ann.connect();
  await bo.connect();
  const annId = (await joinAccepting(ann, room)).me.member_id;
  await joinAccepting(bo, room);

  let stop = false;
  // Ann talks the whole time, the outages included (sends refused while down are not acknowledged).
  const talking = sendWhile(ann, room, 'ann', { stop: () => stop, gapMs: 15 });
  await until('a few messages', () => bo.seen.message.length >= 5);

  await server.restart({ kill: true }); // SIGKILL: no close frame, the sockets just drop
  await until('both back after the kill', () => ann.seen.reconnected.length === 1 && bo.seen.reconnected.length === 1);
  await until('more messages', () => bo.seen.message.length >= 25);

  await server.restart(); // SIGTERM: the server says it is restarting (1012)
  await until('both back after the restart', () => ann.seen.reconnected.length === 2 && bo.seen.reconnected.length === 2);
  await until('more messages again', () => bo.seen.message.length >= 45);
  stop = true;
  const acked = await talking;

  await until('Bo has every acknowledged message', () => acked.every((id) => bo.seen.message.some((m) => m.message_id === id)));
  assertOnceInOrder(assert, bo, room, annId, acked);
  // Ann sees her own messages the same way.
  assertOnceInOrder(assert, ann, room, annId, acked);

  // Durable history on a single node: both resumes filled the gap, and said so.
  for (const c of [ann, bo]) {
    assert.deepEqual(
      c.seen.reconnected.map((r) => r.rooms),
      [[{ room, recovered: true }], [{ room, recovered: true }]],
    );
    assert.ok(c.seen.closed.every((e) => e.willReconnect), 'every drop was retried');
    assert.ok(c.seen.closed.some((e) => e.code === 1012), `a restart closes with 1012: ${JSON.stringify(c.seen.closed)}`);
    assert.ok(c.seen.reconnecting.every((e) => e.delayMs >= 0 && e.delayMs <= 1000 && e.attempt >= 1));
  }
});

test('a service-wide ban closes with 4403 and the client does not come back', { timeout: 30000 }, async () => {
  const admin = make(server.wsUrl, { token: staffToken(server.dataDir, { name: 'Ada', role: 'admin' }) });
  const mo = make(server.wsUrl, { handle: 'Mo' });
  assert.equal((await admin.connect()).role, 'admin');
  await mo.connect();
  await joinAccepting(admin, 'veterans');
  const moId = (await joinAccepting(mo, 'veterans')).me.member_id;
  const token = mo.token;

  await admin.request({ type: 'moderate', room: 'veterans', action: 'ban', member_id: moId, service: true, reason: 'Scams across rooms.' });
  await until('Mo is closed', () => mo.seen.closed.length > 0);
  const [closed] = mo.seen.closed;
  assert.equal(closed.code, 4403);
  assert.equal(closed.willReconnect, false);
  assert.equal(closed.error.code, 'banned');
  await sleep(1500);
  assert.equal(mo.seen.reconnecting.length, 0, 'no reconnect after 4403');
  assert.equal(mo.state, 'closed');
  await assert.rejects(mo.connect(), (err) => err.code === 'banned');

  // Coming back with the same token is refused by the hello: connect() rejects, and the client stops.
  const again = make(server.wsUrl, { token });
  await assert.rejects(again.connect(), (err) => err instanceof KindredError && err.code === 'banned');
  assert.equal(again.seen.closed[0].code, 4403);
  assert.equal(again.seen.closed[0].willReconnect, false);
});

test('an account erased elsewhere (4401) and an expired staff token (4401) are not retried', { timeout: 30000 }, async () => {
  const first = make(server.wsUrl);
  await first.connect();
  const second = make(server.wsUrl, { token: first.token });
  await second.connect();
  await joinAccepting(second, 'caregivers');

  await first.request({ type: 'forget_me' });
  await until('both closed', () => first.seen.closed.length > 0 && second.seen.closed.length > 0);
  assert.deepEqual(
    first.seen.closed.map(({ code, willReconnect }) => ({ code, willReconnect })),
    [{ code: 1000, willReconnect: false }],
  );
  assert.deepEqual(
    second.seen.closed.map(({ code, willReconnect }) => ({ code, willReconnect })),
    [{ code: 4401, willReconnect: false }],
  );
  assert.equal(second.seen.closed[0].error.code, 'unauthorized');
  assert.deepEqual(second.rooms, [], 'nothing left to resume');

  // The same token again: the hello is refused for good.
  const third = make(server.wsUrl, { token: first.token });
  await assert.rejects(third.connect(), (err) => err.code === 'unauthorized');
  assert.equal(third.seen.closed[0].code, 4401);

  // A staff JWT that expires during the session.
  const staff = make(server.wsUrl, { token: staffToken(server.dataDir, { name: 'Sam', ttl: '2s' }) });
  await staff.connect();
  await until('closed when the token expires', () => staff.seen.closed.length > 0, 10000);
  assert.equal(staff.seen.closed[0].code, 4401);
  assert.equal(staff.seen.closed[0].willReconnect, false);
  await sleep(1500);
  for (const c of [first, second, third, staff]) assert.equal(c.seen.reconnecting.length, 0, 'no reconnect');
});

test('the example bot answers hello', { timeout: 30000 }, async () => {
  const room = 'pet-loss';
  const flags = typeof process.versions.node === 'string' && Number(process.versions.node.split('.')[0]) < 22 ? ['--experimental-websocket'] : [];
  const bot = spawn(process.execPath, [...flags, resolve(here, '..', 'sdk', 'examples', 'bot.mjs')], {
    env: { ...process.env, KINDRED_URL: server.wsUrl, KINDRED_ROOM: room },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  const exited = new Promise((r) => bot.once('exit', (code, signal) => r({ code, signal })));
  createInterface({ input: bot.stdout }).on('line', (l) => output.push(l));
  createInterface({ input: bot.stderr }).on('line', (l) => output.push(l));
  try {
    await until('the bot is in the room', () => output.some((l) => l.includes(`greeting in ${room}`)), 15000).catch((err) => {
      throw new Error(`${err.message}\n${output.join('\n')}`);
    });
    const me = make(server.wsUrl, { handle: 'Newcomer' });
    await me.connect();
    await joinAccepting(me, room);
    const hello = await me.send(room, 'hello everyone');
    await until('the greeting', () => me.seen.message.some((m) => m.reply_to === hello.message_id));
    const greeting = me.seen.message.find((m) => m.reply_to === hello.message_id);
    assert.equal(greeting.text, 'Hello Newcomer, welcome!');
    assert.equal(greeting.from.handle, 'Greeter');
  } finally {
    bot.kill('SIGTERM');
  }
  // close() ends every timer: the bot exits by itself.
  assert.deepEqual(await exited, { code: 0, signal: null });
});

test('the constructor needs a WebSocket, and accepts one as an option', () => {
  class FakeSocket {}
  const c = new KindredClient('ws://127.0.0.1:1/ws', { WebSocket: FakeSocket });
  assert.equal(c.state, 'idle');
  assert.throws(() => new KindredClient(42, { WebSocket: FakeSocket }), TypeError);
});
