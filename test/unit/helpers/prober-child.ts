// Runs inside a throwaway network namespace (prober.test.ts makes it): ICMP probes to loopback
// addresses (the namespace's own kernel answers), to an address without a route, and alongside a
// real `ping` whose replies carry another identifier. Prints one JSON line for the parent.
import { spawn, execFileSync } from 'node:child_process';
import { TunnelProber } from '../../../src/daemon/prober.js';

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
try {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  let clock = 0;
  const prober = TunnelProber.open({ now: () => performance.now() + clock, maxAgeMs: 15_000 });
  // a ping of our own runs meanwhile: its replies reach our raw socket too, and must not count
  const ping = spawn('ping', ['-q', '-i', '0.2', '-c', '10', '127.0.0.3'], { stdio: 'ignore' });
  prober.probe([
    { key: 'one', ip: '127.0.0.1' },
    { key: 'two', ip: '127.0.0.2' },
    { key: 'unroutable', ip: '192.0.2.1' }, // no route in this namespace: nothing goes out
    { key: 'bad', ip: 'not-an-ip' },
  ]);
  await wait(500);
  const report: Record<string, unknown> = {
    one: prober.rtt('one'),
    two: prober.rtt('two'),
    unroutable: prober.rtt('unroutable'),
    bad: prober.rtt('bad'),
    unknown: prober.rtt('three'), // the concurrent ping's target: never probed by us
  };
  clock = 20_000; // later than maxAgeMs without an answer: the figure is stale
  report.stale = prober.rtt('one');
  prober.probe([{ key: 'one', ip: '127.0.0.1' }]);
  await wait(300);
  report.again = prober.rtt('one');
  ping.kill();
  prober.close();
  console.log(JSON.stringify(report));
} catch (err) {
  console.log(JSON.stringify({ error: (err as Error).message }));
}
