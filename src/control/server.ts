// The daemon's end of the control socket (see protocol.ts). Every failure a client can cause —
// bad JSON, an unknown method, a handler that throws, a line that never ends — becomes an error
// reply to that client; none of them can take the daemon down.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import type { Logger } from '../util/log.js';
import { ErrorCodes, LineReader, MAX_REQUEST_LINE, RequestSchema, encodeLine, type Response } from './protocol.js';

export type Handler = (params: unknown) => Promise<unknown>;

/** Not a crash: a reason the control server cannot start, with a code and a one-line message. */
export class ControlServerError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlServerError';
  }
}

/** Requests one connection may have in flight before we stop reading from it (backpressure). */
const MAX_IN_FLIGHT = 64;
const PROBE_TIMEOUT_MS = 1000;

export class ControlServer {
  private readonly sockets = new Set<Socket>();
  private closed = false;

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly ino: number,
    private readonly handlers: Readonly<Record<string, Handler>>,
    private readonly log: Logger | undefined,
  ) {
    server.on('connection', (socket) => this.serve(socket));
    // After listen, server errors (EMFILE on accept, ...) are logged: they must not crash the daemon.
    server.on('error', (err) => this.log?.error({ err: err.message }, 'control socket error'));
  }

  /**
   * Listens on `path` with mode 0600. A stale socket file (nobody answers) is replaced; if another
   * daemon answers on it, or something other than a socket is in the way, this refuses to start.
   * Keep the socket in a private (0700) directory: the chmod follows the bind, and the directory
   * is what closes that window.
   */
  static async listen(path: string, handlers: Record<string, Handler>, logger?: Logger): Promise<ControlServer> {
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
      return new ControlServer(server, path, st.ino, { ...handlers }, logger);
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
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await done;
    // Another daemon may have replaced a socket file we could not see was gone; only unlink ours.
    try {
      if ((await lstat(this.path)).ino === this.ino) await unlink(this.path);
    } catch {
      // already gone
    }
  }

  private serve(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const reader = new LineReader(MAX_REQUEST_LINE);
    let inFlight = 0;
    let hangingUp = false;

    const send = (res: Response) => {
      if (socket.destroyed || !socket.writable) return;
      socket.write(encodeLine(res));
    };

    socket.on('data', (chunk: Buffer) => {
      if (hangingUp) return;
      const { lines, overflow } = reader.push(chunk);
      for (const line of lines) {
        if (line.trim() === '') continue;
        inFlight++;
        if (inFlight >= MAX_IN_FLIGHT) socket.pause();
        void this.dispatch(line).then((res) => {
          send(res);
          inFlight--;
          if (inFlight < MAX_IN_FLIGHT && !hangingUp) socket.resume();
        });
      }
      if (overflow) {
        // Answer, then hang up: we cannot find where the next request starts.
        hangingUp = true;
        this.log?.warn({ limit: MAX_REQUEST_LINE }, 'control client sent an oversized line; hanging up');
        send({ id: null, ok: false, error: { code: ErrorCodes.LINE, message: `request line longer than ${MAX_REQUEST_LINE} bytes` } });
        socket.end(() => socket.destroy());
      }
    });
    socket.on('error', (err) => this.log?.debug({ err: err.message }, 'control client connection error'));
    socket.on('close', () => this.sockets.delete(socket));
  }

  /** Turns one request line into its response; never rejects. */
  private async dispatch(line: string): Promise<Response> {
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
      return { id, ok: false, error: { code: ErrorCodes.PROTO, message: `invalid request: ${where}${issue?.message ?? 'malformed'}` } };
    }
    const { id, method, params } = parsed.data;
    // Own properties only: 'toString' or '__proto__' must not reach Object.prototype.
    const handler = Object.hasOwn(this.handlers, method) ? this.handlers[method] : undefined;
    if (typeof handler !== 'function') {
      return { id, ok: false, error: { code: ErrorCodes.UNKNOWN, message: `unknown method ${JSON.stringify(method)}` } };
    }
    try {
      // Handlers always get an object, so `p.field` on a call without params is undefined, not a TypeError.
      const result = await handler(params ?? {});
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
