// Runs inside a network namespace that tun.test.ts created (never in the host's): opens a TUN,
// gives it 10.99.0.1/24, pings 10.99.0.2 through it and answers the echo requests itself by
// writing crafted replies back into the TUN. Prints one JSON line with what it saw; exits 0 only
// if ping succeeded. Also deletes a second TUN's interface under its reader. After closing the TUN it must exit on its own: a poller that kept the event
// loop alive would make the parent's timeout kill it, and the test fail.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { openTun } from '../../../src/wg/tun.js';
import type { PacketBatch } from '../../../src/wg/batch.js';

const run = promisify(execFile);
const name = `mdt${randomBytes(4).toString('hex')}`;
const LOCAL = [10, 99, 0, 1];
const PEER = [10, 99, 0, 2];

/** The Internet checksum (RFC 1071) of data[start, end). */
function checksum(data: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += (data[i] << 8) | (i + 1 < end ? data[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

const isAddr = (data: Buffer, at: number, ip: number[]): boolean => ip.every((b, k) => data[at + k] === b);

/** Turns an IPv4 ICMP echo request to PEER into its reply, in place; false for any other packet. */
function echoReply(data: Buffer, at: number, len: number): boolean {
  if (len < 28 || data[at] >> 4 !== 4 || data[at + 9] !== 1) return false;
  const ihl = (data[at] & 0x0f) * 4;
  const icmp = at + ihl;
  if (data[icmp] !== 8 || !isAddr(data, at + 16, PEER)) return false;
  // swap source and destination, fresh TTL, recompute both checksums
  for (let k = 0; k < 4; k++) {
    const s = data[at + 12 + k];
    data[at + 12 + k] = data[at + 16 + k];
    data[at + 16 + k] = s;
  }
  data[at + 8] = 64;
  data.writeUInt16BE(0, at + 10);
  data.writeUInt16BE(checksum(data, at, at + ihl), at + 10);
  data[icmp] = 0; // echo reply
  data.writeUInt16BE(0, icmp + 2);
  data.writeUInt16BE(checksum(data, icmp, at + len), icmp + 2);
  return isAddr(data, at + 16, LOCAL);
}

/**
 * Deletes a TUN's interface under a running reader: its fd then reports POLLERR for good. The
 * reader must stop, not re-arm in a loop; returns the CPU milliseconds used in the 300 ms after.
 */
async function cpuAfterDelete(): Promise<number> {
  const tun = openTun(`${name}x`);
  try {
    tun.start(() => {});
    await run('ip', ['link', 'del', tun.name]);
    const before = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 300));
    const used = process.cpuUsage(before);
    return (used.user + used.system) / 1000;
  } finally {
    tun.close();
  }
}

async function main(): Promise<void> {
  // Refuse to run anywhere but in the namespace the test made for us (never in the host's).
  const ns = process.env.MDT_NETNS ?? '';
  const here = (await run('ip', ['netns', 'identify', String(process.pid)])).stdout.trim();
  if (!ns.startsWith('mdt-') || here !== ns) throw new Error(`run me via tun.test.js only (netns "${here}", expected "${ns}")`);
  const tun = openTun(name);
  const result = {
    name: tun.name,
    mtu: tun.mtu,
    link: '',
    busyCode: '',
    requests: 0,
    offsets: [] as number[],
    batches: 0,
    ping: false,
    removedOnClose: false,
    cpuAfterDeleteMs: -1,
  };
  try {
    // A second open of a live TUN must fail clearly.
    try {
      openTun(name).close();
    } catch (err) {
      result.busyCode = (err as NodeJS.ErrnoException).code ?? '';
    }
    tun.start((b: PacketBatch) => {
      result.batches++;
      for (let i = 0; i < b.count; i++) {
        result.offsets.push(b.offset[i]);
        const at = b.slot(i) + b.offset[i];
        if (echoReply(b.data, at, b.length[i])) result.requests++;
        else b.length[i] = -1; // not ours (IPv6 router solicitations...): not written back
      }
      tun.write(b);
    });
    await run('ip', ['addr', 'add', '10.99.0.1/24', 'dev', name]);
    await run('ip', ['link', 'set', name, 'up']);
    result.link = (await run('ip', ['-o', 'link', 'show', 'dev', name])).stdout;
    try {
      await run('ping', ['-c', '3', '-i', '0.2', '-W', '2', '10.99.0.2']);
      result.ping = true;
    } catch {
      result.ping = false;
    }
  } finally {
    tun.close();
  }
  try {
    execFileSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' });
  } catch {
    result.removedOnClose = true; // a non-persistent TUN disappears with its last fd
  }
  result.cpuAfterDeleteMs = await cpuAfterDelete();
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = result.ping ? 0 : 1;
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err), code: (err as NodeJS.ErrnoException).code }) + '\n');
  process.exitCode = 2;
});
