/**
 * The cryptography of the `auth` and `aead` features (docs/protocol.md,
 * "Tunnel secrets"): pure functions over `node:crypto`, no state, no I/O.
 *
 * - `auth`: both ends prove they know the tunnel secret S with an HMAC over
 *   everything that identifies this one stream (the role of the prover, the
 *   listener's queue, both data queues, both ends' fresh nonces). A recorded
 *   proof is useless for another stream, and the client's proof is useless as
 *   a listener's (and back), so nothing can be replayed or reflected.
 * - `aead`: AES-256-GCM with one key per stream and direction, derived from S
 *   and both nonces; the 12-byte GCM nonce is 4 zero bytes and the 8-byte
 *   stream offset of the data message's first byte. Offsets only grow within a
 *   direction, so a key never sees a nonce twice, and a message moved to
 *   another offset (replayed, reordered, cut) no longer opens.
 * - Control messages (grants, resets, end of stream) carry an HMAC tag under
 *   a per-direction MAC key, so nobody without S can forge or alter them.
 *
 * Every comparison of secret-derived bytes is constant time.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { TunnelError } from '../common/errors';

/** Bytes of each end's handshake nonce. */
export const NONCE_BYTES = 16;
/** Bytes of a proof and of a control message's tag (HMAC-SHA256). */
export const PROOF_BYTES = 32;
/** Bytes of the GCM tag after each ciphertext. */
export const TAG_BYTES = 16;
/**
 * Shortest secret accepted. A broker administrator who recorded one
 * handshake can test guesses of the secret offline (the proof is an HMAC of
 * values on the wire), so the secret must not be guessable: 16 bytes of a
 * password is the floor, 32 random bytes (`openssl rand -base64 32`) the advice.
 */
export const MIN_SECRET_BYTES = 16;

const SALT_AUTH = Buffer.from('amqp-tunnel v2', 'utf8');
const KEY_BYTES = 32;

/** Who makes a proof: part of what is signed, so a proof cannot be reflected to its sender. */
export type Role = 'client' | 'listener';
/** Direction of data: client to listener, listener to client. */
export type Direction = 'c2s' | 's2c';
/** The control messages that carry a tag (x-amqp-stream-tag) under `aead`. */
export type ControlKind = 'end' | 'grant' | 'reset' | 'resume' | 'resumed';
const ZERO = Buffer.alloc(1);

/** The secret as bytes, checked for length; never put it in a message or log. */
export function secretBytes(secret: string | Buffer): Buffer {
  const s = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
  if (s.length < MIN_SECRET_BYTES) {
    throw new TunnelError(
      'ERR_INVALID_ARG',
      `the tunnel secret is ${s.length} bytes long; use at least ${MIN_SECRET_BYTES} (for example the output of 'openssl rand -base64 32')`,
    );
  }
  return s;
}

/** A fresh handshake nonce. */
export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

function hkdf(secret: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, salt, Buffer.from(info, 'utf8'), KEY_BYTES));
}

/** K_auth = HKDF-SHA256(S, salt = "amqp-tunnel v2", info = "auth"). */
export function authKey(secret: Buffer): Buffer {
  return hkdf(secret, SALT_AUTH, 'auth');
}

/** What a handshake proof is bound to: one stream, seen identically by both ends. */
export interface ProofContext {
  /** The listener's (control) queue, the tunnel's name. */
  serverQueue: string;
  /** The client's data queue (the request's reply-to). */
  clientQueue: string;
  /** The listener's data queue (the reply's reply-to). */
  listenerQueue: string;
  nonceClient: Buffer;
  nonceListener: Buffer;
  /**
   * The features both handshake messages listed, as "request/reply" (each
   * sorted, comma separated), so that nobody on the way can strip a feature
   * (`aead`) from either message without the proofs failing.
   */
  features?: string;
}

/**
 * Fields joined by a zero byte, as docs/protocol.md writes `a | b`. The
 * nonces are fresh, fixed-length and last, so a proof recorded for one
 * stream never fits another, whatever its queue names.
 */
function joinFields(fields: Array<string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  fields.forEach((f, i) => {
    if (i > 0) parts.push(ZERO);
    parts.push(typeof f === 'string' ? Buffer.from(f, 'utf8') : f);
  });
  return Buffer.concat(parts);
}

/** proof = HMAC-SHA256(K_auth, role | Q | Cq | Sq | Nc | Ns | F), `|` a zero byte, F the features ("request/reply"). */
export function handshakeProof(kAuth: Buffer, role: Role, ctx: ProofContext): Buffer {
  const fields: Array<string | Buffer> = [role, ctx.serverQueue, ctx.clientQueue, ctx.listenerQueue, ctx.nonceClient, ctx.nonceListener];
  if (ctx.features !== undefined) fields.push(ctx.features);
  const data = joinFields(fields);
  return createHmac('sha256', kAuth).update(data).digest();
}

/** Constant-time equality of two byte strings (false for different lengths). */
export function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** True when `proof` is the proof `role` makes for `ctx` under `kAuth` (constant time). */
export function checkProof(kAuth: Buffer, role: Role, ctx: ProofContext, proof: Buffer): boolean {
  return sameBytes(handshakeProof(kAuth, role, ctx), proof);
}

/** The per-stream keys of one direction: AES-256-GCM for data, HMAC for control messages. */
export interface DirectionKeys {
  enc: Buffer;
  mac: Buffer;
}

/**
 * Keys per direction: enc = HKDF(S, salt = Nc || Ns, info = "c2s" / "s2c");
 * the control-message key K_dir = HKDF(same salt, info = "c2s mac" / "s2c mac"),
 * so one key never serves both AES-GCM and HMAC.
 */
export function streamKeys(secret: Buffer, nonceClient: Buffer, nonceListener: Buffer): Record<Direction, DirectionKeys> {
  const salt = Buffer.concat([nonceClient, nonceListener]);
  return {
    c2s: { enc: hkdf(secret, salt, 'c2s'), mac: hkdf(secret, salt, 'c2s mac') },
    s2c: { enc: hkdf(secret, salt, 's2c'), mac: hkdf(secret, salt, 's2c mac') },
  };
}

function checkOffset(offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new TunnelError('ERR_INVALID_ARG', `stream offset ${offset} is not a non-negative integer`);
}

/** GCM nonce: 4 zero bytes, then the stream offset as 8 bytes big-endian. */
export function gcmNonce(offset: number): Buffer {
  checkOffset(offset);
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(offset), 4);
  return n;
}

/** Additional data of a data message: "data" | offset (8 bytes, big-endian). */
function aad(offset: number): Buffer {
  const a = Buffer.alloc(13);
  a.write('data', 0, 'latin1');
  a.writeBigUInt64BE(BigInt(offset), 5);
  return a;
}

/** Encrypt a data message whose first byte is at stream `offset`: ciphertext || 16-byte tag. */
export function seal(key: Buffer, offset: number, plaintext: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key, gcmNonce(offset));
  c.setAAD(aad(offset));
  const head = c.update(plaintext);
  const tail = c.final();
  return Buffer.concat([head, tail, c.getAuthTag()]);
}

/**
 * Decrypt and verify; throws a protocol-error TunnelError (ECONNRESET) when
 * the body was altered, moved to another offset, or sealed under another key.
 */
export function open(key: Buffer, offset: number, sealed: Buffer): Buffer {
  if (sealed.length <= TAG_BYTES) throw protocolError(`a data message of ${sealed.length} bytes is too short to hold data and its tag`);
  const d = createDecipheriv('aes-256-gcm', key, gcmNonce(offset));
  d.setAAD(aad(offset));
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const head = d.update(sealed.subarray(0, sealed.length - TAG_BYTES));
  try {
    const tail = d.final(); // verifies the tag: nothing is returned before it has
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    throw protocolError(`the data message at offset ${offset} does not authenticate (altered, replayed, reordered or forged)`);
  }
}

/** The tag of a control message: HMAC-SHA256(K_dir, kind | value), value = its header's value as text. */
export function controlTag(mac: Buffer, kind: ControlKind, value: string): Buffer {
  return createHmac('sha256', mac).update(joinFields([kind, value])).digest();
}

/** True when `tag` is the right tag for the control message (constant time). */
export function checkControlTag(mac: Buffer, kind: ControlKind, value: string, tag: Buffer): boolean {
  return sameBytes(controlTag(mac, kind, value), tag);
}

/** A stream-killing protocol error: ECONNRESET with "protocol error: ..." as docs/protocol.md says. */
export function protocolError(what: string): TunnelError {
  return new TunnelError('ECONNRESET', `protocol error: ${what}`);
}

/** Decode a base64 header value of exactly `bytes` bytes; undefined when missing or malformed. */
export function headerBytes(value: unknown, bytes: number): Buffer | undefined {
  const text = Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'string' ? value : undefined;
  if (text === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined;
  const b = Buffer.from(text, 'base64');
  return b.length === bytes ? b : undefined;
}
