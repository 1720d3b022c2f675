/**
 * A stream over AMQP, shaped like net.Socket: a Duplex that implements only
 * `_read`, `_write`, `_final` and `_destroy`.
 *
 * - Writes made in one tick are coalesced into one message (large writes: in one turn of the event loop); large writes are
 *   split at `maxMessageSize`. When amqplib's `publish()` returns false the
 *   write callback waits for the channel's 'drain'.
 * - v2 `credit` (flow.ts): the writer never sends beyond the peer's grant
 *   plus its window (a message is split to fit) and the write callback waits
 *   for credit; the reader grants what its application has read, counted
 *   in `read()`, so a slow application slows the writer down and at most one
 *   window per direction waits at the broker or in the reader's buffer.
 *   Messages are then acked on receipt.
 * - Without credit (v1, plain v2) a message is acked when its bytes are
 *   pushed to the reader; when `push()` returns false the acks wait for
 *   `_read`, so the broker stops delivering after `prefetch` messages and the
 *   rest wait in the queue.
 * - v2 `seq`: every data message and the end-of-stream carry the stream
 *   offset; anything out of place destroys the stream with a protocol error
 *   (ECONNRESET) before a wrong byte reaches the reader, and resets the peer.
 * - v2 `auth` (auth.ts): with a tunnel secret both ends prove it in the
 *   handshake; a listener hands the stream on only after the client's proof.
 * - v2 `aead` (aead.ts): with `auth` and `seq`, data bodies are sealed at
 *   their offset and end/grant/reset messages are tagged; whatever does not
 *   authenticate is a protocol error like a wrong offset.
 * - `_final` sends the end-of-stream message (an empty body) and calls back
 *   when the broker has confirmed it; the peer's empty body becomes
 *   `push(null)`.
 * - `destroy()` before both directions have ended is an abort: a v2 peer is
 *   sent a reset; a v1 peer finds our queue gone when it next writes.
 */
import { Duplex } from 'node:stream';
import type { ConsumeMessage, Message, Options } from 'amqplib';
import { TunnelError, describeError } from '../common/errors';
import { untrusted } from '../common/ratelimit';
import type { ConsumerHandle, StreamHost } from './connection';
import { PeerWatch, afterGrace } from './liveness';
import { CreditReceiver, CreditSender, peerWindowOf } from './flow';
import { MessagePacker } from './packer';
import {
  WINDOW_HEADER,
  classify,
  commonFeatures,
  creditOptions,
  handshakeHeaders,
  headerInt,
  isPing,
  negotiate,
  offsetOptions,
  offsetProblem,
  peerFeatures,
  peerPresence,
  peerVersion,
  pingOptions,
  PRESENCE_HEADER,
  publishOptions,
  resetOptions,
  RESET_HEADER,
  RESUME_HEADER,
  RESUMED_HEADER,
  RETRANSMIT_HEADER,
  retransmitOptions,
} from './protocol';
import type { Feature } from './protocol';
import { formatStreamAddress } from './url';
import {
  AUTH_HEADER,
  NONCE_HEADER,
  PROOF_HEADER,
  REFUSAL,
  REFUSED_HEADER,
  StreamAuth,
  headerText,
  mismatchError,
  offeredFeatures,
  refusalError,
  resolveSecret,
} from './auth';
import type { StreamCipher } from './aead';
import { TAG_BYTES as AEAD_TAG_BYTES, type ControlKind } from './secure';

export interface SocketOptions {
  /** As in net: when false (default), the socket ends its writable side when the peer ends. */
  allowHalfOpen?: boolean;
  /** Readable buffer size in bytes before `push()` reports backpressure. */
  readableHighWaterMark?: number;
  /** Writable buffer size in bytes before `write()` returns false. */
  writableHighWaterMark?: number;
  /** Tunnel secret of this stream (or of a server's streams); default: the connection's `secret`. */
  secret?: string | Buffer;
}

const EMPTY = Buffer.alloc(0);
/** `resume`: after our resume came back, how long our queue may stay quiet before the peer's end or reset arrives. */
const QUEUE_GONE_QUIET_MS = 1000;
const DATA_OPTIONS = publishOptions();
/** Writes at least this large wait for the end of the event loop's turn before a partial message is sent (see _write). */
const COALESCE_ABOVE = 16 * 1024;
/** v2 `express`: data messages smaller than this go without a publisher confirm (docs/protocol.md). */
const EXPRESS_BELOW = 16 * 1024;
const PING_OPTIONS = pingOptions();

type State = 'opening' | 'handshaking' | 'open' | 'closed';

export class StreamSocket extends Duplex {
  /** Bytes received from the peer. */
  bytesRead = 0;
  /** Bytes sent to the peer. */
  bytesWritten = 0;
  /** The protocol version in use (1 = the Go library's), known after 'connect'. */
  protocolVersion = 0;
  /** The optional v2 features both ends agreed on (empty for v1 and plain v2), known after 'connect'. */
  features: ReadonlySet<Feature> = new Set();

  private transport?: StreamHost;
  private serverQueue = '';
  private state: State = 'opening';
  private consumer?: ConsumerHandle;
  private peerQueue?: string;
  private packer?: MessagePacker;
  private flushScheduled = false;
  private heldAcks: ConsumeMessage[] = [];
  private whenOpen: Array<() => void> = [];
  /** Between the handshake and the nextTick that emits 'connect': deliveries wait in `early`. */
  private announcing = false;
  private early: ConsumeMessage[] = [];
  /** Listener with a secret and `express`: data bytes that came before the client's proof. */
  private earlyBytes = 0;
  /** Data messages the broker has not confirmed yet; `afterConfirms` runs when none are left. */
  private unconfirmed = 0;
  private afterConfirms?: () => void;
  private readonly onDataConfirm = (err: Error | null): void => this.dataConfirmed(err);
  private readonly onHandshakeReturn = (msg: Message): void => this.onHandshakeReturned(msg);
  private readonly onDataReturn = (msg: Message): void => this.onDataReturned(msg);
  private timeoutListener?: () => void;
  private eofSent = false;
  private eofReceived = false;
  private peerGone?: TunnelError;
  private handshakeTimer?: NodeJS.Timeout;
  private idleTimer?: NodeJS.Timeout;
  private idleMs = 0;
  /** The peer connection's presence queue, from its handshake (feature `presence`). */
  private peerPresence?: string;
  /** Liveness: when the peer was last heard from, and when to probe it next. */
  private readonly watch = new PeerWatch();
  private readonly ownSecret?: Buffer;
  private role: 'client' | 'listener' = 'client';
  /** With a tunnel secret: this end's nonce and proofs (feature `auth`). */
  private auth?: StreamAuth;
  /** The features this end offered (client) or accepted (listener). */
  private offered: ReadonlySet<Feature> = new Set();
  /** `auth`: the features our request listed (client), and both lists as "request/reply" for the proofs. */
  private requestFeatures = '';
  private proofFeatures = '';
  /** Listener with a secret: the handshake settles once the client's proof arrived. */
  private authWait?: {
    version: number;
    features: ReadonlySet<Feature>;
    peerHeaders: Record<string, unknown> | undefined;
    resolve: () => void;
    reject: (err: Error) => void;
  };
  /** v2 `credit` in use: what we let the peer send, and what it lets us send. */
  private rx?: CreditReceiver;
  private tx?: CreditSender;
  /** v2 `seq` in use: offsets on every data message and end-of-stream. */
  private seq = false;
  /** v2 `express` in use (with `credit` and `seq`): small data messages skip confirms; data may arrive out of order. */
  private express = false;
  /** `express`: data that arrived ahead of a gap, by offset (as received: sealed under `aead`), and an end that did. */
  private ahead?: Map<number, Buffer>;
  private aheadEnd?: { offset: number; headers: Record<string, unknown> | undefined };
  /** v2 `aead` in use (with `auth` and `seq`): data sealed, end/grant/reset tagged (aead.ts). */
  private cipher?: StreamCipher;
  /** Bytes pushed to the readable side (consumed = pushed - readableLength). */
  private pushed = 0;
  /** Messages waiting for credit, in order; the head may be sent in parts. */
  private outq: Buffer[] = [];
  /** Called once `outq` is empty (a write callback or `_final` waiting for credit). */
  private whenSent: Array<() => void> = [];
  /** v2 `resume` in use: the stream survives a broker connection drop of either end. */
  private resumable = false;
  /**
   * v2 `resume`: set while the stream is held. `own`: our broker connection
   * dropped (nothing is sent until the peer answered our resume: `awaiting`);
   * otherwise the peer's connection is away and `timer` ends the grace period.
   */
  private hold?: { own: boolean; awaiting: boolean; timer?: NodeJS.Timeout };
  /** v2 `resume`: set once a resume or its answer came: from then on, data below the expected offset is a late duplicate. */
  private resumedOnce = false;
  /** v2 `resume`: bytes sent that the peer has not granted yet (at most one window), for retransmission. */
  private sentChunks: Array<{ offset: number; body: Buffer }> = [];
  /** v2 `resume`: `_final`'s callback, when the end's confirm was lost with the broker connection (sent again on resume). */
  private finalPending?: () => void;

  constructor(options: SocketOptions = {}) {
    super({
      allowHalfOpen: options.allowHalfOpen ?? false,
      readableHighWaterMark: options.readableHighWaterMark,
      writableHighWaterMark: options.writableHighWaterMark,
      decodeStrings: true,
      emitClose: true,
      autoDestroy: true,
    });
    this.ownSecret = resolveSecret(options.secret);
  }

  /** True while the handshake is under way (as net.Socket#connecting). */
  get connecting(): boolean {
    return this.state === 'opening' || this.state === 'handshaking';
  }

  /** 'opening', 'open', 'readOnly', 'writeOnly' or 'closed', as net.Socket#readyState. */
  get readyState(): string {
    if (this.connecting) return 'opening';
    if (this.destroyed) return 'closed';
    if (this.readable && this.writable) return 'open';
    if (this.readable) return 'readOnly';
    if (this.writable) return 'writeOnly';
    return 'closed';
  }

  /** This end's address: broker URL (no password), server_queue, local_queue, remote_queue. */
  get localAddress(): string | undefined {
    if (!this.transport || !this.consumer) return undefined;
    return formatStreamAddress(this.transport.url.safeUrl, this.serverQueue, this.consumer.queue, this.peerQueue);
  }

  /** The peer's address in the same form, seen from its side. */
  get remoteAddress(): string | undefined {
    if (!this.transport || !this.peerQueue) return undefined;
    return formatStreamAddress(this.transport.url.safeUrl, this.serverQueue, this.peerQueue, this.consumer?.queue);
  }

  /**
   * The listener's queue (its "port", the `server_queue` of the address):
   * the queue this stream was opened on, on both ends. Not the peer's data
   * queue (that is `remote_queue` in `remoteAddress`).
   */
  get listenerQueue(): string {
    return this.serverQueue;
  }

  /** @deprecated the listener's queue, despite the name: use `listenerQueue`. */
  get remoteQueue(): string {
    return this.serverQueue;
  }

  /** Emit 'timeout' after `ms` without reads or writes (0 disables), as net.Socket#setTimeout. */
  setTimeout(ms: number, onTimeout?: () => void): this {
    this.idleMs = ms;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    // One callback at a time: setting it again (a per-request habit) replaces
    // the previous one instead of stacking 'timeout' listeners; 0 removes it.
    if (this.timeoutListener && (ms <= 0 || onTimeout)) {
      this.off('timeout', this.timeoutListener);
      this.timeoutListener = undefined;
    }
    if (onTimeout && ms > 0) {
      const listener = (): void => {
        if (this.timeoutListener === listener) this.timeoutListener = undefined;
        onTimeout();
      };
      this.timeoutListener = listener;
      this.once('timeout', listener);
    }
    this.touch();
    return this;
  }

  /** No-ops kept for net.Socket compatibility (the broker connection has noDelay on). */
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }

  // ---- opening -----------------------------------------------------------

  /** @internal Client side: run the handshake with the listener on `serverQueue`. */
  _start(transport: StreamHost, serverQueue: string): void {
    this.transport = transport;
    this.serverQueue = serverQueue;
    this.packer = this.newPacker(transport);
    transport.track(this);
    // The timer covers the whole opening, queue setup included: a broker that
    // blocks or stops answering never leaves a connect pending.
    const ms = transport.options.handshakeTimeout;
    this.handshakeTimer = setTimeout(() => this.destroy(this.openTimeoutError(ms)), ms);
    transport
      .openQueue((msg) => this.onDelivery(msg))
      .then((consumer) => {
        this.consumer = consumer;
        if (this.destroyed) {
          this.releaseConsumer();
          return;
        }
        this.state = 'handshaking';
        const version = transport.options.protocolVersion;
        const secret = this.ownSecret ?? transport.options.secret;
        if (secret && version < 2) {
          this.destroy(new TunnelError('ERR_INVALID_ARG', 'a tunnel secret needs protocol v2: v1 (the Go library) cannot authenticate'));
          return;
        }
        this.auth = secret ? new StreamAuth(secret, 'client') : undefined;
        const offer = offeredFeatures(transport.options.features, secret);
        if (!transport.presenceQueue) offer.delete('presence');
        this.offered = offer;
        const headers = version >= 2 ? handshakeHeaders(version, this.offered, transport.options.window) : undefined;
        if (headers && this.auth) headers[NONCE_HEADER] = this.auth.nonce.toString('base64');
        this.requestFeatures = featureText(headers);
        if (headers && offer.has('presence')) headers[PRESENCE_HEADER] = transport.presenceQueue;
        transport.watchHandshakeReturns(consumer.queue, this.onHandshakeReturn);
        transport.publish(serverQueue, EMPTY, publishOptions({ replyTo: consumer.queue, headers }));
      })
      .catch((err: unknown) => this.destroy(asTunnelError(err, 'ECONNRESET', `could not open a stream to '${serverQueue}'`)));
  }

  /**
   * With a tunnel secret, `aead` may add a 16-byte tag to every data message:
   * leave room for it, so that a sealed message still fits the frames that
   * `maxMessageSize` was chosen for (a tag spilling into a frame of its own
   * cost an extra frame per message).
   */
  private newPacker(transport: StreamHost): MessagePacker {
    const size = transport.options.maxMessageSize;
    const secret = this.ownSecret ?? transport.options.secret;
    return new MessagePacker(secret && size > 2 * AEAD_TAG_BYTES ? size - AEAD_TAG_BYTES : size);
  }

  private openTimeoutError(ms: number): TunnelError {
    const t = this.transport!;
    const blocked = t.blockedReason ? ` — the broker is blocking publishing (${t.blockedReason}) until its alarm clears` : '';
    if (this.state === 'opening') {
      return new TunnelError(
        'ETIMEDOUT',
        `the broker at ${t.url.safeUrl} did not answer within ${ms} ms while opening a stream to '${this.serverQueue}'${blocked || ' — is it overloaded or the network stalled?'}`,
      );
    }
    // A publisher with a tunnel secret rejects v1 requests: they cannot authenticate.
    const v1 = t.options.protocolVersion < 2 ? ' (or it requires a tunnel secret, which v1 cannot give)' : '';
    return new TunnelError(
      'ETIMEDOUT',
      `the listener on queue '${this.serverQueue}' at ${t.url.safeUrl} did not answer within ${ms} ms${blocked || ` — is it alive and consuming its queue?${v1}`}`,
    );
  }

  /**
   * @internal Listener side: answer the client's handshake on our own queue.
   * Resolves false, with nothing opened, when the broker returns the answer:
   * the request's reply-to queue does not exist (its client gave up and
   * left, or the request was forged), so no stream is announced for it.
   */
  async _accept(
    transport: StreamHost,
    serverQueue: string,
    clientQueue: string,
    offered: number,
    clientFeatures: ReadonlySet<Feature> = new Set(),
    requestHeaders?: Record<string, unknown>,
  ): Promise<boolean> {
    this.role = 'listener';
    this.transport = transport;
    this.serverQueue = serverQueue;
    this.packer = this.newPacker(transport);
    transport.track(this);
    // One deadline for the whole accept: the queue (warm or declared) and the broker's confirm of our answer.
    const acceptBy = Date.now() + transport.options.handshakeTimeout;
    const consumer = await withTimeout(
      transport.openQueue((msg) => this.onDelivery(msg)),
      transport.options.handshakeTimeout,
      () => this.openTimeoutError(transport.options.handshakeTimeout),
      (late) => {
        // Set up after we gave up: nobody will use it.
        this.consumer = late;
        this.releaseConsumer();
      },
    );
    this.consumer = consumer;
    if (this.destroyed) {
      this.releaseConsumer();
      return true;
    }
    const version = Math.min(negotiate(offered), transport.options.protocolVersion);
    // The server refused requests that cannot authenticate before a queue was declared (server.ts).
    const secret = this.ownSecret ?? transport.options.secret;
    const features = version >= 2 ? commonFeatures(clientFeatures, offeredFeatures(transport.options.features, secret)) : new Set<Feature>();
    // `presence` needs both presence queues; without either, per-stream pings as plain v2.
    this.peerPresence = peerPresence(requestHeaders);
    if (!this.peerPresence || !transport.presenceQueue) features.delete('presence');
    this.offered = features;
    this.peerQueue = clientQueue;
    const headers = version >= 2 ? handshakeHeaders(version, features, transport.options.window) : undefined;
    if (headers && features.has('presence')) headers[PRESENCE_HEADER] = transport.presenceQueue;
    if (headers && secret && features.has('auth')) {
      this.auth = new StreamAuth(secret, 'listener');
      this.auth.takePeerNonce(requestHeaders);
      headers[NONCE_HEADER] = this.auth.nonce.toString('base64');
      this.proofFeatures = `${featureText(requestHeaders)}/${featureText(headers)}`;
      headers[PROOF_HEADER] = this.auth.proof(this.proofQueues());
    }
    if (!this.auth) {
      // Open only once the broker confirmed the answer; it sends a mandatory
      // message's return before the confirm. Meanwhile deliveries wait in `early`.
      let returned = false;
      const noteReturn = (): void => void (returned = true);
      transport.watchReturns(clientQueue, noteReturn);
      this.announcing = true;
      let err: Error | null;
      try {
        err = await withTimeout(
          new Promise<Error | null>((resolve) =>
            transport.publish(clientQueue, EMPTY, publishOptions({ replyTo: consumer.queue, headers }), resolve),
          ),
          Math.max(0, acceptBy - Date.now()),
          () => this.openTimeoutError(transport.options.handshakeTimeout),
          () => undefined,
        );
      } finally {
        transport.unwatchReturns(clientQueue, noteReturn);
        this.announcing = false;
      }
      if (this.destroyed) return true;
      if (err) throw err;
      if (returned) return false;
      transport.watchReturns(clientQueue, this.onDataReturn);
      this.opened(version, features, requestHeaders);
      return true;
    }
    transport.watchReturns(clientQueue, this.onDataReturn);
    transport.publish(clientQueue, EMPTY, publishOptions({ replyTo: consumer.queue, headers }));
    // The stream (and so the TCP target) opens only once the client proved it knows the secret.
    this.state = 'handshaking';
    const ms = transport.options.handshakeTimeout;
    this.handshakeTimer = setTimeout(() => {
      // The client may already have emitted 'connect': tell it, as for a wrong proof.
      this.transport!.publish(this.peerQueue!, EMPTY, resetOptions(REFUSAL.mismatch));
      this.failAuth(new TunnelError('ERR_AMQP_SECRET', `the client sent no proof of the secret within ${ms} ms`));
    }, ms);
    await new Promise<void>((resolve, reject) => {
      this.authWait = { version, features, peerHeaders: requestHeaders, resolve, reject };
    });
    return true;
  }

  /** The queues and feature lists a handshake proof binds (both ends see the same ones). */
  private proofQueues(): { serverQueue: string; clientQueue: string; listenerQueue: string; features: string } {
    const own = this.consumer?.queue ?? '';
    const peer = this.peerQueue ?? '';
    const features = this.proofFeatures;
    return this.role === 'client'
      ? { serverQueue: this.serverQueue, clientQueue: own, listenerQueue: peer, features }
      : { serverQueue: this.serverQueue, clientQueue: peer, listenerQueue: own, features };
  }

  /** Listener with a secret: the client's first message must be its proof. */
  private onClientProof(msg: ConsumeMessage): void {
    const wait = this.authWait;
    const h = msg.properties.headers;
    if (wait && msg.content.length !== 0 && h?.[AUTH_HEADER] === undefined && usable(wait.features).has('express')) {
      // `express`: a small data message may pass the proof (which goes with confirms). It waits,
      // unacked, like any early delivery, up to one window; it is opened only once the proof checks.
      this.earlyBytes += msg.content.length;
      if (this.earlyBytes <= this.transport!.options.window) {
        this.early.push(msg);
        return;
      }
    }
    this.ack(msg);
    if (!wait) return;
    const gaveUp = headerText(h?.[RESET_HEADER]);
    if (gaveUp !== undefined) {
      this.failAuth(new TunnelError('ERR_AMQP_SECRET', `the client gave up: ${gaveUp.slice(0, 200)}`));
      return;
    }
    if (msg.content.length !== 0 || !this.auth!.check(this.proofQueues(), h?.[AUTH_HEADER])) {
      this.transport!.publish(this.peerQueue!, EMPTY, resetOptions(REFUSAL.mismatch));
      this.failAuth(new TunnelError('ERR_AMQP_SECRET', REFUSAL.mismatch));
      return;
    }
    this.authWait = undefined;
    this.opened(wait.version, wait.features, wait.peerHeaders);
    wait.resolve();
  }

  /**
   * Listener: the stream was never handed to anyone (no 'error' listener yet),
   * so the reason goes to the server (which logs it) and the socket closes quietly.
   */
  private failAuth(err: TunnelError): void {
    const wait = this.authWait;
    this.authWait = undefined;
    wait?.reject(err);
    this.destroy();
  }

  /**
   * Client with a secret: the listener must speak `auth` and prove the same
   * secret; otherwise the stream fails at once with the reason, and the
   * listener is told why (it logs it). Returns false when it failed.
   */
  private checkListener(version: number, features: ReadonlySet<Feature>, headers: Record<string, unknown> | undefined): boolean {
    const t = this.transport!;
    let err: TunnelError | undefined;
    let tell: string | undefined;
    if (version < 2) {
      err = new TunnelError(
        'ERR_AMQP_SECRET',
        `the listener on queue '${this.serverQueue}' at ${t.url.safeUrl} speaks protocol v1 (the Go library), which cannot authenticate — remove the tunnel secret on this side to use it`,
      );
    } else if (!features.has('auth')) {
      err = new TunnelError(
        'ERR_AMQP_SECRET',
        `the publisher on queue '${this.serverQueue}' at ${t.url.safeUrl} has no tunnel secret, but this side has one — set the same secret on the publisher`,
      );
      tell = 'the client requires a tunnel secret; set the same secret on this publisher';
    } else if (!this.auth!.takePeerNonce(headers) || !this.auth!.check(this.proofQueues(), headers?.[PROOF_HEADER])) {
      err = mismatchError(this.serverQueue, t.url.safeUrl);
      tell = REFUSAL.mismatch;
    }
    if (!err) return true;
    if (tell) t.publish(this.peerQueue!, EMPTY, resetOptions(tell));
    this.destroy(err);
    return false;
  }

  private onHandshakeReturned(msg: Message): void {
    const t = this.transport!;
    if (this.state !== 'handshaking' || msg.properties.replyTo !== this.consumer?.queue) return;
    this.destroy(
      new TunnelError(
        'ECONNREFUSED',
        `no listener on queue '${this.serverQueue}' at ${t.url.safeUrl} — is the publisher running?`,
      ),
    );
  }

  private opened(version: number, agreed: ReadonlySet<Feature>, peerHeaders: Record<string, unknown> | undefined): void {
    const features = usable(agreed);
    this.state = 'open';
    this.protocolVersion = version;
    this.features = features;
    if (features.has('credit')) {
      this.rx = new CreditReceiver(this.transport!.options.window);
      this.tx = new CreditSender(peerWindowOf(peerHeaders?.[WINDOW_HEADER]));
    }
    this.seq = features.has('seq');
    this.express = features.has('express');
    this.resumable = features.has('resume');
    if (features.has('aead') && this.auth) this.cipher = this.auth.cipher();
    clearTimeout(this.handshakeTimer);
    this.touch();
    // User code ('connect' listeners, callbacks of writes queued before the
    // handshake) runs on nextTick, outside amqplib's delivery dispatch: a
    // throw there fails this stream only, never the shared consumer channel.
    this.announcing = true;
    process.nextTick(() => {
      this.announcing = false;
      if (this.destroyed) return;
      try {
        const waiting = this.whenOpen;
        this.whenOpen = [];
        for (const fn of waiting) fn();
        this.emit('connect');
        this.emit('ready');
      } catch (err) {
        this.destroy(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      const early = this.early;
      this.early = [];
      for (const msg of early) this.onDelivery(msg);
    });
  }

  // ---- reading -----------------------------------------------------------

  private onDelivery(msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled our consumer: our queue was deleted under us.
      this.destroy(new TunnelError('ECONNRESET', `the broker deleted the stream's queue (${this.consumer?.queue ?? '?'})`));
      return;
    }
    if (this.destroyed || this.state === 'closed') {
      this.ack(msg);
      return;
    }
    if (this.state === 'handshaking') {
      if (this.role === 'listener') this.onClientProof(msg);
      else this.onHandshakeReply(msg);
      return;
    }
    if (this.announcing) {
      this.early.push(msg);
      return;
    }
    try {
      this.onStreamMessage(msg);
    } catch (err) {
      // A throwing user 'data' listener must not reach amqplib and kill the channel.
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private onHandshakeReply(msg: ConsumeMessage): void {
    this.ack(msg);
    const refused = headerText(msg.properties.headers?.[REFUSED_HEADER]);
    if (refused !== undefined) {
      this.destroy(refusalError(refused, this.serverQueue, this.transport!.url.safeUrl));
      return;
    }
    const replyTo = msg.properties.replyTo as unknown;
    if (msg.content.length !== 0 || typeof replyTo !== 'string' || replyTo === '') {
      this.destroy(
        new TunnelError(
          'ECONNRESET',
          `the listener on queue '${this.serverQueue}' answered with something that is not a stream handshake — is it an amqp-stream listener?`,
        ),
      );
      return;
    }
    const t = this.transport!;
    t.unwatchHandshakeReturns(this.consumer!.queue, this.onHandshakeReturn);
    this.peerQueue = replyTo;
    t.watchReturns(replyTo, this.onDataReturn);
    const offered = t.options.protocolVersion;
    const version = offered >= 2 ? Math.min(offered, peerVersion(msg.properties.headers)) : 1;
    // The reply lists what the listener accepted; never use more than we offered.
    const features = version >= 2 ? commonFeatures(peerFeatures(msg.properties.headers), this.offered) : new Set<Feature>();
    this.peerPresence = peerPresence(msg.properties.headers);
    if (!this.peerPresence) features.delete('presence');
    if (this.auth) {
      this.proofFeatures = `${this.requestFeatures}/${featureText(msg.properties.headers)}`;
      if (!this.checkListener(version, features, msg.properties.headers)) return;
      // Our proof goes first on the listener's queue, ahead of any data.
      t.publish(replyTo, EMPTY, publishOptions({ headers: { [AUTH_HEADER]: this.auth.proof(this.proofQueues()) } }));
    }
    this.opened(version, features, msg.properties.headers);
  }

  private onStreamMessage(msg: ConsumeMessage): void {
    this.watch.heard();
    const m = classify(msg, this.protocolVersion, this.features);
    if (m.kind === 'ping') {
      // Proof of life, not traffic: it must not hold off the user's setTimeout().
      this.ack(msg);
      return;
    }
    if (m.kind === 'stray') {
      this.ack(msg);
      this.transport!.options.problemLog.warn(
        'stray handshakes',
        `ignored a handshake message on an open stream of '${this.serverQueue}' (a reply to a request this stream never made, reply-to ${untrusted(String(msg.properties.replyTo ?? ''))})`,
      );
      return;
    }
    if (m.kind === 'credit') {
      // The peer read what we sent: not traffic of its own (like a TCP window update).
      this.ack(msg);
      if (this.cipher && !this.cipher.verify('grant', headerInt(m.consumed), msg.properties.headers)) {
        this.protocolError('a credit grant without a valid tag');
        return;
      }
      if (this.tx!.grant(headerInt(m.consumed)) === 'invalid') {
        this.protocolError(`a credit grant of ${String(m.consumed)} bytes when ${this.tx!.sent} were sent`);
        return;
      }
      this.dropGranted();
      this.pump();
      return;
    }
    if (m.kind === 'resume' || m.kind === 'resumed') {
      this.ack(msg);
      this.onResumeMessage(m.kind, headerInt(m.received), msg.properties.headers);
      return;
    }
    this.touch();
    if (m.kind === 'reset') {
      this.ack(msg);
      if (this.cipher && !this.cipher.verify('reset', m.reason, msg.properties.headers)) {
        this.protocolError('a reset without a valid tag');
        return;
      }
      this.peerGone = new TunnelError('ECONNRESET', `the peer reset the stream: ${m.reason}`);
      this.destroy(this.peerGone);
      return;
    }
    if (this.eofReceived) {
      this.ack(msg);
      return;
    }
    if (m.kind === 'eof') {
      this.ack(msg);
      const at = this.express ? headerInt(m.offset) : undefined;
      if (at !== undefined && at > this.bytesRead) {
        // `express`: data before the end is still on its way (a small message may pass a large one).
        const lastHeld = this.heldUpTo();
        if (lastHeld > at) {
          this.protocolError(`end-of-stream at offset ${at} before data up to ${lastHeld}`);
          return;
        }
        this.aheadEnd ??= { offset: at, headers: msg.properties.headers };
        return;
      }
      this.onEnd(m.offset, msg.properties.headers);
      return;
    }
    // `resume`: a message sent again (flagged) or redelivered by the broker (our
    // connection dropped before our ack) may hold bytes we already have.
    let at = this.bytesRead;
    const again = this.resumable ? headerInt(m.offset) : undefined;
    // After a resume, the original of a message that was sent again may come after its copy: the broker
    // can still route what reached it on the dropped connection (more so from the express channel).
    if (again !== undefined && again < this.bytesRead && (msg.properties.headers?.[RETRANSMIT_HEADER] !== undefined || msg.fields.redelivered || this.resumedOnce)) {
      if (again + this.plainLength(m.body) <= this.bytesRead) {
        this.ack(msg); // wholly a duplicate
        return;
      }
      at = again;
    }
    if (this.express && at === this.bytesRead) {
      const offset = headerInt(m.offset);
      if (offset !== undefined && offset > this.bytesRead) {
        this.ack(msg);
        this.holdAhead(offset, m.body);
        return;
      }
    }
    const problem = this.seq && at === this.bytesRead ? offsetProblem(m.offset, this.bytesRead, 'data') : undefined;
    if (problem) {
      this.ack(msg);
      this.protocolError(problem);
      return;
    }
    let body = m.body;
    if (this.cipher) {
      // Opens only at its own offset under this stream's key: altered, replayed,
      // reordered or injected messages fail here, before any byte reaches the reader.
      try {
        body = this.cipher.open(at, m.body);
      } catch (err) {
        this.ack(msg);
        this.protocolError((err as Error).message.replace(/^protocol error: /, ''));
        return;
      }
    }
    if (at < this.bytesRead) body = body.subarray(this.bytesRead - at); // keep the new tail
    if (this.rx) {
      // Bounded by the window, so it is taken off the broker at once.
      this.ack(msg);
      if (this.takeInOrder(body) && (this.ahead?.size || this.aheadEnd)) this.releaseAhead();
      return;
    }
    this.bytesRead += body.length;
    // The body always goes to the reader's buffer; while the reader is behind,
    // the ack waits for `_read`, so the buffer grows by at most `prefetch` messages.
    const wantsMore = this.push(body);
    if (this.heldAcks.length > 0 || !wantsMore) {
      this.heldAcks.push(msg);
    } else {
      this.ack(msg);
    }
  }

  /** v2 `credit`: bytes at the expected offset (opened, when sealed) go to the reader. False when the stream failed. */
  private takeInOrder(body: Buffer): boolean {
    if (this.ahead?.size) {
      // A sender never sends the same bytes in two different pieces (a resend repeats the piece):
      // a held message that starts inside these bytes is forged, or this one is.
      const end = this.bytesRead + body.length;
      for (const offset of this.ahead.keys()) {
        if (offset > this.bytesRead && offset < end) {
          this.protocolError(`data at offset ${this.bytesRead} (${body.length} bytes) overlaps data held at offset ${offset}`);
          return false;
        }
      }
    }
    if (!this.rx!.arrive(body.length)) {
      this.protocolError(`the peer sent beyond its credit window (${this.rx!.received} bytes, allowed ${this.rx!.limit})`);
      return false;
    }
    this.bytesRead += body.length;
    this.pushed += body.length;
    this.push(body);
    this.grantConsumed(); // a flowing reader may have taken it already
    return true;
  }

  /** The end-of-stream at the expected offset (`offset` as received): checked, then the readable side ends. */
  private onEnd(offset: unknown, headers: Record<string, unknown> | undefined): void {
    const held = this.heldUpTo();
    const problem = held > this.bytesRead ? `end-of-stream at offset ${this.bytesRead} before data up to ${held}` : this.seq ? offsetProblem(offset, this.bytesRead, 'end-of-stream') : undefined;
    if (problem) {
      this.protocolError(problem);
      return;
    }
    // A forged end would make a cut transfer look complete.
    if (this.cipher && !this.cipher.verify('end', this.bytesRead, headers)) {
      this.protocolError('an end-of-stream without a valid tag');
      return;
    }
    this.eofReceived = true;
    this.push(null);
  }

  private plainLength(body: Buffer): number {
    return this.cipher ? body.length - AEAD_TAG_BYTES : body.length;
  }

  /** `express`: the stream offset just past the last byte held (0 when nothing is held). */
  private heldUpTo(): number {
    let end = 0;
    for (const [offset, body] of this.ahead ?? []) end = Math.max(end, offset + this.plainLength(body));
    return end;
  }

  /**
   * `express`: data that arrived ahead of the expected offset waits here
   * (already acked) until the bytes before it have come. It must fit in the
   * window and before a held end; one already held (sent again) is dropped.
   */
  private holdAhead(offset: number, body: Buffer): void {
    const ahead = (this.ahead ??= new Map());
    if (ahead.has(offset)) return;
    const end = offset + this.plainLength(body);
    if (end > this.rx!.limit) {
      this.protocolError(`the peer sent beyond its credit window (data up to offset ${end}, allowed ${this.rx!.limit})`);
      return;
    }
    if (this.aheadEnd && end > this.aheadEnd.offset) {
      this.protocolError(`data up to offset ${end} after an end-of-stream at ${this.aheadEnd.offset}`);
      return;
    }
    ahead.set(offset, body);
  }

  /** `express`: hand on the held data that is now in order, then a held end once every byte before it came. */
  private releaseAhead(): void {
    const ahead = (this.ahead ??= new Map());
    for (let body = ahead.get(this.bytesRead); body !== undefined && !this.destroyed; body = ahead.get(this.bytesRead)) {
      const at = this.bytesRead;
      ahead.delete(at);
      let plain = body;
      if (this.cipher) {
        try {
          plain = this.cipher.open(at, body);
        } catch (err) {
          this.protocolError((err as Error).message.replace(/^protocol error: /, ''));
          return;
        }
      }
      if (!this.takeInOrder(plain)) return;
    }
    // A held copy of bytes that came again at their offset (a resend) is of no use any more.
    for (const offset of ahead.keys()) if (offset < this.bytesRead) ahead.delete(offset);
    if (this.aheadEnd && this.aheadEnd.offset <= this.bytesRead && !this.destroyed) {
      const { offset, headers } = this.aheadEnd;
      this.aheadEnd = undefined;
      this.onEnd(offset, headers);
    }
  }

  /**
   * Every byte the application takes leaves through `read()` (flowing mode,
   * pipe() and async iteration call it too), so this is where "consumed"
   * grows; `_read` alone would not do, as Node stops calling it while a
   * read is pending.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  override read(size?: number): any {
    const chunk: unknown = super.read(size);
    if (this.rx && chunk !== null) this.grantConsumed();
    return chunk;
  }

  /** v2 `credit`: tell the peer what the application has read, once a quarter window has piled up. */
  private grantConsumed(): void {
    if (this.state !== 'open' || this.eofReceived || !this.peerQueue) return;
    // readableLength counts characters once the reader called setEncoding();
    // three bytes per character bounds every encoding, so the grant never
    // runs ahead of what was read (it is exact again once the buffer is empty).
    const buffered = this.readableEncoding ? this.readableLength * 3 : this.readableLength;
    const grant = this.rx!.consume(Math.max(0, this.pushed - buffered));
    if (grant !== undefined) this.transport!.publish(this.peerQueue, EMPTY, this.tagged('grant', grant, creditOptions(grant)));
  }

  /** `aead`: add the tag of a control message (its value exactly as sent) to its publish options. */
  private tagged(kind: ControlKind, value: string | number, options: Options.Publish): Options.Publish {
    if (this.cipher) this.cipher.tag(kind, value, options.headers!);
    return options;
  }

  /** A reset for the peer, tagged under `aead`. */
  private resetFor(reason: string): Options.Publish {
    const options = resetOptions(reason);
    return this.tagged('reset', options.headers![RESET_HEADER] as string, options);
  }

  /**
   * The peer broke the protocol (or someone else wrote into our queue): no
   * byte of the message reaches the reader, the peer is told with a reset,
   * and the stream fails.
   */
  private protocolError(problem: string): void {
    const t = this.transport!;
    const err = new TunnelError(
      'ECONNRESET',
      `protocol error: ${problem} on the stream of '${this.serverQueue}' at ${t.url.safeUrl} — the peer misbehaved or something else wrote into the stream's queue`,
    );
    if (this.peerQueue) t.publish(this.peerQueue, EMPTY, this.resetFor(`protocol error: ${problem}`));
    this.peerGone = err; // the reset is sent; _destroy must not send another
    this.destroy(err);
  }

  override _read(): void {
    const held = this.heldAcks;
    this.heldAcks = [];
    for (const msg of held) this.ack(msg);
  }

  private ack(msg: ConsumeMessage): void {
    try {
      this.consumer?.channel.ack(msg);
    } catch {
      // The channel is gone; the broker has requeued or dropped the message.
    }
  }

  // ---- writing -----------------------------------------------------------

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.state !== 'open' || this.announcing) {
      this.whenOpen.push(() => this._write(chunk, _encoding, cb));
      return;
    }
    if (this.peerGone) {
      cb(this.peerGone);
      return;
    }
    this.touch();
    for (const msg of this.packer!.add(chunk)) this.enqueue(msg);
    if (this.packer!.pending > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      // A large write (a TCP source hands over up to 64 KiB per read) means more
      // is probably on its way in this turn of the event loop: gather it until
      // setImmediate, after all of libuv's reads, so bulk data leaves in full
      // messages (flushing each 64 KiB read on its own doubled the broker's
      // work per byte). A small write is interactive: it leaves at the end of
      // this tick, without waiting for the loop.
      if (chunk.length >= COALESCE_ABOVE) setImmediate(this.flushNow);
      else process.nextTick(this.flushNow);
    }
    this.afterSent(() => {
      if (this.transport!.needsDrain) this.transport!.whenDrained(() => cb());
      else cb();
    });
  }

  private readonly flushNow = (): void => this.flush();

  private flush(): void {
    this.flushScheduled = false;
    if (this.destroyed || this.state !== 'open') return;
    const msg = this.packer!.flush();
    if (msg) this.enqueue(msg);
  }

  /** Send `body` now, or (v2 `credit`) as soon as the peer's window has room for it. */
  private enqueue(body: Buffer): void {
    if (!this.tx) {
      this.send(body);
      return;
    }
    this.outq.push(body);
    this.pump();
  }

  /** v2 `credit`: send what the window allows, splitting the head message to fit. */
  private pump(): void {
    const tx = this.tx!;
    // `resume`: nothing new goes out until the peer said where to retransmit from.
    if (this.hold?.own) return;
    while (this.outq.length > 0 && !this.destroyed) {
      const head = this.outq[0]!;
      const n = tx.sendable(head.length);
      if (n === 0) return;
      if (n === head.length) {
        this.outq.shift();
        this.send(head);
      } else {
        this.outq[0] = head.subarray(n);
        this.send(head.subarray(0, n));
      }
    }
    if (this.outq.length > 0) return;
    const waiting = this.whenSent;
    this.whenSent = [];
    for (const fn of waiting) fn();
  }

  /** Run `fn` once nothing waits for credit. */
  private afterSent(fn: () => void): void {
    if (this.outq.length === 0) fn();
    else this.whenSent.push(fn);
  }

  private send(body: Buffer): void {
    const offset = this.bytesWritten;
    this.bytesWritten += body.length;
    this.tx?.take(body.length);
    if (this.resumable) this.sentChunks.push({ offset, body });
    this.unconfirmed++;
    const wire = this.cipher ? this.cipher.seal(offset, body) : body;
    this.transport!.publish(this.peerQueue!, wire, this.seq ? offsetOptions(offset) : DATA_OPTIONS, this.onDataConfirm, this.express && body.length < EXPRESS_BELOW);
  }

  /** A data message was confirmed; a nack means the broker dropped bytes of the stream. */
  private dataConfirmed(err: Error | null): void {
    this.unconfirmed--;
    if (err && isNack(err) && !this.destroyed) {
      // Bytes are missing from the middle of the stream: it is broken (a v2 peer is sent a reset).
      this.destroy(
        new TunnelError(
          'ECONNRESET',
          `the broker did not take data of the stream on '${this.serverQueue}' (it rejected the message: is the peer's queue full or limited?)`,
          { cause: err },
        ),
      );
    }
    if (this.unconfirmed === 0 && this.afterConfirms) {
      const fn = this.afterConfirms;
      this.afterConfirms = undefined;
      fn();
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.state !== 'open' || this.announcing) {
      this.whenOpen.push(() => this._final(cb));
      return;
    }
    if (this.peerGone) {
      cb(this.peerGone);
      return;
    }
    this.flush();
    // With credit, the end waits behind the data still waiting for the window
    // (and, with `resume`, behind the retransmission after our connection came back).
    const sendEnd = (): void => {
      if (this.hold?.own) {
        this.whenSent.push(sendEnd);
        return;
      }
      this.eofSent = true;
      const options = this.seq ? this.tagged('end', this.bytesWritten, offsetOptions(this.bytesWritten)) : DATA_OPTIONS;
      this.transport!.publish(this.peerQueue!, EMPTY, options, (err) => {
        // 'finish' means the broker took every byte and the end: wait for the
        // confirms of the data messages too (they may come after this one), and
        // call back outside amqplib's dispatch.
        if (err && !isNack(err)) {
          // The channel closed. The connection's failure (in this tick) either
          // destroys the stream with its cause, or (`resume`) holds it: then the
          // end is sent again once the peer answered our resume.
          setImmediate(() => {
            if (this.hold?.own && !this.destroyed) this.finalPending = () => this.afterAllConfirmed(() => cb());
            else cb(this.peerGone ?? asTunnelError(err, 'ECONNRESET', 'the broker did not confirm the end-of-stream message'));
          });
          return;
        }
        const done = (): void =>
          process.nextTick(() => {
            if (this.peerGone) cb(this.peerGone);
            else if (err) cb(new TunnelError('ECONNRESET', 'the broker did not take the end-of-stream message (it rejected it)', { cause: err }));
            else cb();
          });
        if (this.unconfirmed > 0) this.afterConfirms = done;
        else done();
      });
    };
    this.afterSent(sendEnd);
  }

  /** Run `fn` on nextTick once no data message awaits its confirm. */
  private afterAllConfirmed(fn: () => void): void {
    const done = (): void => process.nextTick(fn);
    if (this.unconfirmed > 0) this.afterConfirms = done;
    else done();
  }

  private onDataReturned(msg: Message): void {
    if (this.peerGone) return;
    const h = msg.properties.headers;
    if (h?.[RESUME_HEADER] !== undefined || h?.[RESUMED_HEADER] !== undefined) {
      this.peerQueueGone();
      return;
    }
    if (isPing(msg)) {
      const probedAt = Number(msg.properties.timestamp) || 0;
      afterGrace(() => this._peerVanished(probedAt));
      return;
    }
    if (msg.content.length === 0) {
      // Our end (or reset) came back: no data was lost. A v1 peer that closed
      // in order deletes its queue right after sending its own end, which is
      // on its way to us; a peer that died sends nothing more.
      if (!this.eofReceived) {
        const returnedAt = Date.now();
        afterGrace(() => this._peerVanished(returnedAt));
      }
      return;
    }
    const t = this.transport!;
    this.peerGone = this.eofReceived
      ? new TunnelError('EPIPE', `the peer closed the stream on '${this.serverQueue}'; cannot write after its end`)
      : new TunnelError('ECONNRESET', `the peer of the stream on '${this.serverQueue}' at ${t.url.safeUrl} went away (its queue is gone)`);
    this.destroy(this.peerGone);
  }

  // ---- liveness ----------------------------------------------------------

  /**
   * @internal The peer queue to probe, when a probe is due (liveness.ts:
   * quiet for the interval; v1 peers back off while idle) and this stream
   * would not otherwise learn that the peer died: open, the peer has not
   * ended, and our reader is not holding messages back (a paused reader's
   * peer may have finished and gone, legitimately).
   */
  _probeTarget(now: number, intervalMs: number): string | undefined {
    if (this.state !== 'open' || this.destroyed || this.peerGone || !this.peerQueue || this.hold) return undefined;
    // A v1 peer deletes its queue once it has sent its end; a v2 peer keeps it
    // until both directions ended, so a v2 peer that ended is still watched
    // (it may die, or abort, while we are still sending).
    if (this.eofReceived && (this.protocolVersion < 2 || this.eofSent)) return undefined;
    if (this.heldAcks.length > 0 || this.readableLength > 0) return undefined;
    return this.watch.due(now, intervalMs, this.protocolVersion < 2) ? this.peerQueue : undefined;
  }

  /**
   * @internal v1: the probe started at `probedAt` found the peer's data queue
   * gone. Without our end sent, the peer died (it deletes its queue only
   * when it closes, after sending its end, which then arrives within the
   * grace period). After our end, a v1 peer may have deleted its queue on
   * reading it and still be writing; when it is a listener, its control
   * queue (held by its broker connection) must be gone too.
   */
  _queueGone(probedAt: number, check: (queue: string) => Promise<boolean>): void {
    if (!this.eofSent || this.role !== 'client') {
      afterGrace(() => this._peerVanished(probedAt));
      return;
    }
    check(this.serverQueue).then(
      (alive) => {
        if (!alive) afterGrace(() => this._peerVanished(probedAt));
      },
      () => undefined,
    );
  }

  /** @internal With `presence`: the peer connection's presence queue, which liveness pings instead of our peer's data queue. */
  get _presenceTarget(): string | undefined {
    return this.features.has('presence') ? this.peerPresence : undefined;
  }

  /** @internal v2 liveness probe: a ping the broker returns when the peer's queue is gone. */
  _ping(now: number): void {
    this.transport!.publish(this.peerQueue!, EMPTY, { ...PING_OPTIONS, timestamp: now });
  }

  /** @internal The probe found the peer's queue gone (its process or connection died). */
  _peerVanished(probedAt: number): void {
    // A message that arrived since the probe started (the peer's end, sent
    // just before it closed its queue) means the peer left in order.
    if (this.watch.lastHeard >= probedAt || this.destroyed || this.peerGone) return;
    if (this.eofReceived && this.protocolVersion < 2) return;
    if (this._canHold()) {
      this.holdForPeer();
      return;
    }
    const t = this.transport!;
    this.peerGone = new TunnelError(
      'ECONNRESET',
      this.eofReceived
        ? `the peer of the stream on '${this.serverQueue}' at ${t.url.safeUrl} went away after its end, before ours (its process or broker connection died, or it aborted)`
        : `the peer of the stream on '${this.serverQueue}' at ${t.url.safeUrl} went away without closing the stream (its process or broker connection died)`,
    );
    this.destroy(this.peerGone);
  }

  // ---- closing -----------------------------------------------------------

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.hold?.timer);
    this.finalPending = undefined;
    this.sentChunks = [];
    const t = this.transport;
    if (t) {
      // Destroyed before our end was sent: the peer must not mistake it for a
      // clean end. Destroyed WITH an error after our end (our TCP side was
      // reset, the broker refused data of ours) while the peer is still
      // sending: the transfer broke, so the peer is told too. A plain
      // destroy() after our end is a close: the peer learns on its next write
      // (EPIPE), as with TCP.
      const aborted = wasOpen && !this.peerGone && (!this.eofSent || (err != null && !this.eofReceived));
      if (aborted && this.protocolVersion >= 2 && this.peerQueue) {
        const reason = err ? describeError(err) : 'the peer destroyed the stream';
        t.publish(this.peerQueue, EMPTY, this.resetFor(reason));
      }
      if (this.peerQueue) t.unwatchReturns(this.peerQueue, this.onDataReturn);
      if (this.consumer) t.unwatchHandshakeReturns(this.consumer.queue, this.onHandshakeReturn);
      this.releaseConsumer();
      t.untrack(this);
    }
    // Anything still waiting for the handshake, credit or a drain fails with the socket.
    this.whenOpen = [];
    this.afterConfirms = undefined;
    for (const msg of this.early.splice(0)) this.ack(msg);
    this.whenSent = [];
    this.outq = [];
    const wait = this.authWait;
    this.authWait = undefined;
    wait?.reject(err ?? new TunnelError('ECONNRESET', 'the stream was destroyed during the handshake'));
    cb(err);
  }

  private releaseConsumer(): void {
    const c = this.consumer;
    if (!c) return;
    const held = this.heldAcks;
    this.heldAcks = [];
    for (const msg of held) this.ack(msg);
    // Cancelling the only consumer deletes the exclusive auto-delete queue; a
    // resumable one is deleted (it would wait for its x-expires otherwise), and
    // so is the peer's when the peer stayed away past the grace period.
    this.transport!.releaseQueue(c, this.deletePeerQueue && this.peerQueue ? [this.peerQueue] : []);
  }

  // ---- resume ------------------------------------------------------------

  /** Set when the peer stayed away past the grace period: its queue is deleted with ours. */
  private deletePeerQueue = false;

  /** @internal v2 `resume`: whether this stream can be held through a broker connection drop. */
  _canHold(): boolean {
    return this.resumable && this.state === 'open' && !this.destroyed && !this.peerGone && !(this.eofSent && this.eofReceived && this.finalPending === undefined);
  }

  /** @internal v2 `resume`: held now (our broker connection or the peer's is away). */
  get _held(): boolean {
    return !!this.hold && !this.destroyed;
  }

  private get graceMs(): number {
    return this.transport!.options.resumeGraceMs;
  }

  /** @internal Our broker connection dropped: hold (the connection reconnects and then calls `_reattach`). */
  _holdOwn(): void {
    clearTimeout(this.hold?.timer);
    this.hold = { own: true, awaiting: true };
    // The channel is gone: unacked deliveries come again (flagged redelivered) once we consume again.
    this.heldAcks = [];
    this.early = [];
  }

  /** The peer's broker connection is away: hold for the grace period, keep sending within the window. */
  private holdForPeer(): void {
    if (this.hold) return;
    const ms = this.graceMs;
    this.transport!.options.logger.info(`the peer of a stream on '${this.serverQueue}' is away; holding the stream for up to ${ms / 1000} s`);
    this.hold = { own: false, awaiting: false, timer: setTimeout(() => this.holdExpired(), ms) };
    this.hold.timer!.unref();
  }

  private holdExpired(): void {
    if (this.destroyed) return;
    const who = this.hold?.own ? 'the peer did not answer our resume' : "the peer's broker connection did not come back";
    this.deletePeerQueue = true;
    this.peerGone = new TunnelError('ECONNRESET', `${who} within ${this.graceMs / 1000} s (stream on '${this.serverQueue}')`);
    this.destroy(this.peerGone);
  }

  /**
   * @internal Our broker connection is back: consume our data queue again
   * (what the peer sent meanwhile waits there) and tell the peer how much we
   * received; new data waits until it answers with what it received.
   */
  _reattach(): void {
    const t = this.transport!;
    const queue = this.consumer?.queue;
    if (!queue || !this.hold?.own) return;
    this.hold.timer = setTimeout(() => this.holdExpired(), this.graceMs);
    this.hold.timer.unref();
    t.reconsume(queue, (msg) => this.onDelivery(msg), () => !this.destroyed).then(
      (handle) => {
        if (this.destroyed) {
          t.releaseQueue(handle);
          return;
        }
        this.consumer = handle;
        const headers: Record<string, unknown> = { [RESUME_HEADER]: this.bytesRead };
        if (t.presenceQueue) headers[PRESENCE_HEADER] = t.presenceQueue;
        t.publish(this.peerQueue!, EMPTY, this.tagged('resume', this.bytesRead, publishOptions({ headers })));
      },
      (err: unknown) => {
        if (!this.destroyed) this.destroy(asTunnelError(err, 'ECONNRESET', `could not resume the stream on '${this.serverQueue}'`));
      },
    );
  }

  /** The peer came back (`resume`) or answered ours (`resumed`), with the bytes it has received. */
  private onResumeMessage(kind: 'resume' | 'resumed', received: number | undefined, headers: Record<string, unknown> | undefined): void {
    if (this.cipher && !this.cipher.verify(kind, received, headers)) {
      this.protocolError(`a ${kind} message without a valid tag`);
      return;
    }
    const tx = this.tx!;
    if (received === undefined || received > tx.sent || received < tx.peerConsumed) {
      this.protocolError(`a ${kind} at offset ${String(received)} when ${tx.sent} bytes were sent and ${tx.peerConsumed} granted`);
      return;
    }
    this.resumedOnce = true;
    if (kind === 'resumed' && !this.hold?.own) return; // a late answer: the peer's own resume already told us
    const t = this.transport!;
    if (kind === 'resume') {
      const presence = peerPresence(headers);
      if (presence) this.peerPresence = presence;
      t.publish(this.peerQueue!, EMPTY, this.tagged('resumed', this.bytesRead, publishOptions({ headers: { [RESUMED_HEADER]: this.bytesRead } })));
    }
    clearTimeout(this.hold?.timer);
    this.hold = undefined;
    this.watch.heard();
    // Whatever the peer lacks of what we sent, at the original offsets (under
    // `aead` the same bytes under the same nonce: identical messages).
    for (const c of this.sentChunks) {
      if (c.offset + c.body.length <= received) continue;
      this.unconfirmed++;
      const wire = this.cipher ? this.cipher.seal(c.offset, c.body) : c.body;
      t.publish(this.peerQueue!, wire, retransmitOptions(c.offset), this.onDataConfirm);
    }
    if (this.eofSent) {
      // Our end may have been lost with the connection; a peer that has it drops a second one.
      const pending = this.finalPending;
      this.finalPending = undefined;
      t.publish(this.peerQueue!, EMPTY, this.tagged('end', this.bytesWritten, offsetOptions(this.bytesWritten)), (err) => {
        if (!pending) return;
        if (err) this.destroy(asTunnelError(err, 'ECONNRESET', 'the broker did not confirm the end-of-stream message after a resume'));
        else pending();
      });
    }
    // Grants sent while a connection was away may be lost: repeat the last one (a stale grant is ignored).
    const rx = this.rx!;
    if (rx.lastGranted > 0 && !this.eofReceived) t.publish(this.peerQueue!, EMPTY, this.tagged('grant', rx.lastGranted, creditOptions(rx.lastGranted)));
    this.pump();
    this.grantConsumed();
  }

  /**
   * `resume`: our resume came back, the peer's queue no longer exists. A v2
   * peer deletes its queue only once both directions ended (it then had all
   * our bytes and our end, and its own end waits in our queue), after it
   * aborted (its reset waits in our queue), or the broker expired it (the
   * peer stayed away past the grace period). With our end sent, the stream
   * finishes once the peer's end is read from our queue (at once when it was
   * already); a reset, or silence, resets it.
   */
  private peerQueueGone(): void {
    const gone = (): TunnelError =>
      new TunnelError('ECONNRESET', `the peer of the stream on '${this.serverQueue}' is gone for good (its queue no longer exists); the stream cannot resume`);
    if (!this.eofSent) {
      this.peerGone = gone();
      this.destroy(this.peerGone);
      return;
    }
    clearTimeout(this.hold?.timer);
    this.hold = undefined;
    const pending = this.finalPending;
    this.finalPending = undefined;
    pending?.();
    if (this.eofReceived) return; // both ends done: the peer closed in order
    const check = setInterval(() => {
      if (this.destroyed || this.eofReceived) clearInterval(check);
      else if (Date.now() - this.watch.lastHeard > QUEUE_GONE_QUIET_MS) {
        clearInterval(check);
        this.peerGone = gone();
        this.destroy(this.peerGone);
      }
    }, QUEUE_GONE_QUIET_MS / 4);
    check.unref();
  }

  /** `resume`: the peer granted (so has) bytes up to peerConsumed: they need not be kept for retransmission. */
  private dropGranted(): void {
    if (!this.resumable) return;
    const granted = this.tx!.peerConsumed;
    let i = 0;
    while (i < this.sentChunks.length && this.sentChunks[i]!.offset + this.sentChunks[i]!.body.length <= granted) i++;
    if (i > 0) this.sentChunks.splice(0, i);
  }

  private touch(): void {
    if (this.idleMs <= 0) return;
    if (this.idleTimer) this.idleTimer.refresh();
    else this.idleTimer = setTimeout(() => this.emit('timeout'), this.idleMs).unref(); // as net: never keeps the process alive
  }
}

/** amqplib's error for a basic.nack (as opposed to the channel closing with the message unconfirmed). */
function isNack(err: Error): boolean {
  return err.message === 'message nacked';
}

/** `p`, or `onTimeout()`'s error after `ms`; a late result goes to `onLate`. */
function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error, onLate: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(onTimeout());
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        if (timedOut) onLate(v);
        else resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!timedOut) reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

function asTunnelError(err: unknown, code: 'ECONNRESET', context: string): TunnelError {
  if (err instanceof TunnelError) return err;
  return new TunnelError(code, `${context}: ${describeError(err)}`, { cause: err });
}

/**
 * The features actually in use: what both ends listed, minus `aead` unless
 * `auth` and `seq` are in use too (it needs the secret's nonces and the
 * offsets). Both ends see the same list, so both decide alike.
 */
function usable(agreed: ReadonlySet<Feature>): ReadonlySet<Feature> {
  const out = new Set(agreed);
  if (out.has('aead') && !(out.has('auth') && out.has('seq'))) out.delete('aead');
  // `resume` is built from presence (who is away), credit (what to keep) and seq (what to drop).
  if (out.has('resume') && !(out.has('presence') && out.has('credit') && out.has('seq'))) out.delete('resume');
  // `express` reorders by offset (seq) within a window (credit).
  if (out.has('express') && !(out.has('credit') && out.has('seq'))) out.delete('express');
  return out;
}

/** A handshake message's features as the proofs bind them: known tokens, sorted, comma separated. */
function featureText(headers: Record<string, unknown> | undefined): string {
  return [...peerFeatures(headers)].sort().join(',');
}
