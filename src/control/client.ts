// The command line's end of the control socket (see protocol.ts): one connection per call, one
// request, the matching response, hang up. Errors are one line a person can act on. request()
// is call() typed by the method table (methods.ts), its params checked before they are sent.
import { createConnection } from 'node:net';
import { ErrorCodes, LineReader, MAX_RESPONSE_LINE, ResponseSchema, encodeLine } from './protocol.js';
import { checkParams, methods, type MethodName, type Params, type Result } from './methods.js';

/**
 * The socket is missing or nobody listens on it: the daemon is not running. `startWith`: the
 * command that starts the daemon this socket belongs to (the CLI's, with its --state-dir).
 */
export class DaemonNotRunningError extends Error {
  readonly code = 'ENOTRUNNING';
  constructor(readonly path: string, options?: { cause?: unknown; startWith?: string }) {
    super(`meshd daemon is not running (no socket at ${path}); start it with: ${options?.startWith ?? 'meshd daemon  (or: systemctl start meshd)'}`, options);
    this.name = 'DaemonNotRunningError';
  }
}

/** The daemon answered with an error, or the call failed on the way: `code` says which. */
export class ControlError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlError';
  }
}

export interface CallOptions {
  /** Give up (code ETIMEDOUT) when no answer arrives in this time; default 30 s. */
  timeoutMs?: number;
}

let nextId = 1;

/**
 * Failures that say the daemon never read the request, so asking again cannot do anything twice:
 * refused, or closed as idle, at its connection cap (EBUSY: a connection whose request has not
 * been read yet counts as idle, so under a flood of connections a user's may be the one closed),
 * a listen backlog full (EAGAIN), a connection it had already hung up on (EPIPE).
 */
const RETRYABLE = new Set(['EBUSY', 'EAGAIN', 'EPIPE']);

/**
 * Calls `method` on the daemon listening at `path` and returns its result. A daemon busy at its
 * connection cap (thousands of idle connections: issue 9) is asked again, with a growing pause,
 * until the timeout.
 */
export async function call<T = unknown>(path: string, method: string, params?: object, opts: CallOptions = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (let pause = 50; ; pause = Math.min(1000, pause * 2)) {
    try {
      return await attempt<T>(path, method, params, Math.max(1, deadline - Date.now()));
    } catch (err) {
      if (!(err instanceof ControlError && RETRYABLE.has(err.code)) || Date.now() + pause >= deadline) throw err;
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}

/**
 * Calls one of the daemon's methods (methods.ts): params and result typed by its schema, and
 * params that do not fit it fail here (EINVAL), as the daemon would refuse them.
 */
export async function request<M extends MethodName>(path: string, method: M, params: Params<M>, opts: CallOptions = {}): Promise<Result<M>> {
  const checked = checkParams(method, methods[method], params);
  if (!checked.ok) throw new ControlError(ErrorCodes.PARAMS, checked.message);
  return call<Result<M>>(path, method, params, opts);
}

function attempt<T>(path: string, method: string, params: object | undefined, timeoutMs: number): Promise<T> {
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    const sock = createConnection(path);
    const reader = new LineReader(MAX_RESPONSE_LINE);
    let settled = false;
    const finish = (err: Error | null, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value as T);
    };
    const timer = setTimeout(() => finish(new ControlError('ETIMEDOUT', `meshd daemon did not answer ${method} within ${timeoutMs} ms`)), timeoutMs);

    sock.on('connect', () => sock.write(encodeLine({ id, method, ...(params === undefined ? {} : { params: params as Record<string, unknown> }) })));
    sock.on('data', (chunk: Buffer) => {
      const { lines, overflow } = reader.push(chunk);
      for (const line of lines) {
        let json: unknown;
        try {
          json = JSON.parse(line);
        } catch {
          return finish(new ControlError('EPROTO', `meshd daemon sent an unreadable reply to ${method}`));
        }
        const parsed = ResponseSchema.safeParse(json);
        if (!parsed.success) return finish(new ControlError('EPROTO', `meshd daemon sent a malformed reply to ${method}`));
        const res = parsed.data;
        if (res.ok && res.id === id) return finish(null, res.result as T);
        // An error without our id (id null) is the daemon rejecting the request itself.
        if (!res.ok && (res.id === id || res.id === null)) return finish(new ControlError(res.error.code, res.error.message));
      }
      if (overflow) finish(new ControlError('EPROTO', `meshd daemon's reply to ${method} is larger than ${MAX_RESPONSE_LINE} bytes`));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') return finish(new DaemonNotRunningError(path, { cause: err }));
      if (err.code === 'EACCES' || err.code === 'EPERM') {
        return finish(new ControlError(err.code, `permission denied on ${path}: the control socket is root's; run this command as root (sudo)`, { cause: err }));
      }
      finish(new ControlError(err.code ?? 'EIO', `cannot talk to meshd daemon at ${path}: ${err.message}`, { cause: err }));
    });
    sock.on('close', () => finish(new ControlError('ECONNRESET', `meshd daemon closed the connection before answering ${method}`)));
  });
}
