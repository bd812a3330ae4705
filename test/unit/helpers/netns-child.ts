// Runs a child script inside a network namespace made for it, and returns what the script
// reported: the last line it printed, as JSON. The namespace is deleted and the child killed (by
// PID) when the test ends, also after a failure; a child that hangs is killed after timeoutMs.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

/** Why a namespace test cannot run here (a test's `skip`), or false: root, iproute2, and a TUN if asked. */
export function cannotRunInNamespace(opts: { tun?: boolean } = {}): string | false {
  if (process.getuid?.() !== 0) return 'needs root';
  if (opts.tun && !existsSync('/dev/net/tun')) return 'no /dev/net/tun';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2';
  }
  return false;
}

export async function runInNamespace(
  t: TestContext, prefix: string, script: string, opts: { timeoutMs: number; env?: (ns: string) => NodeJS.ProcessEnv },
): Promise<{ report: Record<string, any>; code: number | null }> {
  const ns = `${prefix}-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  let childPid: number | undefined;
  t.after(() => {
    if (childPid !== undefined) {
      try {
        process.kill(childPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    execFileSync('ip', ['netns', 'del', ns]);
  });

  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env?.(ns) },
  });
  childPid = child.pid;
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  childPid = undefined;

  // killed by the timer = the child hung (e.g. a poller kept its event loop alive after close)
  assert.equal(signal, null, `child killed (hung?); stderr: ${err}`);
  const report = JSON.parse(out.trim().split('\n').pop() || '{}');
  assert.equal(report.error, undefined, `child failed: ${report.error} ${err}`);
  return { report, code };
}
