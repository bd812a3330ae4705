// bench/memory.ts: what each part of the stack costs in memory, measured in one run.
//
//   node dist/bench/memory.js            (no root needed; everything listens on 127.0.0.1 only)
//
// Each stage runs in a fresh node process (the same flags as dist/cmd/meshd.js), settles, is
// garbage-collected twice and reports VmRSS and the V8 heap. A stage adds one thing to the one
// before, so the difference between two rows is what that thing costs:
//   node             an empty process: the reference every ratio is against
//   modules          libp2p and its modules imported, nothing created
//   libp2p base      a started node: TCP, pnet, noise, yamux, connection monitor
//   + identify       identify on top
//   + ping           ping on top (the connection monitor's pings are answered by it)
//   + mdns           LAN discovery on top (it never queries in this bench: no multicast leaves)
//   meshd node       createMeshNode as the daemon makes it (bootstrap off, mDNS on)
//   daemon           a whole Daemon that founded a network: store, engine (an in-memory TUN and a
//                    fake kernel, test/unit/helpers), UAPI, control socket and the meshd node
//   conn             a meshd node that PEERS (default 4) nodes of another process connect to: the
//                    growth of its RSS, per connection
//
// A second table imports the libraries one after another in one process (each row: what that
// import added, on top of those before it), which says which library the `modules` row is.
//
// A third loads the code the meshd executable runs as a daemon (every cmd/ module, the daemon and
// its metrics) two ways: as tsc's ES modules, and bundled into one file as `npm run build` bundles
// dist/cmd/meshd.js (scripts/bundle.mjs). The difference is what the bundle saves every daemon.
//
// Figures move by a few MB between runs (V8's heap sizing, allocator arenas): compare rows of
// one run.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/util/package-root.js';

const STAGES = ['node', 'modules', 'libp2p base', '+ identify', '+ ping', '+ mdns', 'meshd node', 'daemon', 'conn'] as const;
type Stage = (typeof STAGES)[number];
const PEERS = Number(process.env.PEERS ?? 4);
const SETTLE_MS = Number(process.env.SETTLE_MS ?? 3000);

interface Sample { rssMb: number; heapMb: number; perConnMb?: number }

function rssMb(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 2 ** 20;
}

async function settle(): Promise<Sample> {
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((r) => setTimeout(r, 200));
  gc?.();
  return { rssMb: rssMb(), heapMb: process.memoryUsage().heapUsed / 2 ** 20 };
}

/** One stage, in this (child) process. */
async function child(stage: Stage): Promise<Sample> {
  if (stage === 'node') return settle();
  const { generateKeyPair } = await import('@libp2p/crypto/keys');
  const p2p = await import('../src/discovery/p2p.js');
  if (stage === 'modules') {
    await Promise.all([import('libp2p'), import('@libp2p/tcp'), import('@chainsafe/libp2p-noise'), import('@chainsafe/libp2p-yamux'),
      import('@libp2p/identify'), import('@libp2p/ping'), import('@libp2p/mdns'), import('@libp2p/pnet'), import('@libp2p/bootstrap')]);
    return settle();
  }
  const psk = 'ab'.repeat(32);
  const listen = ['/ip4/127.0.0.1/tcp/0'];
  if (stage === 'meshd node' || stage === 'conn') {
    const make = async () => {
      const node = await p2p.createMeshNode({ privateKey: await generateKeyPair('Ed25519'), psk, listen, gate: { allow: () => true }, mdns: stage === 'meshd node' });
      await node.start();
      return node;
    };
    const node = await make();
    if (stage === 'meshd node') return settle();
    // The dialling nodes live in another process: only this side's share is measured.
    const before = await settle();
    const dialers = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--dial', node.getMultiaddrs()[0].toString(), String(PEERS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      dialers.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('connected')) resolve(); });
      dialers.once('exit', (code) => reject(new Error(`dialers exited ${code}`)));
    });
    const after = await settle();
    dialers.kill();
    return { ...after, perConnMb: (after.rssMb - before.rssMb) / PEERS };
  }
  if (stage === 'daemon') {
    const { Daemon } = await import('../src/daemon/daemon.js');
    const { FakeKernel } = await import('../test/unit/helpers/fake-kernel.js');
    const { MemoryTuns } = await import('../test/unit/helpers/memory-tun.js');
    const { noopLogger } = await import('../src/util/log.js');
    const dir = await mkdtemp(join(tmpdir(), 'meshd-bench-memory-'));
    try {
      const daemon = await Daemon.start({
        stateDir: join(dir, 'state'), ifname: 'mbm0', listenPort: 0, p2pPort: 0, name: 'bench', datapath: 'native',
        announce: { hosts: ['127.0.0.1'], udp: [], tcp: [] }, logger: noopLogger,
      }, {
        kernel: new FakeKernel(), openTun: new MemoryTuns().open, uapiDir: join(dir, 'uapi'), prober: () => null,
        libp2p: (o) => p2p.createMeshNode({ ...o, listen, mdns: false }),
      });
      await daemon.init({ network: 'bench', cidr: '10.0.0.0/24' });
      const s = await settle();
      await daemon.stop();
      return s;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const { createLibp2p } = await import('libp2p');
  const { tcp } = await import('@libp2p/tcp');
  const { noise } = await import('@chainsafe/libp2p-noise');
  const { yamux } = await import('@chainsafe/libp2p-yamux');
  const { preSharedKey } = await import('@libp2p/pnet');
  const services: Record<string, unknown> = {};
  const upTo = STAGES.indexOf(stage);
  if (upTo >= STAGES.indexOf('+ identify')) services.identify = (await import('@libp2p/identify')).identify();
  if (upTo >= STAGES.indexOf('+ ping')) services.ping = (await import('@libp2p/ping')).ping();
  if (upTo >= STAGES.indexOf('+ mdns')) services.lan = (await import('../src/discovery/lan-discovery.js')).lanDiscovery({ serviceTag: p2p.mdnsServiceTag(psk), wanted: () => false });
  const node = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen },
    transports: [tcp()],
    connectionProtector: preSharedKey({ psk: p2p.swarmKey(psk) }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ enableKeepAlive: false })],
    services: services as never,
  });
  await node.start();
  return settle();
}

const IMPORTS = ['@multiformats/multiaddr', '@libp2p/crypto/keys', 'libp2p', '@libp2p/tcp', '@chainsafe/libp2p-noise', '@chainsafe/libp2p-yamux',
  '@libp2p/pnet', '@libp2p/identify', '@libp2p/ping', '@libp2p/mdns', '@libp2p/bootstrap', 'level', 'pino', 'zod', 'commander'];

/** The libraries imported one after another: what each added. */
async function imports(): Promise<[string, number][]> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  let before = rssMb();
  const out: [string, number][] = [];
  for (const m of IMPORTS) {
    await import(m);
    await new Promise((r) => setTimeout(r, 300));
    gc?.();
    const now = rssMb();
    out.push([m, now - before]);
    before = now;
  }
  return out;
}

type CodeStage = 'ES modules' | 'bundled';

/** The modules the meshd executable loads as a daemon (its cmd/ modules import the rest). */
function daemonModules(): string[] {
  const dist = join(packageRoot(), 'dist');
  const cmd = readdirSync(join(dist, 'cmd')).filter((f) => f.endsWith('.js') && f !== 'meshd.js' && f !== 'meshd-engine.js').map((f) => join(dist, 'cmd', f));
  return [...cmd, ...['daemon/daemon.js', 'daemon/metrics.js', 'discovery/addresses.js'].map((f) => join(dist, 'src', f))];
}

/** The daemon's code loaded one way (in this child process), then settled. */
async function code(how: CodeStage): Promise<Sample> {
  if (how === 'ES modules') {
    for (const m of daemonModules()) await import(m);
    return settle();
  }
  // The bundle goes next to dist/ so that what stays outside it (classic-level) resolves.
  const { build } = await import('esbuild');
  const { OPTIONS } = (await import(join(packageRoot(), 'scripts', 'bundle.mjs'))) as { OPTIONS: object };
  const out = join(packageRoot(), 'dist', 'bench', `memory-bundle-${process.pid}.mjs`);
  try {
    await build({ ...OPTIONS, stdin: { contents: daemonModules().map((m, i) => `export * as m${i} from ${JSON.stringify(m)};`).join('\n'), resolveDir: packageRoot(), loader: 'js' }, outfile: out });
    await import(out);
  } finally {
    await rm(out, { force: true });
  }
  return settle();
}

/** The dialling side of `conn`: N meshd nodes, each connected to the target. */
async function dial(target: string, n: number): Promise<void> {
  const { generateKeyPair } = await import('@libp2p/crypto/keys');
  const { multiaddr } = await import('@multiformats/multiaddr');
  const p2p = await import('../src/discovery/p2p.js');
  for (let i = 0; i < n; i++) {
    const node = await p2p.createMeshNode({ privateKey: await generateKeyPair('Ed25519'), psk: 'ab'.repeat(32), listen: ['/ip4/127.0.0.1/tcp/0'], gate: { allow: () => true } });
    await node.start();
    await node.dial(multiaddr(target));
  }
  process.stdout.write('connected\n');
  await new Promise(() => {});
}

function run(stage: Stage | 'imports' | CodeStage): Promise<Sample> {
  const args = stage === 'imports' ? ['--imports'] : stage === 'ES modules' || stage === 'bundled' ? ['--code', stage] : ['--stage', stage];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--max-semi-space-size=1', '--expose-gc', fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{') || l.startsWith('['));
      if (code === 0 && line) resolve(JSON.parse(line) as Sample); // (imports: its rows)
      else reject(new Error(`stage ${stage} exited ${code}: ${out}`));
    });
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--stage') {
    process.stdout.write(`${JSON.stringify(await child(argv[1] as Stage))}\n`);
    process.exit(0);
  }
  if (argv[0] === '--dial') return dial(argv[1], Number(argv[2]));
  if (argv[0] === '--code') {
    process.stdout.write(`${JSON.stringify(await code(argv[1] as CodeStage))}\n`);
    process.exit(0);
  }
  if (argv[0] === '--imports') {
    process.stdout.write(`${JSON.stringify(await imports())}\n`);
    process.exit(0);
  }
  const rows: [Stage, Sample][] = [];
  for (const stage of STAGES) rows.push([stage, await run(stage)]);
  const ref = rows[0][1];
  let prev = ref;
  console.log(`| stage | RSS MB | + over the row before | heap MB | RSS / empty node |`);
  console.log(`|---|---|---|---|---|`);
  for (const [stage, s] of rows) {
    const delta = stage === 'conn' ? `${s.perConnMb!.toFixed(2)} per connection (${PEERS})` : stage === 'node' ? '' : (s.rssMb - prev.rssMb).toFixed(1);
    console.log(`| ${stage} | ${s.rssMb.toFixed(1)} | ${delta} | ${s.heapMb.toFixed(1)} | ${(s.rssMb / ref.rssMb).toFixed(2)} |`);
    if (stage !== 'conn' && stage !== 'daemon') prev = s;
    if (stage === 'meshd node') prev = s;
  }
  const lib = (await run('imports')) as unknown as [string, number][];
  console.log(`\n| library (imported in this order) | RSS MB it added |`);
  console.log(`|---|---|`);
  for (const [m, mb] of lib) console.log(`| ${m} | ${mb.toFixed(1)} |`);
  const modules = await run('ES modules');
  const bundled = await run('bundled');
  console.log(`\n| the daemon's code | RSS MB | heap MB | RSS / ES modules |`);
  console.log(`|---|---|---|---|`);
  for (const [how, s] of [['ES modules (tsc)', modules], ['bundled (npm run build)', bundled]] as const) {
    console.log(`| ${how} | ${s.rssMb.toFixed(1)} | ${s.heapMb.toFixed(1)} | ${(s.rssMb / modules.rssMb).toFixed(2)} |`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
