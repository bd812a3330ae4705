// One client of the control server: its request lines in, its replies out, and the flow control
// that keeps what we hold for it bounded. Which connections we keep is the server's business
// (server.ts); this side reports what it holds and hangs up when told to.
import type { Socket } from 'node:net';
import type { Logger } from '../util/log.js';
import { ErrorCodes, LineReader, MAX_REQUEST_LINE, encodeLine, type Response } from './protocol.js';
import { MAX_IN_FLIGHT, MAX_UNSENT_BYTES } from './limits.js';

export interface ConnectionOwner {
  /** Turns one request line into its response; never rejects. */
  dispatch(line: string): Promise<Response>;
  /** This connection's unfinished-line bytes changed by `delta`. */
  buffered(conn: Connection, delta: number): void;
  /** This connection is closing or closed: it no longer counts (called once). */
  gone(conn: Connection): void;
  /** A socket we have ended: the owner cuts it once the client had time to read the last reply. */
  linger(socket: Socket): void;
}

export class Connection {
  private readonly reader = new LineReader(MAX_REQUEST_LINE);
  private readonly idleTimer: NodeJS.Timeout;
  private inFlight = 0;
  private closing = false;
  /** When the client last finished a request line or we last answered it (ms since the epoch). */
  lastActive = Date.now();

  constructor(
    private readonly socket: Socket,
    private readonly owner: ConnectionOwner,
    idleMs: number,
    private readonly log: Logger | undefined,
  ) {
    // Idle: no request in flight and none finished for idleMs. Bytes of an unfinished line do not
    // count, or a client trickling one byte a minute would be kept for ever.
    this.idleTimer = setTimeout(() => {
      if (this.inFlight > 0) this.idleTimer.refresh();
      else this.hangUp(ErrorCodes.IDLE, `closing a control connection idle for ${idleMs / 1000} s`);
    }, idleMs).unref();
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => this.flow());
    socket.on('error', (err) => this.log?.debug({ err: err.message }, 'control client connection error'));
    socket.on('close', () => this.leave());
  }

  /** Nothing in flight: closing this connection loses no answer. */
  get idle(): boolean {
    return this.inFlight === 0 && !this.closing;
  }

  /** Bytes held of the client's unfinished line. */
  get buffered(): number {
    return this.reader.buffered;
  }

  /** Sends a last error reply (id null) and closes; the client has a moment to read it. */
  hangUp(code: string, message: string): void {
    if (this.closing) return;
    this.send({ id: null, ok: false, error: { code, message } });
    this.leave();
    this.owner.linger(this.socket);
  }

  destroy(): void {
    this.leave();
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    if (this.closing) return;
    const before = this.reader.buffered;
    const { lines, overflow } = this.reader.push(chunk);
    this.owner.buffered(this, this.reader.buffered - before);
    for (const line of lines) {
      if (line.trim() === '') continue;
      this.active();
      this.inFlight++;
      void this.owner.dispatch(line).then((res) => {
        this.inFlight--;
        this.send(res);
        this.flow();
      });
    }
    if (overflow) {
      // We cannot find where the next request starts: answer, then hang up.
      this.log?.warn({ limit: MAX_REQUEST_LINE }, 'control client sent an oversized line; hanging up');
      this.hangUp(ErrorCodes.LINE, `request line longer than ${MAX_REQUEST_LINE} bytes`);
      return;
    }
    this.flow();
  }

  private send(res: Response): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.active();
    this.socket.write(encodeLine(res));
  }

  private active(): void {
    this.lastActive = Date.now();
    this.idleTimer.refresh();
  }

  /** Reads on only while the client has few requests in flight and reads its replies. */
  private flow(): void {
    if (this.closing) return;
    if (this.inFlight >= MAX_IN_FLIGHT || this.socket.writableLength > MAX_UNSENT_BYTES) this.socket.pause();
    else this.socket.resume();
  }

  private leave(): void {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.idleTimer);
    this.owner.buffered(this, -this.reader.buffered);
    this.owner.gone(this);
  }
}
