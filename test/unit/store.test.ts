// The store against a real LevelDB in a temporary directory: round trips, durability across a
// reopen, atomic batches, corrupt values skipped without losing the rest, the lock held by a
// running daemon, and leave keeping the identity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { Logger } from '../../src/util/log.js';
import { Store, StoreError, type NetworkInfo } from '../../src/store/store.js';

/** A logger that records what the store warns about. */
function recorder(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (obj: unknown, msg?: string) => void lines.push(`${level} ${msg ?? ''} ${JSON.stringify(obj)}`);
  const logger = { warn: rec('warn'), error: rec('error'), info: rec('info'), debug: rec('debug') } as unknown as Logger;
  return { logger, lines };
}

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshd-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'state'); // not yet existing: Store.open creates it
}

const NET: NetworkInfo = { id: 'a'.repeat(32), name: 'home', cidr: '10.0.0.0/24', psk: 'b'.repeat(64), founder: '12D3KooWfounder' };

test('round trips every concept, and a reopen keeps everything', async (t) => {
  const dir = await tempDir(t);
  const { logger } = recorder();
  let store = await Store.open(dir, { logger });
  assert.equal((await stat(dir)).mode & 0o777, 0o700, 'state dir is private');

  assert.equal(await store.getIdentity(), null);
  assert.equal(await store.getWgKey(), null);
  assert.equal(await store.getNetwork(), null);
  assert.deepEqual(await store.allEnvelopes(), []);
  assert.deepEqual(await store.getSettings(), {});

  const identity = new Uint8Array([8, 1, 18, 64, ...Array.from({ length: 64 }, (_, i) => i)]);
  const wg = Buffer.alloc(32, 7);
  await store.setIdentity(identity);
  await store.setWgKey(wg);
  await store.setNetwork({ ...NET, extra: 'dropped' } as NetworkInfo);
  await store.putEnvelopes([
    { id: 'e2', value: { type: 'admit', n: 2 } },
    { id: 'e1', value: { type: 'genesis', n: 1 } },
  ]);
  await store.setSettings({ ifname: 'mesh0', listenPort: 51820 });
  await store.setSettings({ p2pPort: 4001, listenPort: 51821 }); // merges

  const check = async (s: Store) => {
    assert.deepEqual(await s.getIdentity(), identity);
    assert.deepEqual(await s.getWgKey(), wg);
    assert.deepEqual(await s.getNetwork(), NET);
    assert.deepEqual(await s.allEnvelopes(), [{ type: 'genesis', n: 1 }, { type: 'admit', n: 2 }]);
    assert.deepEqual(await s.getSettings<{ ifname: string; listenPort: number; p2pPort: number }>(), { ifname: 'mesh0', listenPort: 51821, p2pPort: 4001 });
  };
  await check(store);
  await store.close();

  store = await Store.open(dir, { logger });
  t.after(() => store.close());
  await check(store);

  // overwrite by id, remove a setting, clear the network
  await store.putEnvelopes([{ id: 'e1', value: { type: 'genesis', n: 'one' } }]);
  assert.deepEqual(await store.allEnvelopes(), [{ type: 'genesis', n: 'one' }, { type: 'admit', n: 2 }]);
  await store.setSettings({ p2pPort: undefined });
  assert.deepEqual(await store.getSettings(), { ifname: 'mesh0', listenPort: 51821 });
  await store.clearNetwork();
  assert.equal(await store.getNetwork(), null);
});

test('putEnvelopes is one batch: a bad item means none of them land', async (t) => {
  const dir = await tempDir(t);
  const store = await Store.open(dir, { logger: recorder().logger });
  t.after(() => store.close());
  await store.putEnvelopes([{ id: 'keep', value: 1 }]);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  await assert.rejects(store.putEnvelopes([{ id: 'a', value: 2 }, { id: 'b', value: cyclic }]));
  await assert.rejects(store.putEnvelopes([{ id: 'c', value: 3 }, { id: '', value: 4 }]), (e: unknown) => e instanceof StoreError && e.code === 'EINVAL');
  assert.deepEqual(await store.allEnvelopes(), [1]);
  // and a good batch lands completely
  await store.putEnvelopes(Array.from({ length: 100 }, (_, i) => ({ id: `k${String(i).padStart(3, '0')}`, value: i })));
  assert.equal((await store.allEnvelopes()).length, 101);
});

test('setMembership (init, join) is one batch: the network lands with its ledger and settings, or nothing does', async (t) => {
  const dir = await tempDir(t);
  const store = await Store.open(dir, { logger: recorder().logger });
  t.after(() => store.close());
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  await assert.rejects(store.setMembership(NET, [{ id: 'g', value: { type: 'genesis' } }, { id: 'x', value: cyclic }], { ledgerFormat: 2 }));
  assert.equal(await store.getNetwork(), null, 'no network without its ledger');
  assert.deepEqual(await store.allEnvelopes(), []);
  assert.deepEqual(await store.getSettings(), {});
  await store.setMembership(NET, [{ id: 'g', value: { type: 'genesis' } }, { id: 'a', value: { type: 'admit' } }], { ledgerFormat: 2 });
  assert.deepEqual(await store.getNetwork(), NET);
  assert.deepEqual(await store.allEnvelopes(), [{ type: 'admit' }, { type: 'genesis' }]);
  assert.deepEqual(await store.getSettings(), { ledgerFormat: 2 });
});

test('a corrupt value is skipped with a warning; everything else survives', async (t) => {
  const dir = await tempDir(t);
  const { logger, lines } = recorder();
  const store = await Store.open(dir, { logger });
  t.after(() => store.close());
  await store.setIdentity(new Uint8Array([1, 2, 3]));
  await store.setNetwork(NET);
  await store.putEnvelopes([{ id: 'a', value: { ok: 1 } }, { id: 'c', value: { ok: 3 } }]);
  await store.setSettings({ ifname: 'mesh0', listenPort: 1 });

  // Write raw bytes that are not JSON straight through the underlying database.
  const raw = (name: string) => store.db.sublevel<string, string>(name, { valueEncoding: 'utf8' });
  await raw('envelopes').put('b', '{"truncated": ');
  await raw('settings').put('listenPort', 'not json');
  assert.deepEqual(await store.allEnvelopes(), [{ ok: 1 }, { ok: 3 }]);
  assert.deepEqual(await store.getSettings(), { ifname: 'mesh0' });
  assert.ok(lines.some((l) => l.startsWith('warn') && l.includes('not valid JSON') && l.includes('"key":"b"')), lines.join('\n'));

  await raw('network').put('current', '{{{');
  assert.equal(await store.getNetwork(), null);
  await raw('network').put('current', JSON.stringify({ id: 1 })); // JSON, but not a network
  assert.equal(await store.getNetwork(), null);
  await raw('identity').put('wireguard', '"%%% not base64"');
  assert.equal(await store.getWgKey(), null);
  assert.deepEqual(await store.getIdentity(), new Uint8Array([1, 2, 3]), 'the identity is untouched');

  // the bad entry does not block writing or wiping
  await store.putEnvelopes([{ id: 'd', value: 4 }]);
  assert.deepEqual(await store.allEnvelopes(), [{ ok: 1 }, { ok: 3 }, 4]);
});

test('a second open of the same state dir fails: another daemon is using it', async (t) => {
  const dir = await tempDir(t);
  const store = await Store.open(dir, { logger: recorder().logger });
  t.after(() => store.close());
  await assert.rejects(Store.open(dir, { logger: recorder().logger }), (e: unknown) => {
    assert.ok(e instanceof StoreError);
    assert.equal(e.code, 'EBUSY');
    assert.equal(e.message.includes(`another meshd daemon is using ${dir}`), true, e.message);
    return true;
  });
  // the first one still works
  await store.setWgKey(Buffer.alloc(32, 1));
  assert.deepEqual(await store.getWgKey(), Buffer.alloc(32, 1));
});

test('an unusable state dir gives a clear error', async (t) => {
  const dir = await tempDir(t);
  const parent = join(dir, '..');
  const file = join(parent, 'a-file');
  await writeFile(file, 'x');
  await assert.rejects(Store.open(join(file, 'state')), (e: unknown) => {
    assert.ok(e instanceof StoreError);
    assert.equal(e.code, 'ENOTDIR');
    assert.match(e.message, /^cannot use state directory .*a-file\/state: a component of the path is not a directory$/);
    return true;
  });
  await assert.rejects(Store.open(file), (e: unknown) => e instanceof StoreError && /cannot use state directory/.test(e.message));
});

test('an existing state dir with loose permissions is made private', async (t) => {
  const dir = await tempDir(t);
  await mkdir(dir, { mode: 0o755 });
  await chmod(dir, 0o755);
  const store = await Store.open(dir, { logger: recorder().logger });
  t.after(() => store.close());
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
});

test('a closed store fails clearly instead of hanging', async (t) => {
  const dir = await tempDir(t);
  const store = await Store.open(dir, { logger: recorder().logger });
  await store.close();
  await assert.rejects(store.setNetwork(NET), (e: unknown) => e instanceof StoreError && e.code === 'ECLOSED' && /store is closed/.test(e.message));
});

test('wipeMembership drops network and envelopes, keeps identity and settings', async (t) => {
  const dir = await tempDir(t);
  const logger = recorder().logger;
  let store = await Store.open(dir, { logger });
  const identity = new Uint8Array([9, 9, 9]);
  await store.setIdentity(identity);
  await store.setWgKey(Buffer.alloc(32, 2));
  await store.setNetwork(NET);
  await store.putEnvelopes([{ id: 'x', value: 1 }, { id: 'y', value: 2 }]);
  await store.setSettings({ ifname: 'mesh0' });
  await store.wipeMembership();
  await store.close();

  store = await Store.open(dir, { logger });
  t.after(() => store.close());
  assert.equal(await store.getNetwork(), null);
  assert.deepEqual(await store.allEnvelopes(), []);
  assert.deepEqual(await store.getIdentity(), identity);
  assert.deepEqual(await store.getWgKey(), Buffer.alloc(32, 2));
  assert.deepEqual(await store.getSettings(), { ifname: 'mesh0' });
  await store.wipeMembership(); // nothing to wipe: still fine
});

test('a full disk: a write fails with ENOSPC and changes nothing; once there is space again, writes work (the database is reopened)', async (t) => {
  // A 2 MiB tmpfs of our own (root), unmounted after the test whatever happens.
  const dir = await mkdtemp(join(tmpdir(), 'meshd-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
  t.after(async () => {
    try { execFileSync('umount', ['-l', dir]); } catch { /* already gone */ }
    await rm(dir, { recursive: true, force: true });
  });
  const { logger, lines } = recorder();
  const store = await Store.open(join(dir, 'state'), { logger });
  let open = true;
  t.after(async () => { if (open) await store.close().catch(() => {}); });
  await store.putEnvelopes([{ id: 'before', value: { n: 1 } }]);
  // Fill what is left of the disk.
  const filler = join(dir, 'filler');
  const chunk = Buffer.alloc(64 * 1024, 7);
  for (let i = 0; i < 64; i++) {
    try {
      await writeFile(filler, chunk, { flag: 'a' });
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      break;
    }
  }
  const big = { id: 'during', value: { pad: 'x'.repeat(256 * 1024) } };
  await assert.rejects(store.putEnvelopes([big]), (err: unknown) => err instanceof StoreError && err.code === 'ENOSPC' && /the disk is full/.test(err.message));
  await assert.rejects(store.putEnvelopes([big]), (err: unknown) => err instanceof StoreError && err.code === 'ENOSPC', 'still full: still refused');
  // Space again: the next write works (LevelDB alone would keep failing).
  await rm(filler);
  await store.putEnvelopes([{ id: 'after', value: { n: 3 } }]);
  const ids = (await store.allEnvelopes()).map((v) => JSON.stringify(v));
  assert.deepEqual(ids.sort(), ['{"n":1}', '{"n":3}'], 'the failed write left nothing');
  await store.close();
  open = false;
  assert.ok(lines.some((l) => l.includes('reopened')), 'the store says it reopened');
  const again = await Store.open(join(dir, 'state'), { logger });
  assert.equal((await again.allEnvelopes()).length, 2, 'and so after a restart');
  await again.close();
});

test('a network with a DNS domain keeps it across a reopen; one without gets none added', async (t) => {
  const dir = await tempDir(t);
  const { logger } = recorder();
  let store = await Store.open(dir, { logger });
  const withDomain: NetworkInfo = { ...NET, domain: 'corp.internal' };
  await store.setNetwork(withDomain);
  await store.close();
  store = await Store.open(dir, { logger });
  assert.deepEqual(await store.getNetwork(), withDomain);
  await store.setMembership(NET, []);
  assert.equal('domain' in (await store.getNetwork())!, false, 'no domain field when the genesis has none');
  await store.close();
});
