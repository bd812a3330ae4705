// Changes to this machine's routes, addresses, policy rules and links, as they happen: one
// long-running `ip monitor` process whose output we only count. Checks that depend on the routing
// table (leaks.ts: does each member's mesh address route into the mesh interface?) run when it
// changes instead of every few seconds, so an idle daemon spawns no process and walks no member
// list while nothing changes. Bursts (an interface coming up adds several routes at once) are
// coalesced into one call after `debounceMs`. If `ip monitor` exits (it should not), it is started
// again after `restartMs`; the caller keeps a slow periodic check as a backstop either way.
//
//   new RouteMonitor({ onChange, debounceMs?, restartMs?, logger?, command? })
//   monitor.start(); monitor.stop()
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../util/log.js';

export interface RouteMonitorOptions {
  onChange(): void;
  /** Changes within this long of the first are one call; default 250 ms. */
  debounceMs?: number;
  /** Wait before starting `ip monitor` again after it exited; default 5 s. */
  restartMs?: number;
  logger?: Pick<Logger, 'debug' | 'warn'>;
  /** The command (tests); default `ip monitor route address rule link`. */
  command?: readonly string[];
}

export class RouteMonitor {
  private child: ChildProcess | null = null;
  private timer: NodeJS.Timeout | null = null;
  private restart: NodeJS.Timeout | null = null;
  private running = false;

  constructor(private readonly opts: RouteMonitorOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.spawn();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    if (this.restart) clearTimeout(this.restart);
    this.timer = this.restart = null;
    const child = this.child;
    this.child = null;
    child?.kill();
  }

  private spawn(): void {
    const [cmd, ...args] = this.opts.command ?? ['ip', 'monitor', 'route', 'address', 'rule', 'link'];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child = child;
    child.stdout?.on('data', () => this.changed());
    child.on('error', (err) => this.opts.logger?.warn({ err: err.message }, 'cannot watch the routing table'));
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.child = null;
      if (!this.running) return;
      this.opts.logger?.debug({ code, signal }, 'ip monitor exited; starting it again');
      this.restart = setTimeout(() => {
        this.restart = null;
        if (this.running) this.spawn();
      }, this.opts.restartMs ?? 5_000);
      this.restart.unref();
    });
  }

  private changed(): void {
    if (this.timer || !this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.running) this.opts.onChange();
    }, this.opts.debounceMs ?? 250);
    this.timer.unref();
  }
}
