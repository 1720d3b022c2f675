/**
 * The `aead` feature on one stream (docs/protocol.md, "aead"): data bodies
 * sealed with AES-256-GCM under the key of the direction they travel, the
 * stream offset in the nonce; end-of-stream, grant and reset messages carry
 * `x-amqp-stream-tag`, an HMAC over their kind and header value. socket.ts
 * calls in at the few places where it sends or takes these messages.
 */
import type { Direction, DirectionKeys } from './secure';
import { PROOF_BYTES, checkControlTag, controlTag, headerBytes, open, seal, streamKeys, type ControlKind } from './secure';

/** Header of an end, grant or reset under `aead`: base64 HMAC-SHA256(K_dir, kind | value). */
export const TAG_HEADER = 'x-amqp-stream-tag';

export class StreamCipher {
  private readonly tx: DirectionKeys;
  private readonly rx: DirectionKeys;

  /** `role` is this end's: a client sends c2s and receives s2c, a listener the other way round. */
  constructor(secret: Buffer, nonceClient: Buffer, nonceListener: Buffer, role: 'client' | 'listener') {
    const keys = streamKeys(secret, nonceClient, nonceListener);
    const out: Direction = role === 'client' ? 'c2s' : 's2c';
    this.tx = keys[out];
    this.rx = keys[out === 'c2s' ? 's2c' : 'c2s'];
  }

  /** The body of an outgoing data message whose first byte is at `offset`. */
  seal(offset: number, plaintext: Buffer): Buffer {
    return seal(this.tx.enc, offset, plaintext);
  }

  /** The plaintext of an incoming data message at `offset`; throws a protocol error when it does not authenticate. */
  open(offset: number, body: Buffer): Buffer {
    return open(this.rx.enc, offset, body);
  }

  /** Add the tag of an outgoing control message to its headers (the value exactly as sent). */
  tag(kind: ControlKind, value: string | number, headers: Record<string, unknown>): Record<string, unknown> {
    headers[TAG_HEADER] = controlTag(this.tx.mac, kind, String(value)).toString('base64');
    return headers;
  }

  /** Whether an incoming control message carries the right tag for its kind and value (constant time). */
  verify(kind: ControlKind, value: unknown, headers: Record<string, unknown> | undefined): boolean {
    const tag = headerBytes(headers?.[TAG_HEADER], PROOF_BYTES);
    if (!tag || value === undefined || value === null) return false;
    const text = Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
    return checkControlTag(this.rx.mac, kind, text, tag);
  }
}
