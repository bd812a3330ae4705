// The per-peer timers of the WireGuard paper (section 6) as wireguard-go's timers.go names them.
// Sans-I/O: a timer is a deadline in milliseconds (Infinity = disarmed); events arm and disarm
// them, and expired(now) hands the device a bitmask of what fired. The device reacts; nothing here
// sends a packet or reads a clock.
import { MAX_TIMER_JITTER, type Timings } from './constants.js';

export const RETRANSMIT_HANDSHAKE = 1;
export const SEND_KEEPALIVE = 2;
export const NEW_HANDSHAKE = 4;
export const ZERO_KEY_MATERIAL = 8;
export const PERSISTENT_KEEPALIVE = 16;

const OFF = Infinity;

export class Timers {
  retransmitHandshake = OFF;
  sendKeepalive = OFF;
  newHandshake = OFF;
  zeroKeyMaterial = OFF;
  persistentKeepalive = OFF;
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;
  /** Persistent keepalive interval in milliseconds; 0 = off. */
  persistentKeepaliveInterval = 0;

  constructor(
    private readonly timings: Timings,
    private readonly jitter: () => number = () => Math.floor(Math.random() * MAX_TIMER_JITTER),
  ) {}

  /** Handshake retries before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT. */
  get maxAttempts(): number {
    return Math.floor(this.timings.rekeyAttemptTime / this.timings.rekeyTimeout);
  }

  /** We sent a data packet: if no reply comes, start a new handshake. */
  dataSent(now: number): void {
    if (this.newHandshake === OFF) {
      this.newHandshake = now + this.timings.keepaliveTimeout + this.timings.rekeyTimeout + this.jitter();
    }
  }

  /** We received a data packet: answer with a keepalive if we have nothing to send. */
  dataReceived(now: number): void {
    if (this.sendKeepalive === OFF) this.sendKeepalive = now + this.timings.keepaliveTimeout;
    else this.needAnotherKeepalive = true;
  }

  /** Any authenticated packet (data, keepalive, handshake) was sent: no keepalive needed. */
  anyAuthenticatedPacketSent(): void {
    this.sendKeepalive = OFF;
  }

  /** Any authenticated packet was received: the peer is alive, no new handshake needed. */
  anyAuthenticatedPacketReceived(): void {
    this.newHandshake = OFF;
  }

  /** Any authenticated packet went either way: push the persistent keepalive back. */
  anyAuthenticatedPacketTraversal(now: number): void {
    if (this.persistentKeepaliveInterval > 0) this.persistentKeepalive = now + this.persistentKeepaliveInterval;
  }

  handshakeInitiated(now: number): void {
    this.retransmitHandshake = now + this.timings.rekeyTimeout + this.jitter();
  }

  handshakeComplete(): void {
    this.retransmitHandshake = OFF;
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
  }

  /** New keys exist: wipe them (and everything older) if no new session replaces them in time. */
  sessionDerived(now: number): void {
    this.zeroKeyMaterial = now + this.timings.rejectAfterTime * 3;
  }

  /** Disarms and returns the timers that fired by `now`. */
  expired(now: number): number {
    let fired = 0;
    if (this.retransmitHandshake <= now) { this.retransmitHandshake = OFF; fired |= RETRANSMIT_HANDSHAKE; }
    if (this.sendKeepalive <= now) { this.sendKeepalive = OFF; fired |= SEND_KEEPALIVE; }
    if (this.newHandshake <= now) { this.newHandshake = OFF; fired |= NEW_HANDSHAKE; }
    if (this.zeroKeyMaterial <= now) { this.zeroKeyMaterial = OFF; fired |= ZERO_KEY_MATERIAL; }
    if (this.persistentKeepalive <= now) { this.persistentKeepalive = OFF; fired |= PERSISTENT_KEEPALIVE; }
    return fired;
  }

  stop(): void {
    this.retransmitHandshake = this.sendKeepalive = this.newHandshake = OFF;
    this.zeroKeyMaterial = this.persistentKeepalive = OFF;
  }

  /** The earliest armed deadline (Infinity: none). */
  earliest(): number {
    return Math.min(this.retransmitHandshake, this.sendKeepalive, this.newHandshake, this.zeroKeyMaterial, this.persistentKeepalive);
  }

  isArmed(deadline: number): boolean {
    return deadline !== OFF;
  }
}
