// A tiny upstream DNS server for the names test: `node upstream-dns.js <ip>` answers
// example.test A 192.0.2.53 on <ip>:53 (UDP), NXDOMAIN for everything else; prints "ready".
import { createSocket } from 'node:dgram';
import * as dns from 'dns-packet';

const ip = process.argv[2] ?? '127.0.0.1';
const sock = createSocket('udp4');
sock.on('message', (msg, rinfo) => {
  let q: dns.DecodedPacket;
  try {
    q = dns.decode(msg);
  } catch {
    return;
  }
  const question = q.questions?.[0];
  const known = question?.name.toLowerCase() === 'example.test' && question.type === 'A';
  sock.send(dns.encode({
    type: 'response', id: q.id ?? 0, flags: dns.RECURSION_AVAILABLE | (known ? 0 : 3), questions: q.questions ?? [],
    answers: known ? [{ type: 'A', name: question!.name, ttl: 30, data: '192.0.2.53' }] : [],
  }), rinfo.port, rinfo.address);
});
sock.bind(53, ip, () => console.log('ready'));
