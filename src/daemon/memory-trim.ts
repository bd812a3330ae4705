// Now and then, the C heap's free pages go back to the kernel (malloc_trim, src/wg/native/memory.cc).
// After a burst (a run of joins, a sync storm) glibc keeps what libp2p's buffers, OpenSSL and
// LevelDB freed in the middle of its arenas, where nothing else releases it: the daemons that
// did the most work idled 5-10 MB above the rest in bench/mesh.sh. A trim with little to free
// takes about a millisecond; once a minute that is nothing next to an idle daemon's own cost.
import type { Logger } from '../util/log.js';
import { native } from '../wg/native.js';

export const MEMORY_TRIM_MS = 60_000;

/** What gives free heap pages back: true if any went (the addon's trimMemory). */
export type Trim = () => boolean;

/** The addon's trimMemory, or null (with a warning) when the addon lacks it: then nothing is trimmed. */
export function addonTrim(logger: Pick<Logger, 'warn'>): Trim | null {
  try {
    const trim = (native() as unknown as { trimMemory?: Trim }).trimMemory;
    if (typeof trim !== 'function') throw new Error('the native addon has no trimMemory: rebuild it (npm run install)');
    return trim;
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'cannot return free heap pages to the kernel');
    return null;
  }
}

/** Calls `trim` every `everyMs` (the timer keeps no process alive); returns what stops it. */
export function startMemoryTrim(trim: Trim, logger: Pick<Logger, 'debug' | 'error'>, everyMs = MEMORY_TRIM_MS, rss: () => number = () => process.memoryUsage.rss()): () => void {
  const timer = setInterval(() => {
    try {
      const before = rss();
      const t0 = performance.now();
      if (trim()) logger.debug({ freedMB: Math.round((before - rss()) / 1e5) / 10, ms: Math.round((performance.now() - t0) * 10) / 10 }, 'returned free heap pages to the kernel');
    } catch (err) {
      clearInterval(timer); // a trim that throws will throw again: stop, the daemon goes on
      logger.error({ err: (err as Error).message }, 'cannot return free heap pages to the kernel; no longer trying');
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
