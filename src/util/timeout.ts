// A signal that aborts after `ms` milliseconds, as AbortSignal.timeout(ms) does, but held by its
// own timer until it fires. On Node 20, AbortSignal.any([..., AbortSignal.timeout(ms)]) never
// aborts once a garbage collection has run in between: the composite holds its sources only
// weakly, and nothing else holds the timeout signal (test/unit/timeout.test.ts; Node 24 is fine).
// In the daemon, whose young generation is small, a collection comes within milliseconds: pushes,
// exchanges and dials went on past their deadlines (`meshd kick` past the CLI's 30 s).
export function timeoutSignal(ms: number): AbortSignal {
  const controller = new AbortController();
  // The timer holds the controller until it fires; unref: like AbortSignal.timeout, it keeps no
  // process alive by itself.
  setTimeout(() => controller.abort(new DOMException(`The operation timed out after ${ms} ms`, 'TimeoutError')), ms).unref();
  return controller.signal;
}
