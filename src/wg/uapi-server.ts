// The UAPI socket: /var/run/wireguard/<ifname>.sock, where `wg` finds a userspace WireGuard device.
// Serves get and set against any Configurable (the engine alone, or the mesh daemon, which may refuse
// sets), over any number of connections, several requests per connection, one request at a time
// across all connections (as wireguard-go's ipcMutex), so a get never sees half of a set.
//
// Framing follows wireguard-go's IpcHandle: an operation line `get=1` or `set=1`; a get is followed
// by a blank line, a set by key=value lines and a blank line. Anything else ends the connection.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, renameSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ConfigError, EINVAL, EPROTO, type Configurable } from './config.js';
import { formatErrno, formatGet, parseSet } from './uapi.js';
import type { Logger } from '../util/log.js';

export const UAPI_DIR = '/var/run/wireguard';
/** Bound on one request's bytes: ~7000 peers of `wg setconf` with one allowed IP each. */
export const MAX_REQUEST_BYTES = 1 << 20;

const EMSGSIZE = 90;
/** wireguard-go's IpcErrorUnknown, for a failure that is not a ConfigError (a bug in the target). */
const EUNKNOWN = 55;
const SUN_PATH_MAX = 107; // sockaddr_un.sun_path is 108 bytes with its NUL

export interface UapiServerOptions {
  /** Directory of the socket; /var/run/wireguard unless a test wants its own. */
  dir?: string;
  logger?: Logger;
  maxRequestBytes?: number;
  /** How often onSocketRemoved checks the socket file. */
  watchIntervalMs?: number;
}

type Request =
  | { op: 'get' }
  | { op: 'set'; body: string }
  | { op: 'bad'; why: string; errno: number; reply: 'get' | 'set' };

/** Is something listening on this UNIX socket path? A connect that hangs counts as yes: never delete a live socket. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    const done = (yes: boolean) => {
      clearTimeout(timer);
      c.destroy();
      resolve(yes);
    };
    const timer = setTimeout(() => done(true), 1000);
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
  });
}

function inode(path: string): number | null {
  try {
    return lstatSync(path).ino;
  } catch {
    return null;
  }
}

export class UapiServer {
  private readonly connections = new Set<Socket>();
  private readonly removedCallbacks: Array<() => void> = [];
  private watchTimer: NodeJS.Timeout | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private removed = false;
  private ino: number | null = null;

  private constructor(
    readonly ifname: string,
    readonly path: string,
    private readonly target: Configurable,
    private readonly server: Server,
    private readonly opts: UapiServerOptions,
  ) {}

  /**
   * Listens on <dir>/<ifname>.sock. If that path answers a connection, another process serves the
   * interface: fails with code 'EADDRINUSE'. If it exists but refuses, its owner is gone: replaced.
   */
  static async listen(ifname: string, target: Configurable, opts: UapiServerOptions = {}): Promise<UapiServer> {
    // wg refuses names with '/', and interface names are at most 15 bytes (IFNAMSIZ - 1).
    if (!/^[A-Za-z0-9_=+.-]{1,15}$/.test(ifname) || ifname === '.' || ifname === '..') {
      throw Object.assign(new Error(`invalid interface name ${JSON.stringify(ifname)}: 1 to 15 of A-Z a-z 0-9 _ = + . -`), { code: 'EINVAL' });
    }
    const dir = opts.dir ?? UAPI_DIR;
    const path = join(dir, `${ifname}.sock`);
    if (Buffer.byteLength(path) + 16 > SUN_PATH_MAX) { // + 16: the temporary name bound first
      throw Object.assign(new Error(`UAPI socket path too long for a UNIX socket: ${path}`), { code: 'ENAMETOOLONG' });
    }
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const stale = inode(path) !== null;
    if (stale && (await answers(path))) {
      throw Object.assign(new Error(`${path} is in use: another process serves WireGuard interface ${ifname}`), { code: 'EADDRINUSE' });
    }

    let self: UapiServer | null = null;
    // allowHalfOpen: a client may send a set and shut down its side before the reply (see accept).
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      if (self) self.accept(socket);
      else socket.destroy(); // a connection before listen() returned: too early to serve
    });
    // Bind to a private name, then rename into place. The socket appears at its path whole, mode
    // 0600 from the start, atomically replacing a stale one (whose owner is gone: it did not
    // answer). And libuv unlinks the path it bound when the server closes, whatever file is there by
    // then: bound to the temporary name, that unlink cannot remove a successor's socket.
    const tmp = join(dir, `.${ifname}.${randomBytes(6).toString('hex')}.tmp`);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        resolve();
      });
      // Created under umask 077 (restored at once: the bind happens synchronously inside listen),
      // then chmod as well, as the umask cannot be changed from a worker thread.
      let umask: number | null = null;
      try {
        umask = process.umask(0o077);
      } catch {
        // worker thread: rely on chmod below
      }
      try {
        server.listen(tmp);
      } finally {
        if (umask !== null) process.umask(umask);
      }
    });
    try {
      chmodSync(tmp, 0o600);
      renameSync(tmp, path);
    } catch (err) {
      server.close();
      throw err;
    }
    if (stale) opts.logger?.info({ path }, 'replaced a stale UAPI socket');
    self = new UapiServer(ifname, path, target, server, opts);
    self.ino = inode(path);
    server.on('error', (err) => opts.logger?.error({ err: err.message, path }, 'UAPI server error'));
    opts.logger?.debug({ path }, 'UAPI socket listening');
    return self;
  }

  /**
   * Calls cb once when the socket file is deleted or replaced by another file: `wg` can no longer
   * reach this process, and wireguard-go exits then (ip link del, rm of the socket).
   */
  onSocketRemoved(cb: () => void): void {
    if (this.removed) {
      setImmediate(cb);
      return;
    }
    this.removedCallbacks.push(cb);
    if (this.watchTimer || this.closed) return;
    this.watchTimer = setInterval(() => {
      if (inode(this.path) === this.ino) return;
      this.removed = true;
      this.stopWatching();
      this.opts.logger?.warn({ path: this.path }, 'UAPI socket removed');
      for (const f of this.removedCallbacks) {
        try {
          f();
        } catch (err) {
          this.opts.logger?.error({ err: (err as Error).message }, 'onSocketRemoved callback failed');
        }
      }
    }, this.opts.watchIntervalMs ?? 1000);
    this.watchTimer.unref(); // watching alone must not keep the process alive
  }

  /** Stops listening, drops open connections and removes the socket file (if it is still ours). */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.stopWatching();
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.destroy();
    if (this.ino !== null && inode(this.path) === this.ino) {
      try {
        unlinkSync(this.path);
      } catch {
        // gone meanwhile
      }
    }
    return done;
  }

  private stopWatching(): void {
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchTimer = null;
  }

  /** Runs fn after every request before it, across all connections. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private accept(socket: Socket): void {
    const log = this.opts.logger;
    const max = this.opts.maxRequestBytes ?? MAX_REQUEST_BYTES;
    this.connections.add(socket);
    // latin1: one char per byte, so lengths are byte counts; valid requests are ASCII anyway.
    let buffer = '';
    let searchFrom = 0; // where to resume looking for a set's blank line
    let busy = false;
    let ended = false; // the client shut down its side
    let finished = false; // we are done with this connection

    const finish = (reply?: string) => {
      if (finished) return;
      finished = true;
      buffer = '';
      if (socket.destroyed) return;
      if (reply && socket.writable) socket.end(reply, () => socket.destroy());
      else socket.end(() => socket.destroy());
    };

    // The next complete request at the head of the buffer, or null until more bytes arrive.
    const next = (): Request | null => {
      const nl = buffer.indexOf('\n');
      if (nl < 0) {
        if (buffer.length > 16) return { op: 'bad', why: 'operation line too long', errno: EPROTO, reply: 'set' };
        if (ended && buffer.length > 0) return { op: 'bad', why: 'truncated operation line', errno: EPROTO, reply: 'set' };
        return null;
      }
      const op = buffer.slice(0, nl);
      if (op === 'get=1') {
        if (buffer.length < nl + 2) return null; // the blank line is still to come (or never: EOF, no reply)
        if (buffer[nl + 1] !== '\n') return { op: 'bad', why: 'get=1 must be followed by a blank line', errno: EINVAL, reply: 'get' };
        buffer = buffer.slice(nl + 2);
        searchFrom = 0;
        return { op: 'get' };
      }
      if (op === 'set=1') {
        const end = buffer.indexOf('\n\n', Math.max(nl, searchFrom));
        if (end < 0) {
          searchFrom = buffer.length - 1;
          // wireguard-go applies a set cut short by EOF as if its blank line had come: so do we.
          if (!ended) return null;
          const body = buffer.slice(nl + 1);
          buffer = '';
          return { op: 'set', body };
        }
        if (end > max) return { op: 'bad', why: `request of ${end} bytes exceeds ${max}`, errno: EMSGSIZE, reply: 'set' };
        const body = buffer.slice(nl + 1, end);
        buffer = buffer.slice(end + 2);
        searchFrom = 0;
        return { op: 'set', body };
      }
      return { op: 'bad', why: `unknown operation ${JSON.stringify(op.slice(0, 16))}`, errno: EPROTO, reply: 'set' };
    };

    const pump = async () => {
      if (busy) return;
      busy = true;
      try {
        while (!finished) {
          const req = next();
          if (req === null) break;
          if (req.op === 'bad') {
            log?.warn({ ifname: this.ifname, why: req.why }, 'UAPI protocol error; closing connection');
            finish(formatErrno(req.errno, req.reply));
            return;
          }
          const reply = await this.exclusive(() => this.handle(req));
          if (!socket.destroyed && socket.writable) socket.write(reply);
        }
        if (!finished && buffer.length > max) {
          // An unfinished request already over the bound: refuse it now rather than buffer on.
          log?.warn({ ifname: this.ifname, bytes: buffer.length, max }, 'UAPI request too large; closing connection');
          finish(formatErrno(EMSGSIZE, 'set'));
          return;
        }
        if (ended) finish();
      } catch (err) {
        // Not reached for bad input (handle() turns every failure into an errno); a broken socket.
        log?.debug({ err: (err as Error).message }, 'UAPI connection failed');
        socket.destroy();
      } finally {
        busy = false;
      }
    };

    socket.on('data', (chunk: Buffer) => {
      if (finished) return; // draining after an error reply
      buffer += chunk.toString('latin1');
      void pump();
    });
    socket.on('end', () => {
      ended = true;
      void pump();
    });
    socket.on('error', (err) => {
      log?.debug({ err: err.message }, 'UAPI connection error');
      socket.destroy();
    });
    socket.on('close', () => {
      finished = true;
      buffer = '';
      this.connections.delete(socket);
    });
  }

  private async handle(req: { op: 'get' } | { op: 'set'; body: string }): Promise<string> {
    const log = this.opts.logger;
    try {
      if (req.op === 'get') return formatGet(this.target.snapshot());
      await this.target.apply(parseSet(req.body));
      log?.debug({ ifname: this.ifname }, 'UAPI set applied');
      return formatErrno(0, 'set');
    } catch (err) {
      let errno = EUNKNOWN;
      if (err instanceof ConfigError && Number.isInteger(err.errno) && err.errno !== 0) {
        errno = Math.abs(err.errno);
        log?.warn({ ifname: this.ifname, op: req.op, errno, err: err.message }, 'UAPI request refused');
      } else {
        log?.error({ ifname: this.ifname, op: req.op, err: (err as Error)?.stack ?? String(err) }, 'UAPI request failed');
      }
      return formatErrno(errno, req.op);
    }
  }
}
