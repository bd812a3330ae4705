// The control methods' params schemas (methods.ts) on a real control server: every method refuses
// a wrong type, a missing field and an unknown field with one EINVAL line naming the method and
// the field, before its handler runs, and the server carries on; a valid call runs end to end and
// the handler gets the params; request() refuses bad params before it connects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer } from '../../src/control/server.js';
import { ControlError, call, request } from '../../src/control/client.js';
import { checkedHandlers, methods, type MethodHandlers, type MethodName } from '../../src/control/methods.js';

type Kind = 'string' | 'number' | 'boolean' | 'string[]';
type Field = { kind: Kind; optional?: true };

/** What each method takes, written out independently of the schemas it checks. */
const SPEC: Record<MethodName, Record<string, Field>> = {
  status: {},
  init: { network: { kind: 'string', optional: true }, cidr: { kind: 'string', optional: true }, allowOverlap: { kind: 'boolean', optional: true }, domain: { kind: 'string', optional: true } },
  invite: { ttlMs: { kind: 'number', optional: true }, uses: { kind: 'number', optional: true } },
  invites: {},
  cancelInvite: { id: { kind: 'string' } },
  join: { token: { kind: 'string' }, allowOverlap: { kind: 'boolean', optional: true } },
  leave: {},
  kick: { target: { kind: 'string' } },
  promote: { target: { kind: 'string' } },
  ping: { target: { kind: 'string' }, timeoutMs: { kind: 'number', optional: true } },
  netcheck: {},
  routes: {},
  routesAdvertise: { prefixes: { kind: 'string[]' }, snat: { kind: 'boolean', optional: true } },
  routesWithdraw: { prefixes: { kind: 'string[]' } },
  routesApprove: { target: { kind: 'string' }, prefixes: { kind: 'string[]' } },
  routesUnapprove: { target: { kind: 'string' }, prefixes: { kind: 'string[]' } },
  exitNodeUse: { target: { kind: 'string' }, allowLan: { kind: 'boolean', optional: true } },
  exitNodeOff: {},
  clientAdd: { name: { kind: 'string' }, publicKey: { kind: 'string', optional: true }, exitNode: { kind: 'boolean', optional: true } },
  clients: {},
  clientShow: { name: { kind: 'string' } },
  clientRemove: { name: { kind: 'string' } },
};

const GOOD: Record<Kind, unknown> = { string: 'x', number: 5, boolean: true, 'string[]': ['192.168.1.0/24'] };
/** A value of the wrong type for each kind, and the type name the error should give. */
const BAD: Record<Kind, [unknown, string]> = { string: [42, 'number'], number: ['5', 'string'], boolean: ['yes', 'string'], 'string[]': ['192.168.1.0/24', 'string'] };
const EXPECTED: Record<Kind, string> = { string: 'string', number: 'number', boolean: 'boolean', 'string[]': 'array' };

function valid(m: MethodName): Record<string, unknown> {
  return Object.fromEntries(Object.entries(SPEC[m]).map(([k, f]) => [k, GOOD[f.kind]]));
}

/** A server with every method: each handler records its params and answers its method's name. */
async function serve(t: { after(fn: () => Promise<void>): void }): Promise<{ path: string; calls: [string, unknown][] }> {
  const dir = await mkdtemp(join(tmpdir(), 'meshd-methods-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const calls: [string, unknown][] = [];
  const impl = Object.fromEntries(Object.keys(methods).map((m) => [m, async (p: unknown) => {
    calls.push([m, p]);
    return { method: m };
  }])) as unknown as MethodHandlers;
  const path = join(dir, 'meshd.sock');
  const server = await ControlServer.listen(path, checkedHandlers(impl));
  t.after(() => server.close());
  return { path, calls };
}

async function refused(path: string, method: string, params: object, message: string | RegExp): Promise<void> {
  await assert.rejects(call(path, method, params), (e: unknown) => {
    assert.ok(e instanceof ControlError, String(e));
    assert.equal(e.code, 'EINVAL', `${method} ${JSON.stringify(params)}: ${e.message}`);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

test('the spec names every method the table has', () => {
  assert.deepEqual(Object.keys(SPEC).sort(), Object.keys(methods).sort());
});

test('every method refuses wrong types, missing and unknown fields, naming method and field; the handler never runs', async (t) => {
  const { path, calls } = await serve(t);
  let cases = 0;
  for (const m of Object.keys(SPEC) as MethodName[]) {
    for (const [field, f] of Object.entries(SPEC[m])) {
      const [value, got] = BAD[f.kind];
      await refused(path, m, { ...valid(m), [field]: value }, `invalid params for ${m}: ${field} must be ${EXPECTED[f.kind]}, not ${got}`);
      await refused(path, m, { ...valid(m), [field]: null }, `invalid params for ${m}: ${field} must be ${EXPECTED[f.kind]}, not null`);
      if (f.kind === 'string[]') {
        await refused(path, m, { ...valid(m), [field]: ['10.1.0.0/16', 7] }, `invalid params for ${m}: ${field}.1 must be string, not number`);
      }
      if (!f.optional) {
        const { [field]: _gone, ...rest } = valid(m);
        await refused(path, m, rest, `invalid params for ${m}: ${field} is missing (expected ${EXPECTED[f.kind]})`);
        // no params at all is {} to the server: missing too
        await refused(path, m, {}, new RegExp(`^invalid params for ${m}: \\w+ is missing`));
      }
      cases++;
    }
    await refused(path, m, { ...valid(m), bogus: 1 }, `invalid params for ${m}: unknown field "bogus"`);
  }
  assert.ok(cases >= 25, `${cases} fields checked`);
  assert.deepEqual(calls, [], 'no handler ran on a bad call');
  // the server carries on: every method still answers a valid call, with the params it was given
  for (const m of Object.keys(SPEC) as MethodName[]) {
    assert.deepEqual(await call(path, m, valid(m)), { method: m });
  }
  assert.deepEqual(calls, (Object.keys(SPEC) as MethodName[]).map((m) => [m, valid(m)]));
});

test('optional fields may be left out; a call without params reaches a method that takes none', async (t) => {
  const { path, calls } = await serve(t);
  assert.deepEqual(await call(path, 'status'), { method: 'status' });
  assert.deepEqual(await call(path, 'init', {}), { method: 'init' });
  assert.deepEqual(await request(path, 'routesAdvertise', { prefixes: ['10.9.0.0/16'] }), { method: 'routesAdvertise' });
  assert.deepEqual(calls, [['status', {}], ['init', {}], ['routesAdvertise', { prefixes: ['10.9.0.0/16'] }]]);
});

test('request() types the call and checks params before connecting', async (t) => {
  const { path, calls } = await serve(t);
  const r = await request(path, 'kick', { target: 'bravo' });
  assert.deepEqual(r, { method: 'kick' } as unknown);
  assert.deepEqual(calls, [['kick', { target: 'bravo' }]]);
  // nothing listens here: a bad call fails on the params, not on the missing daemon
  const nowhere = join(tmpdir(), 'meshd-methods-nowhere.sock');
  await assert.rejects(request(nowhere, 'kick', { target: 7 } as never), (e: unknown) =>
    e instanceof ControlError && e.code === 'EINVAL' && e.message === 'invalid params for kick: target must be string, not number');
  await assert.rejects(request(nowhere, 'kick', { target: 'bravo' }), (e: unknown) => (e as { code?: string }).code === 'ENOTRUNNING');
});

test('plain handlers (no schema) are unchanged: they get whatever object was sent', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshd-methods-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'meshd.sock');
  const server = await ControlServer.listen(path, { echo: async (p) => p });
  t.after(() => server.close());
  assert.deepEqual(await call(path, 'echo', { anything: [1, 'x'] }), { anything: [1, 'x'] });
});
