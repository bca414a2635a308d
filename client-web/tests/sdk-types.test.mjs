// The hand-kept types of the client library (client-web/sdk/kindred-client.d.ts)
// against the protocol's JSON Schema (docs/protocol.schema.json), so that
// neither drifts silently: every server frame type has an interface and an
// event, every client frame type an interface, with the schema's fields, and
// the client's own events are the ones kindred-client.js emits.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const dts = readFileSync(resolve(root, 'client-web/sdk/kindred-client.d.ts'), 'utf8');
const js = readFileSync(resolve(root, 'client-web/sdk/kindred-client.js'), 'utf8');
const schema = JSON.parse(readFileSync(resolve(root, 'docs/protocol.schema.json'), 'utf8'));
const defs = schema.$defs;

/** `export interface Name [extends Base] { … }` → {base, fields: Map(name → optional)} for each interface. */
function interfaces(source) {
  const found = new Map();
  const head = /export interface (\w+)(?: extends (\w+))? \{/g;
  for (let m; (m = head.exec(source)); ) {
    // The body runs to the matching brace.
    let depth = 1;
    let i = head.lastIndex;
    while (depth > 0) {
      if (source[i] === '{') depth++;
      else if (source[i] === '}') depth--;
      i++;
    }
    let body = source.slice(head.lastIndex, i - 1).replace(/\/\*\*[\s\S]*?\*\//g, '');
    // Only the interface's own fields: not those of object types inside it.
    while (/\{[^{}]*\}/.test(body)) body = body.replace(/\{[^{}]*\}/g, '()');
    const fields = new Map();
    for (const part of body.split(/[;\n]/)) {
      const f = part.match(/^\s*(\w+)(\?)?:/);
      if (f) fields.set(f[1], !!f[2]);
    }
    found.set(m[1], { base: m[2], fields });
  }
  return found;
}

const ifaces = interfaces(dts);

/** Every field of an interface, its bases' included. */
function fieldsOf(name) {
  const i = ifaces.get(name);
  assert.ok(i, `kindred-client.d.ts has no interface ${name}`);
  return new Map([...(i.base ? fieldsOf(i.base) : []), ...i.fields]);
}

const refName = (ref) => ref.split('/').pop();

/** The schema's fields of an object (following $ref and allOf) → Map(name → optional). */
function schemaFields(entry) {
  const fields = new Map();
  const bases = [entry.$ref, ...(entry.allOf || []).map((part) => part.$ref)].filter(Boolean);
  for (const ref of bases) for (const [k, v] of schemaFields(defs[refName(ref)])) fields.set(k, v);
  const required = new Set(entry.required || []);
  for (const k of Object.keys(entry.properties || {})) fields.set(k, !required.has(k));
  return fields;
}

const typesOf = (def) => defs[def].oneOf.map((e) => e.properties.type.const);
const sorted = (xs) => [...xs].sort();

/** `export interface Name { key: Value; … }` as [key, Value] pairs. */
function mapping(name) {
  return [...ifaces.get(name).fields.keys()].map((key) => [key, dts.match(new RegExp(`export interface ${name} \\{[\\s\\S]*?\\n\\s+${key}: (\\w+);`))[1]]);
}

test('every server frame type has an interface in the .d.ts, and no other', () => {
  const frames = mapping('ServerFrames');
  assert.deepEqual(sorted(frames.map(([k]) => k)), sorted(typesOf('ServerMessage')));
  for (const [type, iface] of frames) {
    const entry = defs.ServerMessage.oneOf.find((e) => e.properties.type.const === type);
    assert.match(dts, new RegExp(`interface ${iface}\\b[^{]*\\{[^}]*type: '${type}'`), `${iface} has type '${type}'`);
    assert.deepEqual(Object.fromEntries(fieldsOf(iface)), Object.fromEntries(schemaFields(entry)), `${iface}: fields and which are optional, as in the schema's ${type}`);
  }
});

test('every client frame type has an interface in the .d.ts, and no other', () => {
  const frames = mapping('ClientFrames');
  assert.deepEqual(sorted(frames.map(([k]) => k)), sorted(typesOf('ClientMessage')));
  for (const [type, iface] of frames) {
    if (type === 'moderate') continue; // a union by action, checked below
    const entry = defs.ClientMessage.oneOf.find((e) => e.properties.type.const === type);
    assert.deepEqual(Object.fromEntries(fieldsOf(iface)), Object.fromEntries(schemaFields(entry)), `${iface}: fields as in the schema's ${type}`);
  }
  const actions = defs.ClientMessage.oneOf.find((e) => e.properties.type.const === 'moderate').oneOf.map((a) => a.properties.action.const);
  const declared = [...dts.matchAll(/\{ action: '(\w+)'/g)].map((m) => m[1]);
  assert.deepEqual(sorted(declared), sorted(actions), 'every moderation action');
});

test('shapes shared by frames have the schema fields', () => {
  for (const name of ['ChatMessage', 'Member', 'RoomSummary', 'RoomInfo', 'ScheduleInfo', 'SessionInfo', 'Limits', 'ServerInfo', 'Sender', 'Report', 'Resource', 'Participant', 'Position']) {
    assert.deepEqual(Object.fromEntries(fieldsOf(name)), Object.fromEntries(schemaFields(defs[name])), name);
  }
  const union = (name) => sorted([...dts.matchAll(new RegExp(`export type ${name} =([^;]*);`, 'g'))][0][1].match(/'(\w+)'/g).map((s) => s.slice(1, -1)));
  for (const name of ['ErrorCode', 'NoticeKind', 'Role', 'RoomKind', 'RoomMode', 'RemovedReason', 'ReportResolution', 'AlertKind']) {
    const values = (def) => def.enum || def.oneOf.flatMap((o) => o.enum || [o.const]);
    assert.deepEqual(union(name), sorted(values(defs[name])), name);
  }
});

test("the client's own events are the ones it emits, and every event is typed", () => {
  const declared = [...ifaces.get('ClientEvents').fields.keys()];
  const emitted = new Set([...js.matchAll(/_emit\('(\w+)'/g)].map((m) => m[1]));
  assert.deepEqual(sorted(declared), sorted(emitted), 'ClientEvents lists what kindred-client.js emits itself');
  assert.match(dts, /export type KindredEvents = ServerFrames & ClientEvents;/, 'on() takes every server frame type and the client events');
  for (const type of declared) assert.ok(!typesOf('ServerMessage').includes(type), `${type} is not also a server frame type`);
});
