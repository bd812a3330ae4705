// A keypair is one session's transport keys (paper 5.4.6), and a peer holds up to three of them:
// the previous one (still accepted while packets in flight drain), the current one (used to
// send), and the next one (a responder's fresh session, promoted once the initiator uses it).
import { ReplayFilter } from './replay.js';

export class Keypair {
  /** Next counter to send with; a JS number (2^53 is beyond REJECT_AFTER_MESSAGES in practice). */
  sendNonce = 0;
  readonly replay = new ReplayFilter();

  constructor(
    readonly sendKey: Buffer,
    readonly receiveKey: Buffer,
    readonly isInitiator: boolean,
    readonly created: number,
    readonly localIndex: number,
    readonly remoteIndex: number,
  ) {}

  /** Wipes the keys so a leaked object no longer decrypts anything. */
  zero(): void {
    this.sendKey.fill(0);
    this.receiveKey.fill(0);
  }
}

export interface Promotion {
  readonly promoted: boolean;
  readonly dropped: Keypair | null;
}
const NOT_PROMOTED: Promotion = Object.freeze({ promoted: false, dropped: null });

export class Keypairs {
  previous: Keypair | null = null;
  current: Keypair | null = null;
  next: Keypair | null = null;

  /** Installs a freshly derived keypair; returns the keypairs it displaced (to free their indices). */
  install(kp: Keypair): Keypair[] {
    const dropped: Keypair[] = [];
    if (kp.isInitiator) {
      // The initiator may use its new session at once.
      if (this.next) {
        this.previous && dropped.push(this.previous);
        this.previous = this.next;
        this.next = null;
        this.current && dropped.push(this.current);
      } else {
        this.previous && dropped.push(this.previous);
        this.previous = this.current;
      }
      this.current = kp;
    } else {
      // The responder waits for the initiator's first packet before sending with it.
      this.next && dropped.push(this.next);
      this.previous && dropped.push(this.previous);
      this.next = kp;
      this.previous = null;
    }
    return dropped;
  }

  /**
   * Called for each authenticated packet: the first packet received with `next` confirms the
   * session and promotes it. Returns whether it promoted, and the keypair that promotion displaced.
   */
  received(kp: Keypair): Promotion {
    if (kp !== this.next) return NOT_PROMOTED; // every packet but one per session: no allocation
    const dropped = this.previous;
    this.previous = this.current;
    this.current = kp;
    this.next = null;
    return { promoted: true, dropped };
  }

  all(): Keypair[] {
    return [this.previous, this.current, this.next].filter((k): k is Keypair => k !== null);
  }

  clear(): Keypair[] {
    const all = this.all();
    this.previous = this.current = this.next = null;
    return all;
  }
}
