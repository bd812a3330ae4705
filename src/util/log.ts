// Structured logs: pino to stderr, level from LOG_LEVEL (wireguard-go's variable), default info.
//
// Every line carries exactly one `name` key: the logger's (meshd, store, ...). pino writes a
// `name` of a log call's object as a second key of the same line (JSON parsers then keep either),
// so such a key is renamed to `member` (in meshd a named thing is a member, device or client).
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** A log call's object without a `name` of its own (the logger's name stays the only one). */
export function withoutName(obj: Record<string, unknown>): Record<string, unknown> {
  if (!Object.hasOwn(obj, 'name')) return obj;
  const { name, ...rest } = obj;
  return { ...rest, member: name };
}

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info', destination: DestinationStream = pino.destination(2)): Logger {
  return pino({
    name,
    level: LEVELS.includes(level) ? level : 'info',
    base: { pid: process.pid },
    formatters: { log: withoutName },
  }, destination);
}
