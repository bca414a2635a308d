// A greeter: joins a room and answers "hello" with a greeting.
//   KINDRED_URL=ws://127.0.0.1:8080/ws KINDRED_ROOM=grief node examples/bot.mjs
// (Node 20: node --experimental-websocket examples/bot.mjs)
import { KindredClient } from 'kindred-client';

const url = process.env.KINDRED_URL || 'ws://127.0.0.1:8080/ws';
const room = process.env.KINDRED_ROOM || 'grief';
const client = new KindredClient(url, { handle: process.env.KINDRED_HANDLE || 'Greeter' });

await client.connect();
const joined = await client.join(room).catch((err) => {
  if (err.code !== 'rules_not_accepted') throw err;
  return client.join(room, { acceptRules: err.frame.rules_version }); // a bot's operator accepted them
});
client.on('message', async (m) => {
  if (m.room !== room || m.from.member_id === joined.me.member_id) return;
  if (/^\s*hello\b/i.test(m.text)) await client.send(room, `Hello ${m.from.handle}, welcome!`, { replyTo: m.message_id }).catch(() => {});
});
process.on('SIGTERM', () => client.close());
console.log(`greeting in ${room}`);
