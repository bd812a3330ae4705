// Protocol constants of the WireGuard paper (section 6.1) and wireguard-go's device/constants.go.
// Times are in milliseconds. `Timings` is passed into the device so tests can shorten them
// (MESHD_TEST_TIMERS=1); production always uses PROTOCOL_TIMINGS.

export interface Timings {
  readonly rekeyAfterTime: number;
  readonly rejectAfterTime: number;
  readonly rekeyAttemptTime: number;
  readonly rekeyTimeout: number;
  readonly keepaliveTimeout: number;
  readonly cookieRefreshTime: number;
  readonly handshakeInitiationRate: number;
}

export const PROTOCOL_TIMINGS: Timings = Object.freeze({
  rekeyAfterTime: 120_000,
  rejectAfterTime: 180_000,
  rekeyAttemptTime: 90_000,
  rekeyTimeout: 5_000,
  keepaliveTimeout: 10_000,
  cookieRefreshTime: 120_000,
  handshakeInitiationRate: 20,
});

/** Shortened timers for tests that must see rekeys and expiry within seconds. */
export const TEST_TIMINGS: Timings = Object.freeze({
  rekeyAfterTime: 6_000,
  rejectAfterTime: 9_000,
  rekeyAttemptTime: 4_500,
  rekeyTimeout: 1_000,
  keepaliveTimeout: 1_000,
  cookieRefreshTime: 120_000,
  handshakeInitiationRate: 20,
});

export const REKEY_AFTER_MESSAGES = 2 ** 60;
/** 2^64 - 2^13 - 1 in the paper; counters travel as JS numbers, so we stop at 2^53 (never reached). */
export const REJECT_AFTER_MESSAGES = Number.MAX_SAFE_INTEGER;
/** Jitter added to handshake retransmissions, as in wireguard-go. */
export const MAX_TIMER_JITTER = 333;
/** Packets held per peer while a handshake is under way (wireguard-go: QueueStagedSize). */
export const MAX_STAGED_PACKETS = 128;
export const PADDING_MULTIPLE = 16;
export const DEFAULT_MTU = 1420;
