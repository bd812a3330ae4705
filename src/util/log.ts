// Structured logs: pino to stderr, level from LOG_LEVEL (wireguard-go's variable), default info.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  const known = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  return pino({ name, level: known.includes(level) ? level : 'info', base: { pid: process.pid } }, pino.destination(2));
}
