// What the control server holds at most, so that no client, however broken or hostile, can take
// its memory or file descriptors. Like nginx's worker_connections, connections are capped, and at
// the cap the one idle longest makes room for the newcomer (a user's `meshd status` gets through
// thousands of idle connections); like sshd's LoginGraceTime, a connection that has nothing in
// flight and sends nothing for a while is closed. Unfinished lines are capped per connection
// (MAX_REQUEST_LINE) and in total, and a client that does not read its replies is not read from.
import { readFileSync } from 'node:fs';

export interface ControlLimits {
  /** Connections served at once. At the cap a newcomer closes the longest-idle one, or is refused if none is idle. */
  maxConnections: number;
  /** A connection with no request in flight that sends nothing for this long is closed. */
  idleMs: number;
  /** Bytes of unfinished request lines held across all connections; above, the largest holder is closed. */
  maxBufferedBytes: number;
}

/** Requests one connection may have in flight before we stop reading from it. */
export const MAX_IN_FLIGHT = 64;
/** Reply bytes a client may leave unread before we stop reading its requests. */
export const MAX_UNSENT_BYTES = 1024 * 1024;
/** How long a connection we close has to read its last reply before it is cut. */
export const HANG_UP_GRACE_MS = 1000;

/**
 * 1,024 connections, but no more than a quarter of this process's open-file limit. As many again
 * may be closing (ended, in their HANG_UP_GRACE_MS), so the control socket holds at most half the
 * limit: the daemon's peers, store and tunnel need the rest. Past the limit the kernel's accept
 * fails (EMFILE) and libuv closes the newcomer unanswered, which these bounds exist to prevent.
 */
export function defaultLimits(): ControlLimits {
  const files = openFileLimit();
  return {
    maxConnections: files === null ? 1024 : Math.max(8, Math.min(1024, Math.floor(files / 4))),
    idleMs: 60_000,
    maxBufferedBytes: 64 * 1024 * 1024,
  };
}

/** The soft RLIMIT_NOFILE (Node has no getrlimit; Linux shows it in /proc); null if unknown or unlimited. */
export function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
