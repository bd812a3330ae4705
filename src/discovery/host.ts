// Host: the part of a libp2p node that the ledger sync (sync.ts), the join protocol (join.ts) and
// the dialler (dialer.ts) use, and nothing more. A real `Libp2p` node satisfies it as it is
// (structurally: nothing wraps it), and tests run those protocols on in-memory hosts instead
// (test/unit/helpers/memory-host.ts), many members in one process, links cut at will.
//
// What the protocols need of a node:
//   - its peer id;
//   - protocol handlers (`handle` / `unhandle`), called with a libp2p Stream (length-prefixed
//     frames are written and read on it, p2p.ts FrameStream) and the connection it came on;
//   - dialling a peer id or a multiaddr (a member's record, an invite's bootstrap addresses);
//   - the open connections, and the events when one opens or closes.
// Of a connection: its id, remote peer, direction, status, when it opened, how many streams it
// carries, a new stream for a protocol, and closing (gracefully, or at once).
//
// The names and shapes are libp2p's (@libp2p/interface Libp2p and Connection), narrowed.
//
// Exported API:
//   interface HostConnection { id, remotePeer, direction, status, timeline: { open }, streams,
//                              newStream(protocol, options?), close(options?), abort(err) }
//   type HostStreamHandler = (stream: Stream, connection: HostConnection) => void | Promise<void>
//   interface HostHandleOptions { maxInboundStreams?, force? }
//   type HostConnectionEvent = 'connection:open' | 'connection:close'
//   interface Host { peerId; handle(protocol, handler, options?); unhandle(protocol);
//                    dial(peerId | multiaddr, { signal }?); getConnections();
//                    addEventListener(event, listener); removeEventListener(event, listener) }
import type { AbortOptions, ConnectionStatus, MessageStreamDirection, PeerId, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';

/** A connection to another peer, as libp2p's Connection, narrowed to what the protocols use. */
export interface HostConnection {
  readonly id: string;
  readonly remotePeer: PeerId;
  /** outbound: we dialled it. */
  readonly direction: MessageStreamDirection;
  readonly status: ConnectionStatus;
  /** When it opened (ms since the epoch). */
  readonly timeline: { readonly open: number };
  /** The streams it carries now (only their number is read). */
  readonly streams: readonly unknown[];
  /** A stream for `protocol`; rejects if the other side does not handle it. */
  newStream(protocol: string, options?: AbortOptions): Promise<Stream>;
  /** Graceful: the streams' written data is flushed first. */
  close(options?: AbortOptions): Promise<void>;
  abort(err: Error): void;
}

export type HostStreamHandler = (stream: Stream, connection: HostConnection) => void | Promise<void>;

export interface HostHandleOptions {
  /** Streams of this protocol one connection may carry inbound at once. */
  maxInboundStreams?: number;
  /** Replace a handler already registered for the protocol. */
  force?: boolean;
}

export type HostConnectionEvent = 'connection:open' | 'connection:close';

export interface Host {
  readonly peerId: PeerId;
  handle(protocol: string, handler: HostStreamHandler, options?: HostHandleOptions): Promise<void>;
  unhandle(protocol: string): Promise<void>;
  /** A connection to the peer (an open one, or a new one); a multiaddr may end in /p2p/<id> or not. */
  dial(target: PeerId | Multiaddr, options?: AbortOptions): Promise<HostConnection>;
  getConnections(): HostConnection[];
  addEventListener(type: HostConnectionEvent, listener: (evt: CustomEvent<HostConnection>) => void): void;
  removeEventListener(type: HostConnectionEvent, listener: (evt: CustomEvent<HostConnection>) => void): void;
}
