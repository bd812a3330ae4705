// The steps of a daemon's start, named as they begin. A start that takes long says in the log which
// step it is in (every `everyMs`), so a start that hangs (a port, a store, a peer that does not
// answer) is found from the log alone, not from a debugger.
import type { Logger } from '../util/log.js';

export class StartupSteps {
  #step = 'starting';
  readonly #t0 = Date.now();
  readonly #timer: NodeJS.Timeout;

  constructor(private readonly log: Pick<Logger, 'warn'>, everyMs = 5_000) {
    this.#timer = setInterval(() => this.log.warn({ step: this.#step, ms: Date.now() - this.#t0 }, 'the daemon is still starting'), everyMs);
    this.#timer.unref();
  }

  /** The step now begun. */
  at(step: string): void {
    this.#step = step;
  }

  /** Milliseconds since the start began. */
  done(): number {
    clearInterval(this.#timer);
    return Date.now() - this.#t0;
  }
}
