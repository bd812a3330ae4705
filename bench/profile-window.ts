// bench/profile-window.ts: what a profiled daemon did during bench/mesh.sh's idle window.
//
//   node dist/bench/profile-window.js DIR N      (DIR as given to PROF=, N the mesh size)
//
// mesh.sh with PROF=DIR writes DIR/window-N.txt (the idle window on CLOCK_MONOTONIC, the clock of
// V8's profile) and the daemon its .cpuprofile when it exits. This reads the samples inside the
// window only (joins and shutdown left out) and prints the functions by self and by inclusive
// time, in milliseconds (one sample is about one millisecond of the main thread).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

const [dir, size] = process.argv.slice(2);
if (!dir || !size) {
  console.error('usage: node dist/bench/profile-window.js DIR N');
  process.exit(2);
}
const window = Object.fromEntries(readFileSync(join(dir, `window-${size}.txt`), 'utf8').trim().split('\n').map((l) => l.split(' ')).map(([k, v]) => [k, Number(v) * 1e6]));
// The newest profile whose span covers the window.
const profiles = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
const profile = profiles.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Profile).find((p) => p.startTime <= window.start && p.endTime >= window.end);
if (!profile) {
  console.error(`no profile in ${dir} covers the idle window of the ${size}-member run`);
  process.exit(1);
}

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/.*node_modules\//, '').replace(/.*\/dist\//, '')}:${n.callFrame.lineNumber + 1}`;
const self = new Map<string, number>();
const inclusive = new Map<string, number>();
let busy = 0;
let t = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  t += profile.timeDeltas[i];
  if (t < window.start || t > window.end) continue;
  const leaf = byId.get(profile.samples[i])!;
  if (leaf.callFrame.functionName === '(idle)') continue;
  busy += 1;
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + 1);
  const seen = new Set<string>();
  for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
    const k = label(byId.get(id)!);
    if (!seen.has(k)) inclusive.set(k, (inclusive.get(k) ?? 0) + 1);
    seen.add(k);
  }
}
const seconds = (window.end - window.start) / 1e6;
console.log(`${busy} busy samples in ${seconds.toFixed(0)} s: ${(busy / seconds / 10).toFixed(3)}% of a core on the main thread, JavaScript and V8`);
const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k);
console.log('self:');
for (const [k, v] of top(self, 20)) console.log(`${String(v).padStart(6)}  ${k}`);
console.log('inclusive:');
for (const [k, v] of top(inclusive, 30)) console.log(`${String(v).padStart(6)}  ${k}`);
