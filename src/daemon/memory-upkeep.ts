// Now and then, an idle daemon hands back the memory a burst left behind. After a run of joins (or
// a sync storm) two heaps keep what they no longer use, and nothing else releases it while the
// daemon idles:
// - V8's heap: without allocation no major collection runs, so the burst's garbage and the pages
//   the heap grew stay (and bytecode that has not run for a while is flushed only at one). A full
//   collection that compacts (exposedGc below; `gc` is there because the meshd executable runs
//   with --expose-gc, on its shebang and in the systemd unit) frees them and hands the emptied
//   pages back.
//   It is a pause of 20-60 ms, so it runs only when the event loop was nearly idle since the last
//   tick (under 2% busy): a busy tunnel is not paused for it, and V8 collects there anyway. And
//   only when the heap (as committed) grew by 4 MB since the last one: an idle daemon's heap grows
//   slowly, so most minutes cost nothing.
// - glibc's arenas: what libp2p's buffers, OpenSSL and LevelDB freed in the middle of them.
//   `malloc_trim` (the addon, src/wg/native/memory.cc) gives those pages back; about a millisecond.
// A founded daemon: 97 -> 86 MB on Node 24, 89 -> 83 MB on Node 20 (bench/mesh.sh, README).
import { performance } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import type { Logger } from '../util/log.js';
import { nativeFunction } from '../wg/native.js';

export const MEMORY_UPKEEP_MS = 60_000;
/** The event loop's busy share since the last tick under which a full collection may run. */
export const QUIET_LOAD = 0.02;
/** How far V8's heap must have grown since the last full collection for another to pay. */
export const COLLECT_GROWTH_BYTES = 4 << 20;

/** What gives free C-heap pages back: true if any went (the addon's trimMemory). */
export type Trim = () => boolean;
/** A full garbage collection of V8's heap. */
export type Collect = () => void;

export interface MemoryUpkeep {
  /** The addon's malloc_trim, or null. */
  trim: Trim | null;
  /** V8's full collection, or null (node without --expose-gc). */
  collect: Collect | null;
  /** The event loop's busy share (0..1) since the last call: performance.eventLoopUtilization by default. */
  load?: () => number;
  /** The process's RSS in bytes (for the log line): process.memoryUsage.rss by default. */
  rss?: () => number;
  /** V8's heap as committed (what RSS sees), in bytes: v8.getHeapStatistics().total_heap_size by default. */
  heapSize?: () => number;
}

/** The addon's trimMemory, or null (with a warning) when the addon lacks it: then nothing is trimmed. */
export function addonTrim(logger: Pick<Logger, 'warn'>): Trim | null {
  try {
    return nativeFunction('trimMemory');
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'cannot return free heap pages to the kernel');
    return null;
  }
}

type Gc = (options?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * A full collection that also compacts, with V8's `gc` when node runs with --expose-gc (the meshd
 * executable does), else null. A plain `gc()` frees objects but leaves the pages they were on
 * committed (a founded daemon: 28 MB of heap for 19.5 MB of objects); compacting moves the
 * survivors together and hands the emptied pages back.
 * - V8 12 and later (Node 24 is tested; Node 22 has V8 12.4): the "last resort" flavour, V8's
 *   collection under memory pressure, which compacts and also releases the pages V8 pools for
 *   reuse. A compaction without it (the flag below) leaves the emptied pages in that pool, still
 *   resident: 15 MB more on Node 24, not less.
 * - V8 11 (Node 20) has no flavour (an options object runs a minor collection there): the flag
 *   that compacts at every full collection, on for this one only. Node 20 releases those pages.
 */
export function exposedGc(): Collect | null {
  const gc = (globalThis as { gc?: unknown }).gc as Gc | undefined;
  if (typeof gc !== 'function') return null;
  if (Number(process.versions.v8.split('.')[0]) >= 12) return () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return () => {
    setFlagsFromString('--compact-on-every-full-gc');
    try {
      gc();
    } finally {
      setFlagsFromString('--no-compact-on-every-full-gc');
    }
  };
}

/** The event loop's busy share since the previous call (the first call: since the process began). */
export function loopLoad(): () => number {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const share = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return share;
  };
}

/**
 * Every `everyMs` (the timer keeps no process alive): a full collection if the loop was quiet and
 * the committed heap grew by COLLECT_GROWTH_BYTES since the last one (an idle heap grows slowly:
 * most ticks skip it), then a trim. Returns what stops it.
 */
export function startMemoryUpkeep(upkeep: MemoryUpkeep, logger: Pick<Logger, 'debug' | 'error'>, everyMs = MEMORY_UPKEEP_MS): () => void {
  const { trim, collect } = upkeep;
  const load = upkeep.load ?? loopLoad();
  const rss = upkeep.rss ?? (() => process.memoryUsage.rss());
  const heapSize = upkeep.heapSize ?? (() => getHeapStatistics().total_heap_size);
  let sizeAfterCollect = 0;
  const timer = setInterval(() => {
    try {
      const busy = load();
      const before = rss();
      const t0 = performance.now();
      const collected = collect !== null && busy < QUIET_LOAD && heapSize() - sizeAfterCollect >= COLLECT_GROWTH_BYTES;
      if (collected) {
        collect();
        sizeAfterCollect = heapSize();
      }
      const trimmed = trim !== null && trim();
      if (collected || trimmed) {
        logger.debug({ freedMB: Math.round((before - rss()) / 1e5) / 10, ms: Math.round((performance.now() - t0) * 10) / 10, collected, trimmed }, 'returned free memory to the kernel');
      }
    } catch (err) {
      clearInterval(timer); // what throws once will throw again: stop, the daemon goes on
      logger.error({ err: (err as Error).message }, 'cannot return free memory to the kernel; no longer trying');
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
