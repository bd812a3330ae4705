// WireGuard over a libp2p stream: the relay of last resort, for a member whose UDP is blocked
// altogether (as DERP is for Tailscale). The member opens `/meshd/wg-stream/1` to a member it
// reaches over libp2p (TCP); both ends then carry relay frames (relay.ts: 'mRLY' | src id | dst id |
// WireGuard datagram) on it, one length-prefixed frame each, and hand what arrives to their path
// layer (paths.ts), which delivers it to the device or forwards it as a relay would. WireGuard
// stays end to end; the stream only carries its datagrams.
//
// Writes never wait: a frame that finds more than MAX_QUEUED frames not yet written is dropped,
// as UDP would drop it (TCP's own congestion control paces the rest).
//
// Exported API:
//   WG_STREAM_PROTOCOL = '/meshd/wg-stream/1'
//   interface StreamLinkHost { member(peerId): string | null;     the member's WireGuard key (hex)
//                              attach(hex, link); detach(hex, link); receive(hex, frame: Buffer) }
//   class StreamLink { write(frame: Uint8Array): void; close(): void; closed: boolean }
//   serveStreamLinks(node, host, logger?): Promise<{ close() }>
//   openStreamLink(node, peerId, host): Promise<StreamLink>         attached to host as well
import type { Libp2p } from 'libp2p';
import type { Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { noopLogger, type Logger } from '../util/log.js';
import { timeoutSignal } from '../util/timeout.js';

export const WG_STREAM_PROTOCOL = '/meshd/wg-stream/1';
const MAX_FRAME = 2048;
const MAX_QUEUED = 256;

export interface StreamLinkHost {
  member(peerId: string): string | null;
  attach(hex: string, link: StreamLink): void;
  detach(hex: string, link: StreamLink): void;
  receive(hex: string, frame: Buffer): void;
}

export class StreamLink {
  private readonly lp;
  private queued = 0;
  closed = false;

  constructor(private readonly stream: Stream, private readonly hex: string, private readonly host: StreamLinkHost, private readonly log: Logger) {
    this.lp = lpStream(stream, { maxDataLength: MAX_FRAME });
    host.attach(hex, this);
    void this.readLoop();
  }

  private async readLoop(): Promise<void> {
    try {
      for (;;) {
        const buf = await this.lp.read();
        this.host.receive(this.hex, Buffer.from(buf.subarray()));
      }
    } catch (err) {
      if (!this.closed) this.log.debug({ peer: this.hex.slice(0, 8), err: (err as Error).message }, 'WireGuard stream ended');
    } finally {
      this.close();
    }
  }

  write(frame: Uint8Array): void {
    if (this.closed || this.queued >= MAX_QUEUED) return;
    this.queued++;
    this.lp.write(frame).then(() => { this.queued--; }, () => this.close());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.host.detach(this.hex, this);
    this.stream.abort(new Error('closed'));
  }
}

export async function serveStreamLinks(node: Libp2p, host: StreamLinkHost, logger: Logger = noopLogger): Promise<{ close(): Promise<void> }> {
  await node.handle(WG_STREAM_PROTOCOL, (stream, conn) => {
    const hex = host.member(conn.remotePeer.toString());
    if (hex === null) {
      stream.abort(new Error('only members may carry WireGuard over libp2p'));
      return;
    }
    new StreamLink(stream, hex, host, logger);
  }, { force: true, maxInboundStreams: 4 });
  return { close: () => node.unhandle(WG_STREAM_PROTOCOL).catch(() => {}) };
}

export async function openStreamLink(node: Libp2p, peerId: string, host: StreamLinkHost, logger: Logger = noopLogger): Promise<StreamLink> {
  const hex = host.member(peerId);
  if (hex === null) throw new Error('not a member');
  const stream = await node.dialProtocol(peerIdFromString(peerId), WG_STREAM_PROTOCOL, { signal: timeoutSignal(5_000) });
  return new StreamLink(stream, hex, host, logger);
}
