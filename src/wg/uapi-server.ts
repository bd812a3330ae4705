// The UAPI socket: /var/run/wireguard/<ifname>.sock, the door `wg` knocks on. Serves get and set
// against any Configurable (the engine alone, or the mesh daemon, which may refuse sets).
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmodSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, EINVAL, EPROTO, type Configurable } from './config.js';
import { formatErrno, formatGet, parseSet } from './uapi.js';

export const UAPI_DIR = '/var/run/wireguard';
const MAX_REQUEST = 1 << 20;

interface Logger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

export class UapiServer {
  private watch: NodeJS.Timeout | null = null;
  private inode = 0;

  private constructor(private readonly server: Server, readonly path: string) {}

  /** Listens on DIR/<ifname>.sock; fails with code EADDRINUSE if another process answers there. */
  static async listen(ifname: string, target: Configurable, opts: { dir?: string; logger?: Logger } = {}): Promise<UapiServer> {
    const dir = opts.dir ?? UAPI_DIR;
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const path = join(dir, `${ifname}.sock`);
    try {
      statSync(path);
      if (await answers(path)) {
        throw Object.assign(new Error(`${path} is in use: another WireGuard process serves ${ifname}`), { code: 'EADDRINUSE' });
      }
      unlinkSync(path); // stale: its owner is gone
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const server = createServer((socket) => serve(socket, target, opts.logger));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const umask = process.umask(0o077);
      server.listen(path, () => {
        process.umask(umask);
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
    const s = new UapiServer(server, path);
    s.inode = statSync(path).ino;
    return s;
  }

  /** Calls back once when the socket file is deleted or replaced (the engine then exits, as wireguard-go does). */
  onSocketRemoved(cb: () => void): void {
    this.watch = setInterval(() => {
      let ino = 0;
      try {
        ino = statSync(this.path).ino;
      } catch {
        // gone
      }
      if (ino !== this.inode) {
        clearInterval(this.watch!);
        this.watch = null;
        cb();
      }
    }, 500);
  }

  close(): void {
    if (this.watch) clearInterval(this.watch);
    this.server.close();
    try {
      if (statSync(this.path).ino === this.inode) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

function serve(socket: Socket, target: Configurable, log?: Logger): void {
  let buffer = '';
  let busy = Promise.resolve();
  socket.setEncoding('utf8');
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    if (buffer.length > MAX_REQUEST) {
      socket.end(formatErrno(EINVAL));
      return;
    }
    let end: number;
    // A request is its lines up to a blank line; several may arrive in one chunk.
    while ((end = buffer.indexOf('\n\n')) >= 0 || buffer === '\n') {
      const request = buffer === '\n' ? '' : buffer.slice(0, end);
      buffer = buffer === '\n' ? '' : buffer.slice(end + 2);
      busy = busy.then(() => handle(request, target, log)).then((reply) => {
        if (!socket.destroyed) socket.write(reply);
      });
    }
  });
}

async function handle(request: string, target: Configurable, log?: Logger): Promise<string> {
  const nl = request.indexOf('\n');
  const op = nl < 0 ? request : request.slice(0, nl);
  const body = nl < 0 ? '' : request.slice(nl + 1);
  try {
    if (op === 'get=1') return formatGet(target.snapshot());
    if (op === 'set=1') {
      await target.apply(parseSet(body));
      return formatErrno(0);
    }
    return formatErrno(EPROTO);
  } catch (err) {
    const errno = err instanceof ConfigError ? err.errno : EINVAL;
    log?.warn({ err: (err as Error).message }, 'uapi request refused');
    return formatErrno(errno);
  }
}
