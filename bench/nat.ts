// bench/nat.ts (run by bench/nat.sh): the mesh through NAT routers, measured in one run.
//   join -> first ping through NAT      a member behind a port-preserving NAT joins a public founder
//   both online -> direct               the second member behind NAT joins: until both members
//                                       behind NAT have a direct path to each other
//   TCP and RTT, direct vs relayed      iperf3 and pings between the two, first direct, then with
//                                       the direct path blocked (so through the founder as a UDP
//                                       relay), then with all UDP blocked at bravo's router (so
//                                       over libp2p, TCP, through the founder); the relayed
//                                       figures as ratios of the direct ones
// Targets (issue 7): first ping under 3 s, direct under 5 s, UDP relay at least half of direct.
// Everything lives in namespaces named md<4 hex>..., removed on exit.
import { Internet } from '../test/netns/mesh.js';
import { ping, waitFor } from '../test/netns/harness.js';

const DURATION = Number(process.env.DURATION ?? 5);
const PINGS = Number(process.env.PINGS ?? 200);

async function iperf(net: Internet, clientNs: string, serverNs: string, ip: string): Promise<number> {
  const server = net.t.spawn(serverNs, 'iperf3', ['-s', '-1', '-B', ip]);
  await new Promise((r) => setTimeout(r, 500));
  const { stdout } = await net.t.exec(clientNs, 'iperf3', ['-c', ip, '-t', String(DURATION), '-J'], { timeout: (DURATION + 20) * 1000 });
  await server.kill();
  return JSON.parse(stdout).end.sum_received.bits_per_second / 1e6;
}

async function rtt(net: Internet, ns: string, ip: string): Promise<{ mean: number; loss: number }> {
  const r = await ping(net.t, ns, ip, { count: PINGS, interval: 0.02, wait: 2 });
  return { mean: r.avgMs, loss: 1 - r.received / r.transmitted };
}

async function main(): Promise<void> {
  const net = new Internet();
  const cleanup = () => net.cleanup();
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    await net.init();
    const a = await net.addServer('alpha');
    const b = await net.addBehindNat('bravo', { nat: 'preserve', firewall: true });
    const c = await net.addBehindNat('charlie', { nat: 'preserve', firewall: true });
    await Promise.all(net.nodes.map((n) => net.start(n)));
    await net.cli(a, ['init']);
    const t0 = Date.now();
    await net.cli(b, ['join', await net.invite(a)]);
    await waitFor(async () => (await ping(net.t, b.ns, '10.0.0.1', { count: 1, wait: 0.2 })).received === 1, 30_000, 'first ping');
    const firstPing = Date.now() - t0;
    const inv = await net.invite(a);
    await net.cli(c, ['join', inv]);
    const t1 = Date.now();
    const path = async (x: typeof b, y: typeof b) => (await net.status(x)).peers.find((p) => p.name === y.name)?.path;
    await waitFor(async () => {
      void ping(net.t, b.ns, '10.0.0.3', { count: 1, wait: 0.2 });
      return (await path(b, c)) === 'direct' && (await path(c, b)) === 'direct';
    }, 60_000, 'direct paths');
    const direct = Date.now() - t1;

    const dTcp = await iperf(net, b.ns, c.ns, '10.0.0.3');
    const dRtt = await rtt(net, b.ns, '10.0.0.3');
    for (const [s, d] of [['198.20.2.2', '198.20.3.2'], ['198.20.3.2', '198.20.2.2']]) {
      await net.t.exec(net.core, 'iptables', ['-I', 'FORWARD', '-s', s, '-d', d, '-p', 'udp', '-j', 'DROP']);
    }
    await waitFor(async () => {
      void ping(net.t, b.ns, '10.0.0.3', { count: 1, wait: 0.2 });
      return (await path(b, c)) === 'relay' && (await path(c, b)) === 'relay';
    }, 60_000, 'relayed paths');
    const rTcp = await iperf(net, b.ns, c.ns, '10.0.0.3');
    const rRtt = await rtt(net, b.ns, '10.0.0.3');

    // bravo's router now drops all UDP: WireGuard goes over libp2p (TCP) through the founder.
    await net.t.exec(net.t.name('r2'), 'iptables', ['-I', 'FORWARD', '-p', 'udp', '-j', 'DROP']);
    await waitFor(async () => {
      void ping(net.t, b.ns, '10.0.0.3', { count: 1, wait: 0.5 });
      const nc = JSON.parse(await net.cli(b, ['netcheck', '--json'])) as { udp: boolean | null };
      return nc.udp === false && (await ping(net.t, b.ns, '10.0.0.3', { count: 1, wait: 1 })).received === 1;
    }, 90_000, 'the path over TCP');
    const tTcp = await iperf(net, b.ns, c.ns, '10.0.0.3');
    const tRtt = await rtt(net, b.ns, '10.0.0.3');

    const f = (n: number, d = 1) => n.toFixed(d);
    const rows = [
      ['figure', 'direct', 'UDP relay', 'ratio', 'TCP relay', 'ratio'],
      ['TCP 1 stream (Mbit/s)', f(dTcp, 0), f(rTcp, 0), f(rTcp / dTcp, 2), f(tTcp, 0), f(tTcp / dTcp, 2)],
      ['ping RTT mean (ms)', f(dRtt.mean, 2), f(rRtt.mean, 2), f(rRtt.mean / dRtt.mean, 2), f(tRtt.mean, 2), f(tRtt.mean / dRtt.mean, 2)],
      ['ping loss', f(dRtt.loss * 100, 1) + ' %', f(rRtt.loss * 100, 1) + ' %', '', f(tRtt.loss * 100, 1) + ' %', ''],
    ];
    const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    console.log(`join -> first ping through NAT: ${firstPing} ms (target < 3000)`);
    console.log(`both online -> direct path: ${direct} ms (target < 5000)`);
    console.log(rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n'));
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(`nat bench: ${(err as Error).message}`);
  process.exit(1);
});
