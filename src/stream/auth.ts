/**
 * The `auth` feature's wire vocabulary and rules (docs/protocol.md, "Tunnel
 * secrets"), kept out of socket.ts so the handshake there only calls in.
 *
 *   request  (client -> control queue): features incl. `auth`, x-amqp-stream-nonce = nonce_c
 *   reply    (listener -> client queue): features incl. `auth`, nonce = nonce_s, proof = listener's proof
 *   first message on the listener's data queue: empty body, x-amqp-stream-auth = client's proof
 *
 * A listener with a secret opens its TCP target only after the client's
 * proof checks out. A request it cannot accept gets a reply with
 * x-amqp-stream-refused (v2 clients) or is rejected (v1 clients, which
 * cannot authenticate).
 */
import type { Logger } from '../common/logger';
import { TunnelError } from '../common/errors';
import type { Feature } from './protocol';
import { StreamCipher } from './aead';
import { NONCE_BYTES, PROOF_BYTES, authKey, checkProof, handshakeProof, headerBytes, newNonce, secretBytes, type ProofContext } from './secure';

/** Handshake header: the sender's 16-byte nonce, base64. */
export const NONCE_HEADER = 'x-amqp-stream-nonce';
/** Reply header: the listener's proof, base64. */
export const PROOF_HEADER = 'x-amqp-stream-proof';
/** The client's proof, on an otherwise empty first message to the listener's data queue. */
export const AUTH_HEADER = 'x-amqp-stream-auth';
/** Reply header of a listener that refuses a request; the value is the reason. */
export const REFUSED_HEADER = 'x-amqp-stream-refused';

/** The reasons a listener puts in REFUSED_HEADER (stable strings a client recognises). */
export const REFUSAL = {
  noSecret: 'this tunnel requires a secret',
  mismatch: 'the tunnel secret does not match',
} as const;

/** Features this end offers: `auth` (and what needs it) only with a secret, since it carries the nonce and proofs. */
export function offeredFeatures(configured: ReadonlySet<Feature>, secret: Buffer | undefined): Set<Feature> {
  const out = new Set(configured);
  if (!secret) {
    out.delete('auth');
    out.delete('aead');
  } else {
    // aead is used only where seq is in use too (socket.ts: usable()).
    out.add('auth');
    out.add('aead');
  }
  return out;
}

/** Check a secret option once, where it is given: bytes of at least MIN_SECRET_BYTES. */
export function resolveSecret(secret: string | Buffer | undefined): Buffer | undefined {
  return secret === undefined ? undefined : secretBytes(secret);
}

/** What one end of one stream needs to prove itself and check its peer. */
export class StreamAuth {
  readonly nonce = newNonce();
  private readonly key: Buffer;
  private peerNonce?: Buffer;

  constructor(
    private readonly secret: Buffer,
    private readonly role: 'client' | 'listener',
  ) {
    this.key = authKey(secret);
  }

  /** `aead`: this stream's ciphers, once both nonces are known. */
  cipher(): StreamCipher {
    return new StreamCipher(this.secret, this.nonceClient, this.nonceListener, this.role);
  }

  /** The client's nonce, seen from either end. */
  get nonceClient(): Buffer {
    return this.role === 'client' ? this.nonce : this.peerNonce!;
  }

  /** The listener's nonce, seen from either end. */
  get nonceListener(): Buffer {
    return this.role === 'listener' ? this.nonce : this.peerNonce!;
  }

  /** Take the peer's nonce from its handshake headers; false when missing or malformed. */
  takePeerNonce(headers: Record<string, unknown> | undefined): boolean {
    this.peerNonce = headerBytes(headers?.[NONCE_HEADER], NONCE_BYTES);
    return this.peerNonce !== undefined;
  }

  /** Our proof for this stream, base64, for a header. */
  proof(queues: Omit<ProofContext, 'nonceClient' | 'nonceListener'>): string {
    return handshakeProof(this.key, this.role, this.context(queues)).toString('base64');
  }

  /** Whether `value` (a header) is the peer's proof for this stream (constant time). */
  check(queues: Omit<ProofContext, 'nonceClient' | 'nonceListener'>, value: unknown): boolean {
    const proof = headerBytes(value, PROOF_BYTES);
    if (!proof || !this.peerNonce) return false;
    return checkProof(this.key, this.role === 'client' ? 'listener' : 'client', this.context(queues), proof);
  }

  private context(queues: Omit<ProofContext, 'nonceClient' | 'nonceListener'>): ProofContext {
    return { ...queues, nonceClient: this.nonceClient, nonceListener: this.nonceListener };
  }
}

/** The text of a header value (AMQP long strings may arrive as Buffers). */
export function headerText(value: unknown): string | undefined {
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return typeof value === 'string' ? value : undefined;
}

/** The client's error for a listener's refusal, in words that say what to do. */
export function refusalError(reason: string, serverQueue: string, brokerSafe: string): TunnelError {
  const where = `the publisher on queue '${serverQueue}' at ${brokerSafe}`;
  if (reason === REFUSAL.noSecret) {
    return new TunnelError('ERR_AMQP_SECRET', `${where} requires a tunnel secret — set the same secret on this side`);
  }
  if (reason === REFUSAL.mismatch) return mismatchError(serverQueue, brokerSafe);
  return new TunnelError('ECONNREFUSED', `${where} refused the stream: ${reason.slice(0, 200)}`);
}

export function mismatchError(serverQueue: string, brokerSafe: string): TunnelError {
  return new TunnelError(
    'ERR_AMQP_SECRET',
    `the tunnel secret does not match the one of the publisher on queue '${serverQueue}' at ${brokerSafe} — use the same secret on both sides`,
  );
}

/**
 * Refused requests, logged at most once per interval per listener, so a
 * flood of bad requests cannot flood the log. Lines name the requesting
 * side's queue and the reason; never a secret, nonce or proof.
 */
export class RefusalLog {
  private last = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  refused(serverQueue: string, fromQueue: string, why: string): void {
    const t = this.now();
    if (t - this.last < this.intervalMs) {
      this.suppressed++;
      return;
    }
    const more = this.suppressed > 0 ? ` (and ${this.suppressed} more refused in the last ${Math.round((t - this.last) / 1000)} s)` : '';
    this.last = t;
    this.suppressed = 0;
    this.logger.warn(`refused a stream on queue '${serverQueue}' from '${safeQueue(fromQueue)}': ${why}${more}`);
  }
}

/** A requester's queue name as it may appear in a log line (printable, bounded). */
function safeQueue(name: string): string {
  const clean = name.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 80 ? `${clean.slice(0, 80)}...` : clean;
}
