// A signal that aborts after `ms` milliseconds, as AbortSignal.timeout(ms) does, but held by its
// own timer until it fires. On Node 20, AbortSignal.any([..., AbortSignal.timeout(ms)]) never
// aborts once a garbage collection has run in between: the composite holds its sources only
// weakly, and nothing else holds the timeout signal (test/unit/timeout.test.ts; Node 24 is fine).
// In the daemon, whose young generation is small, a collection comes within milliseconds: pushes,
// exchanges and dials went on past their deadlines (`meshd kick` past the CLI's 30 s).
//
// With `parents` it also aborts when one of them does (with its reason), in place of
// AbortSignal.any([parent, timeoutSignal(ms)]): on Node 20, a composite made by AbortSignal.any
// stays in a long-lived parent's set of dependants until that parent aborts, collected or not
// (nodejs/node#55351; Node 24 prunes them). The daemon made one per push, exchange and join
// request with its own lifetime's signal as the parent: a set that only grew. Here the listener on
// each parent goes as soon as the signal aborts, by its deadline at the latest. (A parent then
// holds one listener per operation in flight: no "possible leak" warning past ten of them.)
import { setMaxListeners } from 'node:events';

export function timeoutSignal(ms: number, ...parents: AbortSignal[]): AbortSignal {
  const controller = new AbortController();
  const follow = (e: Event): void => controller.abort((e.target as AbortSignal).reason);
  // The timer holds the controller until it fires; unref: like AbortSignal.timeout, it keeps no
  // process alive by itself.
  const timer = setTimeout(() => controller.abort(new DOMException(`The operation timed out after ${ms} ms`, 'TimeoutError')), ms);
  timer.unref();
  controller.signal.addEventListener('abort', () => {
    clearTimeout(timer);
    for (const p of parents) p.removeEventListener('abort', follow);
  }, { once: true });
  for (const p of parents) {
    if (p.aborted) {
      controller.abort(p.reason);
      break;
    }
    setMaxListeners(Infinity, p);
    p.addEventListener('abort', follow, { once: true });
  }
  return controller.signal;
}
