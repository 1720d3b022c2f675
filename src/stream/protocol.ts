/**
 * The wire vocabulary (see docs/protocol.md).
 *
 * v1 is the Go library's protocol: an empty-body handshake with `reply-to`,
 * data as message bodies, an empty body as end-of-stream. Nothing else is
 * ever sent to a v1 peer.
 *
 * v2 is offered by a header on the client's handshake message and accepted
 * by the same header on the listener's reply; a Go peer ignores headers, so
 * the offer costs nothing. With v2 both ends also understand a reset
 * message (a header on an otherwise empty message), so an aborted stream is
 * reported to the peer as a reset instead of looking like a clean end.
 */
import type { Options } from 'amqplib';

/** Handshake header carrying the highest protocol version the sender speaks. */
export const VERSION_HEADER = 'x-amqp-stream-version';
/** The version this implementation speaks. */
export const PROTOCOL_VERSION = 2;
/** v2 only: a message with this header aborts the stream; the value is the reason. */
export const RESET_HEADER = 'x-amqp-stream-reset';

/** v2 only: an empty message with this header is a liveness probe; the receiver acks and ignores it. */
export const PING_HEADER = 'x-amqp-stream-ping';

/** v2 `credit`: on both handshake messages, the bytes the sender of that message lets its peer have in flight to it. */
export const WINDOW_HEADER = 'x-amqp-stream-window';
/** v2 `credit`: an empty message with this header is a grant; the value is the total bytes the sender has consumed. */
export const CREDIT_HEADER = 'x-amqp-stream-credit';
/** v2 `seq`: on every data message the stream offset of its first byte; on end-of-stream the final offset. */
export const OFFSET_HEADER = 'x-amqp-stream-offset';
/** v2 `resume`: an end whose broker connection came back; the value is the bytes it has received. */
export const RESUME_HEADER = 'x-amqp-stream-resume';
/** v2 `resume`: the answer to a resume; the value is the bytes the answering end has received. */
export const RESUMED_HEADER = 'x-amqp-stream-resumed';
/** v2 `resume`: on a data message sent again after a resume (the receiver drops what it already has). */
export const RETRANSMIT_HEADER = 'x-amqp-stream-retransmit';

export type Incoming =
  | { kind: 'data'; body: Buffer; offset?: unknown }
  | { kind: 'ping' }
  | { kind: 'credit'; consumed: unknown }
  | { kind: 'eof'; offset?: unknown }
  | { kind: 'reset'; reason: string }
  /** v2 `resume`: the peer's broker connection came back (`resume`), or its answer (`resumed`); `received` is raw. */
  | { kind: 'resume'; received: unknown }
  | { kind: 'resumed'; received: unknown }
  /** v2: a handshake message on an open stream (a reply to a request this stream never made); ignored. */
  | { kind: 'stray' };

interface MessageLike {
  content: Buffer;
  properties: { headers?: Record<string, unknown> | undefined; replyTo?: unknown };
}

/** Longest reset reason kept from the wire (the sender's is at most 200 characters too). */
const MAX_REASON = 200;

/**
 * What a message on a stream's data queue means, given the negotiated
 * version and features. With `seq`, data and end-of-stream carry the raw
 * offset header (`offset`, undefined when missing) for the caller to check.
 */
export function classify(msg: MessageLike, version: number, features: ReadonlySet<Feature> = NO_FEATURES): Incoming {
  const headers = msg.properties.headers;
  if (version >= 2) {
    const reset = headers?.[RESET_HEADER];
    if (reset !== undefined) return { kind: 'reset', reason: wireText(reset, MAX_REASON) };
    if (headers?.[PING_HEADER] !== undefined) return { kind: 'ping' };
    // Our end of stream carries neither a reply-to nor a handshake header:
    // such an empty message is a handshake reply meant for someone else
    // (or a forgery), and taking it for an end would truncate the stream.
    if (
      msg.content.length === 0 &&
      (msg.properties.replyTo !== undefined || headers?.[VERSION_HEADER] !== undefined || headers?.[FEATURES_HEADER] !== undefined)
    ) {
      return { kind: 'stray' };
    }
    if (features.has('credit') && msg.content.length === 0 && headers?.[CREDIT_HEADER] !== undefined) {
      return { kind: 'credit', consumed: headers[CREDIT_HEADER] };
    }
    if (features.has('resume') && msg.content.length === 0) {
      if (headers?.[RESUME_HEADER] !== undefined) return { kind: 'resume', received: headers[RESUME_HEADER] };
      if (headers?.[RESUMED_HEADER] !== undefined) return { kind: 'resumed', received: headers[RESUMED_HEADER] };
    }
    if (features.has('seq')) {
      const offset = headers?.[OFFSET_HEADER];
      return msg.content.length === 0 ? { kind: 'eof', offset } : { kind: 'data', body: msg.content, offset };
    }
  }
  return msg.content.length === 0 ? { kind: 'eof' } : { kind: 'data', body: msg.content };
}

/**
 * A header value from the wire as one line of text: any AMQP type, control
 * characters replaced (it ends up in error messages and logs), at most `max` characters.
 */
export function wireText(value: unknown, max: number): string {
  const text = Buffer.isBuffer(value) ? value.toString('utf8', 0, Math.min(value.length, max * 4)) : typeof value === 'string' ? value.slice(0, max * 4) : String(value);
  return text.replace(/\p{Cc}/gu, ' ').slice(0, max);
}

/**
 * A non-negative integer header value: an AMQP integer, or its decimal
 * string form (docs/protocol.md, "Versions and features"); undefined otherwise.
 */
export function headerInt(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const text = Buffer.isBuffer(value) ? value.toString('latin1') : typeof value === 'string' ? value : undefined;
  if (text === undefined || !/^\d{1,15}$/.test(text)) return undefined;
  return Number(text);
}

/**
 * v2 `seq`: why an offset header is not the one expected (the stream offset
 * of the next byte), or undefined when it is. `what` names the message.
 */
export function offsetProblem(offset: unknown, expected: number, what: 'data' | 'end-of-stream'): string | undefined {
  const a = what === 'data' ? 'a' : 'an';
  if (offset === undefined) return `${a} ${what} message without an offset`;
  const n = headerInt(offset);
  if (n === undefined) return `${a} ${what} message with a malformed offset`;
  if (n === expected) return undefined;
  if (what === 'end-of-stream') return `end-of-stream at offset ${n} after ${expected} bytes (data missing or extra)`;
  return n > expected
    ? `a gap: data at offset ${n}, expected ${expected}`
    : `a duplicate or reordered message: data at offset ${n}, expected ${expected}`;
}

/** The version a peer offers or accepts in its handshake message (1 when it says nothing). */
export function peerVersion(headers: Record<string, unknown> | undefined): number {
  const v = headers?.[VERSION_HEADER];
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/** The version two ends use: the lower of what each speaks. */
export function negotiate(offered: number): number {
  return Math.min(offered, PROTOCOL_VERSION);
}

/** Publish options for a data, EOF or handshake message: mandatory, transient. */
export function publishOptions(extra?: Options.Publish): Options.Publish {
  return { mandatory: true, deliveryMode: 1, ...extra };
}

/**
 * v2 handshake header listing the optional features the sender speaks, comma
 * separated. A feature is in use only when both handshake messages list it
 * (the listener's reply lists the intersection). A peer that sends no such
 * header (amqp-tunnel 0.1.0) speaks plain v2: resets and pings.
 */
export const FEATURES_HEADER = 'x-amqp-stream-features';

/**
 * The optional v2 features, in the order they are specified in
 * docs/protocol.md. Each is negotiated on its own, so each can land (and be
 * turned off) without breaking peers that lack it.
 */
export const FEATURES = ['presence', 'credit', 'seq', 'auth', 'aead', 'resume', 'express'] as const;
export type Feature = (typeof FEATURES)[number];
const NO_FEATURES: ReadonlySet<Feature> = new Set();

/** The features a handshake message lists (unknown tokens are ignored; none for v1 or a 0.1.0 peer). */
export function peerFeatures(headers: Record<string, unknown> | undefined): Set<Feature> {
  const raw = headers?.[FEATURES_HEADER];
  const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : typeof raw === 'string' ? raw : '';
  const out = new Set<Feature>();
  for (const token of text.split(',')) {
    const t = token.trim();
    if ((FEATURES as readonly string[]).includes(t)) out.add(t as Feature);
  }
  return out;
}

/**
 * `presence`: both handshake messages carry the sender's presence queue, one
 * per broker connection; a ping there that the broker returns means that
 * connection (and every stream of the peer on it) is gone.
 */
export const PRESENCE_HEADER = 'x-amqp-stream-presence';

/** A peer's presence queue from its handshake headers: only a server-named queue (`amq.gen-…`) is accepted. */
export function peerPresence(headers: Record<string, unknown> | undefined): string | undefined {
  const raw = headers?.[PRESENCE_HEADER];
  const q = Buffer.isBuffer(raw) ? raw.toString('utf8') : typeof raw === 'string' ? raw : undefined;
  return q !== undefined && /^amq\.gen-[A-Za-z0-9_-]{1,100}$/.test(q) ? q : undefined;
}

/** The features both ends speak: what the listener puts on its reply and both then use. */
export function commonFeatures(offered: Iterable<Feature>, ours: Iterable<Feature>): Set<Feature> {
  const mine = new Set(ours);
  return new Set([...offered].filter((f) => mine.has(f)));
}

/**
 * Handshake headers: the offer (client) or the acceptance (listener). The
 * features header is sent only when there is at least one feature, so a
 * connection that enables none puts exactly 0.1.0's bytes on the wire. With
 * `credit` listed, `window` (the bytes this end lets its peer have in flight
 * to it) goes along.
 */
export function handshakeHeaders(version: number, features: Iterable<Feature> = [], window?: number): Record<string, unknown> {
  const list = [...features];
  if (version < 2 || list.length === 0) return { [VERSION_HEADER]: version };
  const headers: Record<string, unknown> = { [VERSION_HEADER]: version, [FEATURES_HEADER]: list.join(',') };
  if (window !== undefined && list.includes('credit')) headers[WINDOW_HEADER] = window;
  return headers;
}

/** v2 `credit`: a grant, the total bytes this end's application has consumed. */
export function creditOptions(consumed: number): Options.Publish {
  return publishOptions({ headers: { [CREDIT_HEADER]: consumed } });
}

/** v2 `seq`: a data or end-of-stream message whose first byte is at `offset`. */
export function offsetOptions(offset: number): Options.Publish {
  return publishOptions({ headers: { [OFFSET_HEADER]: offset } });
}

/** v2 `seq` + `resume`: a data message sent again after a resume, at its original offset. */
export function retransmitOptions(offset: number): Options.Publish {
  return publishOptions({ headers: { [OFFSET_HEADER]: offset, [RETRANSMIT_HEADER]: 1 } });
}

/** Reset message options (v2 only). */
export function resetOptions(reason: string): Options.Publish {
  return publishOptions({ headers: { [RESET_HEADER]: reason.slice(0, 200) } });
}

/** Liveness probe options (v2 only): mandatory, so a vanished peer queue returns it. */
export function pingOptions(): Options.Publish {
  return publishOptions({ headers: { [PING_HEADER]: 1 } });
}

/** True for a (returned) liveness probe. */
export function isPing(msg: { properties: { headers?: Record<string, unknown> | undefined } }): boolean {
  return msg.properties.headers?.[PING_HEADER] !== undefined;
}

/** Why a control message is not a connection request: `kind` is one of a few fixed labels (for rate-limited logs). */
export interface RequestProblem {
  kind: 'body' | 'no reply-to' | 'own queue';
  text: string;
}

/**
 * A message is a valid connection request when it has an empty body and a
 * reply-to that is not the listener's own control queue (answering there
 * would send the listener requests from itself).
 */
export function connectionRequestProblem(
  msg: { content: Buffer; properties: { replyTo?: unknown } },
  controlQueue?: string,
): RequestProblem | undefined {
  if (msg.content.length !== 0) return { kind: 'body', text: `it has a ${msg.content.length}-byte body (a connection request has none)` };
  const replyTo = msg.properties.replyTo;
  if (typeof replyTo !== 'string' || replyTo.length === 0) return { kind: 'no reply-to', text: 'it has no reply-to queue' };
  if (replyTo === controlQueue) return { kind: 'own queue', text: 'its reply-to is the control queue itself' };
  return undefined;
}
