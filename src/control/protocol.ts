// The control protocol between `meshd` commands and the daemon: newline-delimited JSON over a UNIX
// stream socket. One JSON object per line, each way:
//
//   request   { "id": 1, "method": "status", "params": { ... } }       params optional, an object
//   response  { "id": 1, "ok": true, "result": ... }
//           | { "id": 1, "ok": false, "error": { "code": "ENONET", "message": "..." } }
//
// Requests may be pipelined; responses carry the request's id and may come back in any order.
// A request the server cannot read at all (not JSON, no id) is answered with id null and code
// EPROTO. Both ends validate with the zod schemas below and bound line length before parsing.
// The server may close a connection with a last reply of id null: EBUSY (at its connection or
// buffer limit) or EIDLE (nothing sent for too long); see limits.ts.
import { z } from 'zod';

/** Longest request line the daemon reads; a longer one gets an EPROTO_LINE reply and a hang-up. */
export const MAX_REQUEST_LINE = 1024 * 1024;
/** Longest response line a client reads (status of a large network is bigger than any request). */
export const MAX_RESPONSE_LINE = 64 * 1024 * 1024;

export const RequestSchema = z.strictObject({
  id: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  method: z.string().min(1).max(128),
  params: z.record(z.string(), z.unknown()).optional(),
});
export type Request = z.infer<typeof RequestSchema>;

export const ErrorBodySchema = z.object({
  code: z.string().min(1).max(128),
  message: z.string(),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

export const ResponseSchema = z.discriminatedUnion('ok', [
  z.object({ id: z.int().min(0), ok: z.literal(true), result: z.unknown() }),
  z.object({ id: z.int().min(0).nullable(), ok: z.literal(false), error: ErrorBodySchema }),
]);
export type Response = z.infer<typeof ResponseSchema>;

/** Error codes the protocol itself produces (handlers bring their own). */
export const ErrorCodes = {
  /** The line is not a valid request. */
  PROTO: 'EPROTO',
  /** The line is longer than MAX_REQUEST_LINE; the server hangs up after replying. */
  LINE: 'EPROTO_LINE',
  /** No handler for the method. */
  UNKNOWN: 'EUNKNOWN',
  /** The params do not fit the method's schema (methods.ts): the message names the field. */
  PARAMS: 'EINVAL',
  /** A handler failed without giving a code, or its result is not JSON. */
  INTERNAL: 'EINTERNAL',
  /** The server is at its connection or buffer limit: this connection is closed (see limits.ts). */
  BUSY: 'EBUSY',
  /** The connection sent nothing for too long with no request in flight: closed. */
  IDLE: 'EIDLE',
} as const;

/** JSON text of a message plus the newline that ends it. */
export function encodeLine(message: Request | Response): string {
  return `${JSON.stringify(message)}\n`;
}

/**
 * Splits a byte stream into lines without holding more than `max` bytes of an unfinished line.
 * push() returns the complete lines in the chunk and whether the limit was exceeded; after an
 * overflow the reader is spent (the stream cannot be resynchronised cheaply: the caller hangs up).
 */
export class LineReader {
  private parts: Buffer[] = [];
  private pending = 0;
  private overflowed = false;

  constructor(private readonly max: number) {}

  /** Bytes held of an unfinished line. */
  get buffered(): number {
    return this.pending;
  }

  push(chunk: Buffer): { lines: string[]; overflow: boolean } {
    const lines: string[] = [];
    if (this.overflowed) return { lines, overflow: true };
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      if (this.pending + (nl - start) > this.max) return this.overflow(lines);
      this.parts.push(chunk.subarray(start, nl));
      lines.push(Buffer.concat(this.parts).toString('utf8'));
      this.parts = [];
      this.pending = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.pending += chunk.length - start;
      if (this.pending > this.max) return this.overflow(lines);
      // copy: the stream may reuse the chunk's memory
      this.parts.push(Buffer.from(chunk.subarray(start)));
    }
    return { lines, overflow: false };
  }

  private overflow(lines: string[]): { lines: string[]; overflow: true } {
    this.overflowed = true;
    this.parts = [];
    this.pending = 0;
    return { lines, overflow: true };
  }
}
