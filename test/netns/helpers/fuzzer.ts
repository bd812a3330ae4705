// Throws random and mutated datagrams at a UDP port for a while. Mutations start from real
// WireGuard-shaped messages (valid type and length, garbage inside), since those go deepest.
// Usage: node fuzzer.js <host> <port> <seconds>; prints the number of datagrams sent.
import { createSocket } from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';

const [host, portText, secondsText] = process.argv.slice(2);
const port = Number(portText);
const end = Date.now() + Number(secondsText) * 1000;
const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
sock.on('error', () => {});

function datagram(): Buffer {
  const kind = randomInt(6);
  const typed = (type: number, len: number) => {
    const b = randomBytes(len);
    b.writeUInt32LE(type, 0);
    return b;
  };
  switch (kind) {
    case 0: return randomBytes(randomInt(1, 1500));
    case 1: return typed(1, 148); // initiation with garbage inside (fails mac1)
    case 2: return typed(2, 92);
    case 3: return typed(3, 64);
    case 4: return typed(4, 32 + randomInt(0, 1400)); // transport with an unknown index
    default: {
      const b = typed(randomInt(1, 5), [148, 92, 64, 48][randomInt(4)]);
      return b.subarray(0, randomInt(0, b.length)); // truncated
    }
  }
}

let sent = 0;
function burst(): void {
  if (Date.now() >= end) {
    console.log(sent);
    sock.close();
    return;
  }
  for (let i = 0; i < 200; i++) {
    sock.send(datagram(), port, host);
    sent++;
  }
  setTimeout(burst, 5);
}
burst();
