// The daemon's persistent state: one LevelDB database at <stateDir>/db, split into sublevels by
// concept. Values are JSON text that this module encodes and decodes itself (not level's 'json'
// encoding), so one unreadable value is skipped with a warning instead of making a whole read
// throw: a corrupt envelope must never cost the identity key or the other envelopes.
//
//   identity   'libp2p'    base64 of the libp2p Ed25519 private key (protobuf bytes)
//              'wireguard' base64 of the WireGuard private key
//   network    'current'   NetworkInfo of the network this node belongs to
//   envelopes  <event id>  signed ledger envelopes, opaque JSON
//   settings   <name>      one entry per setting (interface name, ports, ...)
//
// Every change is one batch on the root database written with sync: true, so after a crash (even
// a power cut) a change is either all there or not there at all. A write that fails (a full disk)
// throws StoreError('ENOSPC', ...) and changes nothing; the next write reopens the database,
// because LevelDB keeps a write error until it is reopened.
import { chmod, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { createLogger, type Logger } from '../util/log.js';

export interface NetworkInfo {
  id: string;
  name: string;
  cidr: string;
  psk: string;
  founder: string;
  /** The DNS domain chosen at init (records.ts); absent: <name>.internal. */
  domain?: string;
}

/** A store failure with a code scripts can test and a message people can act on. */
export class StoreError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
  }
}

export interface StoreOptions {
  /** Where warnings about skipped (corrupt) values go; defaults to a 'store' logger on stderr. */
  logger?: Logger;
}

function sublevel(db: Level<string, string>, name: string) {
  return db.sublevel<string, string>(name, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}
type Sub = ReturnType<typeof sublevel>;
type Op = { type: 'put'; sublevel: Sub; key: string; value: string } | { type: 'del'; sublevel: Sub; key: string };

const WRITE = { sync: true } as const;
const NETWORK_KEY = 'current';
const LIBP2P_KEY = 'libp2p';
const WG_KEY = 'wireguard';

export class Store {
  private readonly identity: Sub;
  private readonly network: Sub;
  private readonly envelopes: Sub;
  private readonly settings: Sub;

  private constructor(
    /** The underlying database; exposed for tests and tooling, not for daemon code. */
    readonly db: Level<string, string>,
    readonly dir: string,
    private readonly log: Logger,
  ) {
    this.identity = sublevel(db, 'identity');
    this.network = sublevel(db, 'network');
    this.envelopes = sublevel(db, 'envelopes');
    this.settings = sublevel(db, 'settings');
  }

  /** Opens (creating if needed) the store in stateDir; the directory is made private (0700). */
  static async open(stateDir: string, opts: StoreOptions = {}): Promise<Store> {
    await prepareDir(stateDir);
    const path = join(stateDir, 'db');
    const db = new Level<string, string>(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    try {
      await db.open();
    } catch (err) {
      throw openError(stateDir, err);
    }
    return new Store(db, stateDir, opts.logger ?? createLogger('store'));
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  // ------------------------------------------------------------------ identity

  /** The libp2p private key as protobuf bytes, or null on first start. */
  async getIdentity(): Promise<Uint8Array | null> {
    return this.getBytes(this.identity, LIBP2P_KEY);
  }

  async setIdentity(bytes: Uint8Array): Promise<void> {
    await this.commit([{ type: 'put', sublevel: this.identity, key: LIBP2P_KEY, value: JSON.stringify(toB64(bytes)) }]);
  }

  /** The WireGuard private key (32 bytes), or null on first start. */
  async getWgKey(): Promise<Buffer | null> {
    const bytes = await this.getBytes(this.identity, WG_KEY);
    return bytes ? Buffer.from(bytes) : null;
  }

  async setWgKey(key: Uint8Array): Promise<void> {
    await this.commit([{ type: 'put', sublevel: this.identity, key: WG_KEY, value: JSON.stringify(toB64(key)) }]);
  }

  // ------------------------------------------------------------------ network

  async getNetwork(): Promise<NetworkInfo | null> {
    const v = await this.read(this.network, NETWORK_KEY, 'network');
    if (v === undefined) return null;
    if (!isNetworkInfo(v)) {
      this.log.warn({ sublevel: 'network' }, 'stored network is not a valid network description; ignoring it');
      return null;
    }
    return networkValue(v);
  }

  async setNetwork(n: NetworkInfo): Promise<void> {
    const value = networkValue(n);
    await this.commit([{ type: 'put', sublevel: this.network, key: NETWORK_KEY, value: JSON.stringify(value) }]);
  }

  async clearNetwork(): Promise<void> {
    await this.commit([{ type: 'del', sublevel: this.network, key: NETWORK_KEY }]);
  }

  // ------------------------------------------------------------------ envelopes

  /** Stores (or overwrites, by id) all items in one atomic batch: all of them land or none. */
  async putEnvelopes(items: readonly { id: string; value: unknown }[]): Promise<void> {
    if (items.length === 0) return;
    await this.commit(this.envelopeOps(items));
  }

  private envelopeOps(items: readonly { id: string; value: unknown }[]): Op[] {
    return items.map(({ id, value }): Op => {
      if (typeof id !== 'string' || id.length === 0) throw new StoreError('EINVAL', 'envelope id must be a non-empty string');
      const text = JSON.stringify(value);
      if (text === undefined) throw new StoreError('EINVAL', `envelope ${id} is not JSON-serialisable`);
      return { type: 'put', sublevel: this.envelopes, key: id, value: text };
    });
  }

  /** Every stored envelope, in key order; unreadable entries are skipped with a warning. */
  async allEnvelopes(): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const [key, text] of await this.entries(this.envelopes)) {
      const v = this.decode(text, 'envelopes', key);
      if (v !== undefined) out.push(v);
    }
    return out;
  }

  // ------------------------------------------------------------------ settings

  /**
   * All settings as one object ({} when none are stored). Each setting is its own entry, so a
   * corrupt one is skipped (with a warning) and the others survive.
   */
  async getSettings<T extends object = Record<string, unknown>>(): Promise<Partial<T>> {
    const out: Record<string, unknown> = {};
    for (const [key, text] of await this.entries(this.settings)) {
      const v = this.decode(text, 'settings', key);
      if (v !== undefined) out[key] = v;
    }
    return out as Partial<T>;
  }

  /** Merges obj into the stored settings in one batch; a key whose value is undefined is removed. */
  async setSettings(obj: Record<string, unknown>): Promise<void> {
    const ops = Object.entries(obj).map(([key, value]): Op =>
      value === undefined
        ? { type: 'del', sublevel: this.settings, key }
        : { type: 'put', sublevel: this.settings, key, value: JSON.stringify(value) });
    await this.commit(ops);
  }

  // ------------------------------------------------------------------ membership

  /**
   * Becoming a member (init, join): the network, its ledger and settings in one batch. A crash
   * (kill -9 in the middle of a join) leaves all of it or none: never a stored network without
   * the ledger that makes this node a member (which the next start would take for a removal).
   */
  async setMembership(n: NetworkInfo, items: readonly { id: string; value: unknown }[], settings: Record<string, unknown> = {}): Promise<void> {
    const value = networkValue(n);
    await this.commit([
      ...Object.entries(settings).map(([key, v]): Op => ({ type: 'put', sublevel: this.settings, key, value: JSON.stringify(v) })),
      ...this.envelopeOps(items),
      { type: 'put', sublevel: this.network, key: NETWORK_KEY, value: JSON.stringify(value) },
    ]);
  }

  /** For `meshd leave` and removal: forgets the network and its ledger in one batch; keeps identity. */
  async wipeMembership(): Promise<void> {
    const keys = (await this.entries(this.envelopes)).map(([key]) => key);
    await this.commit([
      { type: 'del', sublevel: this.network, key: NETWORK_KEY },
      ...keys.map((key): Op => ({ type: 'del', sublevel: this.envelopes, key })),
    ]);
  }

  // ------------------------------------------------------------------ helpers

  private async getBytes(sub: Sub, key: string): Promise<Uint8Array | null> {
    const v = await this.read(sub, key, 'identity');
    if (v === undefined) return null;
    if (typeof v === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(v) && v.length > 0) return new Uint8Array(Buffer.from(v, 'base64'));
    this.log.error({ sublevel: 'identity', key }, 'stored key is not base64; ignoring it (a new key gives this node a new identity)');
    return null;
  }

  private async entries(sub: Sub): Promise<[string, string][]> {
    try {
      return await sub.iterator().all();
    } catch (err) {
      throw ioError(this.dir, 'read', err);
    }
  }

  /** The decoded value, or undefined when absent or unreadable (warned). */
  private async read(sub: Sub, key: string, where: string): Promise<unknown> {
    let text: string | undefined;
    try {
      text = await sub.get(key);
    } catch (err) {
      throw ioError(this.dir, 'read', err);
    }
    return text === undefined ? undefined : this.decode(text, where, key);
  }

  private decode(text: string, sublevel: string, key: string): unknown {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      this.log.warn({ sublevel, key, bytes: text.length }, 'skipping a stored value that is not valid JSON');
      return undefined;
    }
  }

  /** Every write goes through here: one batch on the root database, fsynced, all or nothing. */
  private async commit(ops: Op[]): Promise<void> {
    if (ops.length === 0) return;
    // LevelDB keeps a write error (a full disk) for good: every later write fails with it, even
    // once space is back. So after a failed write the next one reopens the database first.
    if (this.failed) await this.reopen();
    try {
      await this.db.batch(ops, WRITE);
    } catch (err) {
      const e = ioError(this.dir, 'write', err);
      if (e.code !== 'ECLOSED') this.failed = true;
      throw e;
    }
  }

  /** True after a write failed: LevelDB may hold the error; the next write reopens first. */
  private failed = false;

  private async reopen(): Promise<void> {
    try {
      await this.db.close();
      await this.db.open();
      // Sublevels closed with their parent; they do not reopen by themselves.
      for (const sub of [this.identity, this.network, this.envelopes, this.settings]) await sub.open();
      this.failed = false;
      this.log.info({ dir: this.dir }, 'state database reopened after a failed write');
    } catch (err) {
      // Still no space (opening writes a new log), or worse: this write fails the same way, and
      // the next one tries again.
      if (this.db.status !== 'open') await this.db.open().catch(() => {});
      throw ioError(this.dir, 'write', (err as { cause?: unknown }).cause ?? err);
    }
  }
}

function toB64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function isNetworkInfo(v: unknown): v is NetworkInfo {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return ['id', 'name', 'cidr', 'psk', 'founder'].every((k) => typeof o[k] === 'string') && (o.domain === undefined || typeof o.domain === 'string');
}

/**
 * The fields of a NetworkInfo, exactly: the ledger pins it by its canonical JSON against the
 * genesis, so the optional domain is kept when present and never added when absent.
 */
function networkValue(n: NetworkInfo): NetworkInfo {
  return { id: n.id, name: n.name, cidr: n.cidr, psk: n.psk, founder: n.founder, ...(n.domain !== undefined ? { domain: n.domain } : {}) };
}

/** Creates the state directory private to root; tightens it if it exists with looser bits (it holds keys). */
async function prepareDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await stat(dir);
    if (!st.isDirectory()) throw Object.assign(new Error(`not a directory: ${dir}`), { code: 'ENOTDIR' });
    if ((st.mode & 0o077) !== 0) await chmod(dir, st.mode & 0o700);
  } catch (err) {
    throw fsError(dir, err);
  }
}

const FS_REASONS: Record<string, string> = {
  EROFS: 'the file system is read-only',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exhausted',
  EACCES: 'permission denied (meshd runs as root)',
  EPERM: 'permission denied (meshd runs as root)',
  ENOTDIR: 'a component of the path is not a directory',
  EEXIST: 'a file with that name is in the way',
};

function fsError(dir: string, err: unknown): StoreError {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'EIO';
  const reason = FS_REASONS[code] ?? (err as Error)?.message ?? String(err);
  return new StoreError(code, `cannot use state directory ${dir}: ${reason}`, { cause: err });
}

/** classic-level reports open failures as LEVEL_DATABASE_NOT_OPEN with the real reason in .cause. */
function openError(dir: string, err: unknown): StoreError {
  const cause = (err as { cause?: unknown })?.cause ?? err;
  const code = (cause as { code?: string })?.code ?? (err as { code?: string })?.code ?? '';
  const message = (cause as Error)?.message ?? String(cause);
  if (code === 'LEVEL_LOCKED' || /\block\b.*(held|temporarily unavailable)/i.test(message)) {
    return new StoreError('EBUSY', `another meshd daemon is using ${dir} (its database is locked); stop it first or pick another --state-dir`, { cause: err });
  }
  if (code === 'LEVEL_CORRUPTION') {
    return new StoreError('ECORRUPT', `the state database in ${join(dir, 'db')} is corrupt: ${message}`, { cause: err });
  }
  if (FS_REASONS[code]) return fsError(dir, cause);
  const errno = /\b(EROFS|ENOSPC|EDQUOT|EACCES|EPERM)\b/.exec(message) ?? (/read-only file system/i.test(message) ? ['EROFS'] : /no space left/i.test(message) ? ['ENOSPC'] : null);
  if (errno) return fsError(dir, Object.assign(new Error(message), { code: errno[0] }));
  return new StoreError('EIO', `cannot open the state database in ${join(dir, 'db')}: ${message}`, { cause: err });
}

function ioError(dir: string, what: 'read' | 'write', err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const cause = (err as { cause?: unknown })?.cause ?? err;
  const message = (cause as Error)?.message ?? String(cause);
  if (/no space left/i.test(message)) return new StoreError('ENOSPC', `cannot ${what} meshd state in ${dir}: the disk is full`, { cause: err });
  if (/read-only file system/i.test(message)) return new StoreError('EROFS', `cannot ${what} meshd state in ${dir}: the file system is read-only`, { cause: err });
  if ((err as { code?: string })?.code === 'LEVEL_DATABASE_NOT_OPEN') {
    return new StoreError('ECLOSED', `cannot ${what} meshd state in ${dir}: the store is closed`, { cause: err });
  }
  return new StoreError('EIO', `cannot ${what} meshd state in ${dir}: ${message}`, { cause: err });
}
