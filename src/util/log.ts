// Structured logs: pino to stderr, level from LOG_LEVEL (wireguard-go's variable), default info.
//
// Every component logs through Logger, pino's shape: the daemon hands each one a child of its
// pino logger scoped with { component } ('wg', 'p2p', 'uapi', 'sync', ...); tests hand noopLogger.
//
// Every line carries exactly one `name` key: the logger's (meshd, store, ...). pino writes a
// `name` of a log call's object as a second key of the same line (JSON parsers then keep either),
// so such a key is renamed to `member` (in meshd a named thing is a member, device or client).
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

/** What a component logs through: pino's methods (fields first, then the message) and child(). */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  /** A logger adding `bindings` to every line, as pino's child() does. */
  child(bindings: Record<string, unknown>): Logger;
}

/** Logs nothing (tests, and components given no logger). */
export const noopLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => noopLogger };

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** A log call's object without a `name` of its own (the logger's name stays the only one). */
export function withoutName(obj: Record<string, unknown>): Record<string, unknown> {
  if (!Object.hasOwn(obj, 'name')) return obj;
  const { name, ...rest } = obj;
  return { ...rest, member: name };
}

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info', destination: DestinationStream = pino.destination(2)): PinoLogger {
  return pino({
    name,
    level: LEVELS.includes(level) ? level : 'info',
    base: { pid: process.pid },
    formatters: { log: withoutName },
  }, destination);
}
