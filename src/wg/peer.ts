// A peer: its static key, its handshake and sessions, where it is, and what it has sent us.
import { CookieGenerator } from './cookie.js';
import type { Timings } from './constants.js';
import type { Endpoint } from './endpoint.js';
import { Keypairs } from './keypair.js';
import { Handshake } from './noise.js';
import { Timers } from './timers.js';

export class Peer {
  readonly handshake: Handshake;
  readonly keypairs = new Keypairs();
  readonly timers: Timers;
  readonly cookieGenerator = new CookieGenerator();
  endpoint: Endpoint | null = null;
  rxBytes = 0;
  txBytes = 0;
  /** Wall-clock milliseconds of the last completed handshake; 0 = never. */
  lastHandshakeWall = 0;
  /** Packets waiting for a session (copies; only while no session exists). */
  staged: Buffer[] = [];

  constructor(readonly publicKey: Buffer, timings: Timings) {
    this.handshake = new Handshake(publicKey);
    this.timers = new Timers(timings);
    this.cookieGenerator.init(publicKey);
  }

  get persistentKeepalive(): number {
    return this.timers.persistentKeepaliveInterval / 1000;
  }

  get key(): string {
    return this.publicKey.toString('hex');
  }
}
