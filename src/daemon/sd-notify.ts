// sd_notify(3) for `meshd daemon` under systemd (Type=notify, packaging/systemd/meshd.service):
// READY=1 once the interface and the control socket are up, STOPPING=1 when shutdown begins. The
// datagram goes out through the native addon (src/wg/native/notify.cc), since Node has no unix
// datagram sockets. Nothing here throws into the daemon: outside systemd (no $NOTIFY_SOCKET) it
// does nothing; without the addon it warns once that the service manager will not hear from it.
import type { Logger } from '../util/log.js';
import { nativeFunction } from '../wg/native.js';

/** What sends one datagram: 0 or -errno (the addon's notifySend). */
export type NotifySend = (socket: string, message: string) => number;

let warned = false;

function sender(logger: Logger): NotifySend | null {
  try {
    return nativeFunction('notifySend');
  } catch (err) {
    if (!warned) {
      warned = true;
      logger.warn({ err: (err as Error).message }, 'cannot notify the service manager ($NOTIFY_SOCKET is set): it will not hear READY=1 (Type=notify units time out)');
    }
    return null;
  }
}

/**
 * Sends `state` (newline-separated assignments: "READY=1", "STOPPING=1", "STATUS=...") to the
 * socket $NOTIFY_SOCKET names. True when it was sent; false when there is nowhere or no way to send.
 */
export function sdNotify(state: string, logger: Logger, env: NodeJS.ProcessEnv = process.env, send?: NotifySend): boolean {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return false;
  const fn = send ?? sender(logger);
  if (!fn) return false;
  let r: number;
  try {
    r = fn(socket, state);
  } catch (err) {
    r = -1;
    logger.debug({ err: (err as Error).message }, 'sd_notify failed');
  }
  if (r < 0) {
    logger.warn({ socket, state, errno: -r }, 'cannot notify the service manager');
    return false;
  }
  logger.debug({ socket, state }, 'notified the service manager');
  return true;
}

/**
 * The service manager's watchdog (WatchdogSec= in the unit): systemd passes WATCHDOG_USEC (and
 * WATCHDOG_PID), and the daemon sends WATCHDOG=1 every half of that from its main thread's timers.
 * A main thread that hangs (a deadlock, an endless loop) stops sending, and systemd kills the
 * daemon and starts it again (Restart=on-failure). Returns what stops the pings; does nothing when
 * no watchdog is asked for, or it is asked of another process.
 */
export function sdWatchdog(logger: Logger, env: NodeJS.ProcessEnv = process.env, send?: NotifySend, pid = process.pid): () => void {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.NOTIFY_SOCKET || !Number.isSafeInteger(usec) || usec <= 0) return () => {};
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return () => {};
  const everyMs = Math.max(1, Math.floor(usec / 2_000));
  const timer = setInterval(() => sdNotify('WATCHDOG=1', logger, env, send), everyMs);
  timer.unref();
  logger.debug({ everyMs }, 'sending WATCHDOG=1 to the service manager');
  return () => clearInterval(timer);
}
