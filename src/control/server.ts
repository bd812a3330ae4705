// The daemon's end of the control socket (see protocol.ts). Every failure a client can cause —
// bad JSON, an unknown method, params of the wrong shape, a handler that throws, a line that never
// ends — becomes an error reply to that client; none of them can take the daemon down, nor its
// memory (limits.ts). A handler given with a schema (methods.ts) only ever sees params that pass it.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import type { Logger } from '../util/log.js';
import { ErrorCodes, RequestSchema, encodeLine, type Response } from './protocol.js';
import { Connection, type ConnectionOwner } from './connection.js';
import { HANG_UP_GRACE_MS, defaultLimits, type ControlLimits } from './limits.js';
import { checkParams, type CheckedHandler } from './methods.js';

export type Handler = (params: unknown) => Promise<unknown>;

/** Not a crash: a reason the control server cannot start, with a code and a one-line message. */
export class ControlServerError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlServerError';
  }
}

const PROBE_TIMEOUT_MS = 1000;
/** Longest error message sent back (zod lists every unrecognised key, and keys can be long). */
const MAX_MESSAGE = 200;
/** The connection limits are logged at most this often while they bite. */
const LIMIT_LOG_INTERVAL_MS = 60_000;

export class ControlServer implements ConnectionOwner {
  /** Every socket we have, including those we are hanging up on (close() ends them all). */
  private readonly sockets = new Set<Socket>();
  /** The connections that count towards the limits. */
  private readonly conns = new Set<Connection>();
  /** Sockets we have ended and cut after HANG_UP_GRACE_MS, oldest first (see linger). */
  private readonly lingering = new Set<Socket>();
  private bufferedBytes = 0;
  private closed = false;
  private dropped = 0;
  private lastLimitLog = 0;

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly ino: number,
    private readonly handlers: Readonly<Record<string, Handler | CheckedHandler>>,
    private readonly log: Logger | undefined,
    readonly limits: ControlLimits,
  ) {
    server.on('connection', (socket) => this.admit(socket));
    // After listen, server errors are logged: they must not crash the daemon. (At the open-file
    // limit libuv accepts and closes newcomers itself; the connection cap keeps us below it.)
    server.on('error', (err) => this.log?.error({ err: err.message }, 'control socket error'));
  }

  /** Connections being served now. */
  get connections(): number {
    return this.conns.size;
  }

  /**
   * Listens on `path` with mode 0600. A stale socket file (nobody answers) is replaced; if another
   * daemon answers on it, or something other than a socket is in the way, this refuses to start.
   * Keep the socket in a private (0700) directory: the chmod follows the bind, and the directory
   * is what closes that window.
   */
  static async listen(path: string, handlers: Record<string, Handler | CheckedHandler>, logger?: Logger, limits: Partial<ControlLimits> = {}): Promise<ControlServer> {
    await clearStale(path, logger);
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: false });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(err.code === 'EADDRINUSE'
          ? new ControlServerError('EADDRINUSE', `another meshd daemon is already listening on ${path}`, { cause: err })
          : new ControlServerError(err.code ?? 'EIO', `cannot listen on control socket ${path}: ${err.message}`, { cause: err }));
      };
      server.once('error', onError);
      server.listen(path, () => {
        server.off('error', onError);
        resolve();
      });
    });
    try {
      await chmod(path, 0o600);
      const st = await lstat(path);
      return new ControlServer(server, path, st.ino, { ...handlers }, logger, { ...defaultLimits(), ...limits });
    } catch (err) {
      server.close();
      throw new ControlServerError('EIO', `cannot secure control socket ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Stops listening, hangs up on every client and removes the socket file (if it is still ours). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.conns) c.destroy();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.lingering.clear();
    await done;
    // Another daemon may have replaced a socket file we could not see was gone; only unlink ours.
    try {
      if ((await lstat(this.path)).ino === this.ino) await unlink(this.path);
    } catch {
      // already gone
    }
  }

  /** Takes a new connection, making room at the cap by closing the connection idle longest. */
  private admit(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    const { maxConnections } = this.limits;
    if (this.conns.size >= maxConnections) {
      const idlest = this.idlest();
      const message = `meshd daemon has ${maxConnections} control connections open`;
      if (idlest) {
        this.limited('control connection limit reached; closing the longest-idle connection');
        idlest.hangUp(ErrorCodes.BUSY, `${message}; closing this idle one`);
      } else {
        // Every connection is waiting for an answer: the newcomer must wait its turn.
        this.limited('control connection limit reached and none idle; refusing a connection');
        socket.on('error', () => {});
        socket.write(encodeLine({ id: null, ok: false, error: { code: ErrorCodes.BUSY, message: `${message}, all busy; try again` } }));
        this.linger(socket);
        return;
      }
    }
    this.conns.add(new Connection(socket, this, this.limits.idleMs, this.log));
  }

  /** The connection with nothing in flight that was active longest ago, if any. */
  private idlest(): Connection | undefined {
    let found: Connection | undefined;
    for (const c of this.conns) if (c.idle && (!found || c.lastActive < found.lastActive)) found = c;
    return found;
  }

  /** ConnectionOwner: keeps unfinished lines within maxBufferedBytes, closing the largest holders. */
  buffered(_conn: Connection, delta: number): void {
    this.bufferedBytes += delta;
    while (this.bufferedBytes > this.limits.maxBufferedBytes) {
      let largest: Connection | undefined;
      for (const c of this.conns) if (!largest || c.buffered > largest.buffered) largest = c;
      if (!largest || largest.buffered === 0) break;
      this.limited('control request buffers full; closing the connection holding the most');
      largest.hangUp(ErrorCodes.BUSY, `meshd daemon holds ${this.limits.maxBufferedBytes} bytes of unfinished requests; closing the largest (${largest.buffered} bytes)`);
    }
  }

  /** ConnectionOwner: the connection no longer counts. */
  gone(conn: Connection): void {
    this.conns.delete(conn);
  }

  /**
   * ConnectionOwner: ends a socket whose last reply is written, and cuts it after the grace. Each
   * still holds a file descriptor, so no more than maxConnections linger: under a flood of
   * newcomers the oldest is cut at once. Without this bound, connections closed at the cap piled
   * up for the grace and took the process to its open-file limit, where libuv closes newcomers
   * unanswered (a user's request reset). Cutting early loses no reply the kernel took: on a UNIX
   * socket it is already in the client's queue, and the client reads it before the reset.
   */
  linger(socket: Socket): void {
    socket.end();
    if (socket.destroyed) return;
    this.lingering.add(socket);
    const timer = setTimeout(() => socket.destroy(), HANG_UP_GRACE_MS).unref();
    socket.once('close', () => {
      clearTimeout(timer);
      this.lingering.delete(socket);
    });
    for (const oldest of this.lingering) {
      if (this.lingering.size <= this.limits.maxConnections) break;
      this.lingering.delete(oldest);
      oldest.destroy();
    }
  }

  /** Logs that a limit bit, once per LIMIT_LOG_INTERVAL_MS with how often it did meanwhile. */
  private limited(msg: string): void {
    this.dropped++;
    const now = Date.now();
    if (now - this.lastLimitLog < LIMIT_LOG_INTERVAL_MS) return;
    this.log?.warn({ dropped: this.dropped, connections: this.conns.size, limits: this.limits }, msg);
    this.lastLimitLog = now;
    this.dropped = 0;
  }

  /** ConnectionOwner: turns one request line into its response; never rejects. */
  async dispatch(line: string): Promise<Response> {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return { id: null, ok: false, error: { code: ErrorCodes.PROTO, message: 'request is not valid JSON' } };
    }
    const parsed = RequestSchema.safeParse(json);
    if (!parsed.success) {
      const id = idOf(json);
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
      return { id, ok: false, error: { code: ErrorCodes.PROTO, message: clip(`invalid request: ${where}${issue?.message ?? 'malformed'}`) } };
    }
    const { id, method, params } = parsed.data;
    // Own properties only: 'toString' or '__proto__' must not reach Object.prototype.
    const entry = Object.hasOwn(this.handlers, method) ? this.handlers[method] : undefined;
    const handler = typeof entry === 'function' ? entry : entry?.run;
    if (typeof handler !== 'function') {
      return { id, ok: false, error: { code: ErrorCodes.UNKNOWN, message: `unknown method ${JSON.stringify(method)}` } };
    }
    // Handlers always get an object, so `p.field` on a call without params is undefined, not a TypeError.
    let input: unknown = params ?? {};
    if (typeof entry === 'object') {
      const checked = checkParams(method, entry.params, input);
      if (!checked.ok) return { id, ok: false, error: { code: ErrorCodes.PARAMS, message: clip(checked.message) } };
      input = checked.params;
    }
    try {
      const result = await handler(input);
      const res: Response = { id, ok: true, result: result === undefined ? null : result };
      JSON.stringify(res); // a result that cannot be sent (cycle, BigInt) is the handler's error
      return res;
    } catch (err) {
      return { id, ok: false, error: this.errorBody(method, err) };
    }
  }

  private errorBody(method: string, err: unknown): { code: string; message: string } {
    const code = (err as { code?: unknown })?.code;
    const message = err instanceof Error ? err.message : String(err);
    if (typeof code === 'string' && code.length > 0 && code.length <= 128) {
      this.log?.debug({ method, code, err: message }, 'control request failed');
      return { code, message };
    }
    // No code: not an error the handler meant to report; log it in full.
    this.log?.error({ method, err: err instanceof Error ? err.stack : message }, 'control handler failed unexpectedly');
    return { code: ErrorCodes.INTERNAL, message: message || 'internal error' };
  }
}

function clip(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message;
}

function idOf(json: unknown): number | null {
  const id = (json as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id : null;
}

/**
 * Makes `path` free to bind: nothing there, or a socket nobody answers on (a daemon that died
 * without cleaning up), which is removed. A live daemon, or a file that is not a socket, is an error.
 */
async function clearStale(path: string, log: Logger | undefined): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ControlServerError('EIO', `cannot check control socket ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isSocket()) {
    throw new ControlServerError('EEXIST', `${path} exists and is not a socket; remove it if it is not needed`);
  }
  const answer = await probe(path);
  if (answer instanceof Error) {
    throw new ControlServerError((answer as NodeJS.ErrnoException).code ?? 'EIO', `cannot check control socket ${path}: ${answer.message}`, { cause: answer });
  }
  if (answer === 'alive') {
    throw new ControlServerError('EADDRINUSE', `another meshd daemon is already running on ${path}; stop it first (meshd daemon runs once per state directory)`);
  }
  log?.info({ path }, 'removing stale control socket');
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ControlServerError('EIO', `cannot remove stale control socket ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** 'alive' if something accepts connections on path, 'stale' if connecting is refused, else the error. */
function probe(path: string): Promise<'alive' | 'stale' | Error> {
  return new Promise((resolve) => {
    const sock = createConnection(path);
    const timer = setTimeout(() => {
      // Neither accepted nor refused in time: a wedged daemon still owns it; do not steal it.
      sock.destroy();
      resolve('alive');
    }, PROBE_TIMEOUT_MS);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve('alive');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'stale' : err);
    });
  });
}
