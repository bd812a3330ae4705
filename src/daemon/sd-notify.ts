// sd_notify(3) for `meshd daemon` under systemd (Type=notify, packaging/systemd/meshd.service):
// READY=1 once the interface and the control socket are up, STOPPING=1 when shutdown begins. The
// datagram goes out through the native addon (src/wg/native/notify.cc), since Node has no unix
// datagram sockets. Nothing here throws into the daemon: outside systemd (no $NOTIFY_SOCKET) it
// does nothing; without the addon it warns once that the service manager will not hear from it.
import type { Logger } from '../util/log.js';
import { native } from '../wg/native.js';

/** What sends one datagram: 0 or -errno (the addon's notifySend). */
export type NotifySend = (socket: string, message: string) => number;

let warned = false;

function sender(logger: Logger): NotifySend | null {
  try {
    const send = (native() as unknown as { notifySend?: NotifySend }).notifySend;
    if (typeof send !== 'function') throw new Error('the native addon has no notifySend: rebuild it (npm run install)');
    return send;
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
