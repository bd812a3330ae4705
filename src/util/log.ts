// Structured logs: pino to stderr, level from LOG_LEVEL (wireguard-go's variable), default info.
// Every component logs through Logger, pino's shape: the daemon hands each one a child of its
// pino logger scoped with { component } ('wg', 'p2p', 'uapi', 'sync', ...); tests hand noopLogger.
import { pino, type Logger as PinoLogger } from 'pino';

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

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): PinoLogger {
  const known = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  return pino({ name, level: known.includes(level) ? level : 'info', base: { pid: process.pid } }, pino.destination(2));
}
