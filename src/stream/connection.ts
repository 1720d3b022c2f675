/**
 * A broker connection shared by any number of stream servers and sockets,
 * like the Go library's Connection.
 *
 * Two AMQP connections: one only publishes (the confirm channel, whose
 * returns and confirms it receives), the other declares, consumes and acks.
 * RabbitMQ's memory and disk alarms block connections that publish; with
 * one connection for both, a blocked broker also stopped reading our acks,
 * so the queues that raised the alarm could never drain (a deadlock). Split,
 * acks and deliveries keep flowing while publishing waits for the alarm to
 * clear, which is RabbitMQ's own advice. The broker lists them as
 * "NAME (publish)" and "NAME (consume)".
 *
 * Channel economy: a stream costs no channel of its own (the Go original
 * spends two per stream and dies after ~1,023). All streams publish on one
 * confirm channel and consume on a small pool of channels; the pool exists
 * only because amqplib serialises the RPCs (declare, consume, cancel) of a
 * channel, so a few channels let many streams open at once. Each listener
 * gets its own channel, because a failed exclusive declare closes the
 * channel it was made on.
 */
import { EventEmitter } from 'node:events';
import * as os from 'node:os';
import type * as tls from 'node:tls';
import * as amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Message, Options } from 'amqplib';
import { TunnelError, describeError } from '../common/errors';
import { silentLogger, type Logger } from '../common/logger';
import { RateLimitedLogger } from '../common/ratelimit';
import { settleWithin } from '../common/timeout';
import { brokerConnectError, brokerLostError, channelError } from './brokerErrors';
import { resolveSecret } from './auth';
import { LivenessProbe, afterGrace } from './liveness';
import { resolveWindow } from './flow';
import { QueuePool } from './queuepool';
import { PROTOCOL_VERSION, isPing, pingOptions, type Feature } from './protocol';
import { StreamServer, type ServerOptions } from './server';
import { StreamSocket, type SocketOptions } from './socket';
import { assertQueueName, parseStreamUrl, type StreamUrl } from './url';

export interface ConnectOptions {
  /** TLS: CA certificates to trust (PEM). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** TLS client certificate (PEM), for mutual TLS or SASL EXTERNAL. */
  cert?: string | Buffer;
  /** TLS client key (PEM). */
  key?: string | Buffer;
  /** Passphrase of the TLS client key. */
  passphrase?: string;
  /** TLS server name (SNI) when it differs from the URL's host. */
  servername?: string;
  /** Lowest TLS version to accept, for example 'TLSv1.2'. */
  minVersion?: tls.SecureVersion;
  /** Verify the broker's certificate (default true). */
  rejectUnauthorized?: boolean;
  /** Authenticate with SASL EXTERNAL (the TLS client certificate) instead of user/password. */
  externalAuth?: boolean;
  /** AMQP heartbeat in seconds (default 10; 0 disables). */
  heartbeat?: number;
  /** Name shown for this connection in the broker's management UI (default "amqp-tunnel on HOST (pid N)"). */
  connectionName?: string;
  /** Milliseconds to wait for the broker's TCP/TLS connection (default 10000). */
  connectTimeout?: number;
  /** Where connection-level events are logged (default: nowhere). */
  logger?: Logger;
  /** Largest message body a stream sends, in bytes (default 128 KiB, or one frame (frame_max - 8) when that is less). */
  maxMessageSize?: number;
  /** Messages a stream may have delivered but not yet read (default 64). */
  prefetch?: number;
  /** Milliseconds a client waits for the listener's answer (default 10000). */
  handshakeTimeout?: number;
  /** Highest protocol version to offer or accept (default 2; 1 behaves exactly like the Go library). */
  protocolVersion?: 1 | 2;
  /**
   * The optional v2 features to offer or accept (default: every feature this
   * version implements). A feature is used on a stream only when both ends
   * list it; pass [] to speak plain v2 (resets and pings) as amqp-tunnel 0.1.0 does.
   */
  features?: Feature[];
  /**
   * v2 `credit`: bytes a peer may have in flight to each stream of this
   * connection before its reader consumed them (default 8 MiB, from 64 KiB to
   * 16 MiB). It bounds what waits at the broker and in this process per stream.
   */
  window?: number;
  /** Channels in the consumer pool (default 4). */
  consumerChannels?: number;
  /**
   * Data queues kept declared and consumed ahead of need, so that opening or
   * accepting a stream costs one broker round trip (default 4; 0 declares
   * each stream's queue when it opens). Refilled in the background.
   */
  warmQueues?: number;
  /**
   * Milliseconds between liveness probes (default 500; 0 disables). A stream
   * that has not heard from its peer for this long is probed: a v2 peer is
   * sent a mandatory ping (the broker returns it when the peer's queue is
   * gone); a v1 peer's queue is checked with a passive declare, so nothing
   * reaches it, at intervals that back off while the stream stays idle.
   * A peer found gone (its process or broker connection died) resets the
   * stream with ECONNRESET. See docs/protocol.md, "Liveness".
   */
  livenessInterval?: number;
  /**
   * Tunnel secret (at least 16 bytes) for every server and stream of this
   * connection, unless a server or stream is given its own (`SocketOptions.secret`).
   * With a secret, both ends of a stream prove they know it (feature `auth`)
   * and a peer without it is refused. Never logged.
   */
  secret?: string | Buffer;
  /**
   * v2 `resume`: seconds that open streams are held while this end's (or the
   * peer's) broker connection is gone; the connection reconnects meanwhile and
   * the streams go on with nothing lost (default 30; 0 disables: a drop resets
   * every stream). Only streams whose peer also speaks `resume` are held.
   * Their data queues are then non-exclusive and expire at the broker this
   * long after nobody consumes them (docs/protocol.md, "resume").
   */
  resumeGrace?: number;
}

interface ResolvedOptions {
  logger: Logger;
  /** Where malformed input from the broker is logged: one line per kind of problem per minute. */
  problemLog: RateLimitedLogger;
  maxMessageSize: number;
  prefetch: number;
  handshakeTimeout: number;
  protocolVersion: number;
  /** The optional v2 features this end offers or accepts (docs/protocol.md, "Features"). */
  features: ReadonlySet<Feature>;
  /** The default tunnel secret of this connection's servers and streams. */
  secret?: Buffer;
  /** v2 `credit`: the window this end announces for its streams. */
  window: number;
  /** v2 `resume`: ms streams are held across a broker connection drop (0: `resume` is not offered). */
  resumeGraceMs: number;
}

/**
 * Internal: what a socket or server needs from its connection (named apart
 * from the tunnel layer's `Transport`, which hands out whole connections).
 */
export interface StreamHost {
  readonly url: StreamUrl;
  readonly options: ResolvedOptions;
  /** Declare a server-named exclusive auto-delete queue and consume it. */
  openQueue(onMessage: (msg: ConsumeMessage | null) => void): Promise<ConsumerHandle>;
  /**
   * Publish on the shared confirm channel, or (`express`, for a small data
   * message of a stream that uses the feature) on the express channel, where
   * `confirmed` runs once amqplib took the message. False means wait for `whenDrained`.
   */
  publish(queue: string, body: Buffer, options: Options.Publish, confirmed?: (err: Error | null) => void, express?: boolean): boolean;
  /** True while amqplib's publish buffer is full or too much published is unconfirmed: writers wait for `whenDrained`. */
  readonly needsDrain: boolean;
  /** Call `cb` once the publish buffer has room (at once when it has). */
  whenDrained(cb: () => void): void;
  /** This connection's presence queue (feature `presence`), while it has one. */
  readonly presenceQueue: string | undefined;
  /** Why publishing is stalled, when the broker blocked it (for timeout messages). */
  readonly blockedReason: string | undefined;
  /** Route broker returns of handshake requests whose reply-to is `ownQueue` (the client's data queue). */
  watchHandshakeReturns(ownQueue: string, onReturn: (msg: Message) => void): void;
  unwatchHandshakeReturns(ownQueue: string, onReturn: (msg: Message) => void): void;
  /** Route broker returns of messages sent to `peerQueue` (a peer's data queue, unique per stream). */
  watchReturns(peerQueue: string, onReturn: (msg: Message) => void): void;
  unwatchReturns(peerQueue: string, onReturn: (msg: Message) => void): void;
  /** True when a stream of this connection already sends to `peerQueue` (its returns are routed). */
  hasReturnRoute(peerQueue: string): boolean;
  openChannel(options?: { confirm?: boolean }): Promise<Channel>;
  track(socket: StreamSocket): void;
  untrack(socket: StreamSocket): void;
  /** Done with a data queue: cancel its consumer, or delete it (resumable), with `alsoDelete`. */
  releaseQueue(handle: ConsumerHandle | undefined, alsoDelete?: string[]): void;
  /** v2 `resume`: consume an existing data queue again after a reconnect. */
  reconsume(queue: string, onMessage: (msg: ConsumeMessage | null) => void, alive: () => boolean): Promise<ConsumerHandle>;
}

export interface ConsumerHandle {
  queue: string;
  channel: Channel;
  consumerTag: string;
  /** v2 `resume` offered: the queue outlives its connection (x-expires), so closing a stream deletes it. */
  resumable?: boolean;
}

/** The longest resume grace accepted (seconds): a day. */
export const MAX_RESUME_GRACE = 86_400;

/** `resumeGrace` checked: a TunnelError ERR_INVALID_ARG names the allowed range. */
export function resolveResumeGrace(seconds: number | undefined): number {
  if (seconds === undefined) return DEFAULTS.resumeGrace * 1000;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0 || seconds > MAX_RESUME_GRACE) {
    throw new TunnelError('ERR_INVALID_ARG', `resumeGrace must be a number of seconds from 0 (off) to ${MAX_RESUME_GRACE}, got ${String(seconds)}`);
  }
  return Math.round(seconds * 1000);
}

/** The v2 features this version implements and offers by default (each is added as it lands). */
export const DEFAULT_FEATURES: readonly Feature[] = ['presence', 'credit', 'seq', 'resume', 'express'];

const DEFAULTS = {
  heartbeat: 10,
  connectTimeout: 10_000,
  maxMessageSize: 128 * 1024,
  prefetch: 64,
  handshakeTimeout: 10_000,
  consumerChannels: 4,
  warmQueues: 4,
  livenessInterval: 500,
  resumeGrace: 30,
};


/**
 * Frames amqplib may hold for the shared publish channel before publish()
 * returns false and streams wait for 'drain' (amqplib's default is 1,024
 * frames: up to 128 MiB). Everything every stream publishes waits in this one
 * FIFO, so its size is how long a small message (a debugger's step) can wait
 * behind another stream's bulk data, and how much a stream without a credit
 * window (a v1 peer) can pile up in memory: 16 frames is 2 MiB, a few ms.
 */
const PUBLISH_BUFFER_FRAMES = 16;

/**
 * Bytes the publish channel may have sent that the broker has not confirmed
 * before streams wait ('drain' waits for confirms too). Unconfirmed bytes sit
 * in the socket buffers in front of the broker, one FIFO for every stream of
 * the connection: a debugger's small message waits behind all of them while
 * another stream runs a bulk transfer. Without this bound a stream's whole
 * credit window sat there. Measured (CLI pair, 256 MiB, 3 interleaved rounds,
 * 1-byte round trip p50 while another stream downloads / uploads, and the
 * bulk stream's rate): unbounded 13.3 / 13.2 ms at 310 / 332 MiB/s; 4 MiB
 * 13.1 / 10.9 ms; 2 MiB 3.7 / 2.0 ms at 283 / 305 MiB/s; 256 KiB 3.6 / 3.7 ms
 * but 230 MiB/s.
 */
const PUBLISH_IN_FLIGHT_BYTES = 2 * 1024 * 1024;

/**
 * The default largest message body: 128 KiB, but never more than one body
 * frame. amqplib splits a body into frames of frame_max - 8 bytes, and
 * RabbitMQ's default frame_max is 128 KiB, so a 128 KiB body went out as two
 * frames (131,064 + 8 bytes): an extra frame header, write, parse and
 * concatenation per message. One frame per message measured about 8% more
 * bulk throughput (library, 128 MiB, median of 3: 93 -> 101 MiB/s).
 */
function defaultMessageSize(model: ChannelModel): number {
  const frameMax = (model as unknown as { connection?: { frameMax?: number } }).connection?.frameMax ?? 0;
  return frameMax > 8 ? Math.min(DEFAULTS.maxMessageSize, frameMax - 8) : DEFAULTS.maxMessageSize;
}

/** What the broker's UI shows for a connection by default: which machine and process holds it. */
export function defaultConnectionName(): string {
  return `amqp-tunnel on ${os.hostname()} (pid ${process.pid})`;
}

/**
 * amqplib writes every frame its channels queued in one turn with its own
 * socket write; corking the socket for that pass sends them in one writev.
 */
function coalesceWrites(model: ChannelModel): ChannelModel {
  const c = (model as unknown as { connection?: { muxer?: { _readIncoming?: () => void }; stream?: { cork?: () => void; uncork?: () => void } } }).connection;
  const mux = c?.muxer;
  const stream = c?.stream;
  const pass = mux?._readIncoming;
  if (!mux || !stream || typeof pass !== 'function' || typeof stream.cork !== 'function' || typeof stream.uncork !== 'function') return model;
  mux._readIncoming = function () {
    stream.cork!();
    try {
      pass.call(mux);
    } finally {
      stream.uncork!();
    }
  };
  return model;
}

/**
 * Open a connection to the broker at `url` (an AMQP URL; a `server_queue`
 * parameter is ignored here). Rejects with a TunnelError that names the
 * problem: ECONNREFUSED, ENOTFOUND, ETIMEDOUT, ERR_AMQP_AUTH, ERR_AMQP_VHOST, ERR_AMQP_TLS.
 */
export async function connect(url: string, options: ConnectOptions = {}): Promise<Connection> {
  const parsed = parseStreamUrl(url);
  const secret = resolveSecret(options.secret);
  resolveWindow(options.window); // a bad option fails before anything is opened
  resolveResumeGrace(options.resumeGrace);
  if (secret && options.protocolVersion === 1) {
    throw new TunnelError('ERR_INVALID_ARG', 'a tunnel secret needs protocol v2: v1 (the Go library) cannot authenticate; drop protocolVersion: 1 or the secret');
  }
  const u = new URL(parsed.brokerUrl);
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(options.heartbeat ?? DEFAULTS.heartbeat));
  const socketOptions: Record<string, unknown> = {
    noDelay: true,
    timeout: options.connectTimeout ?? DEFAULTS.connectTimeout,
    clientProperties: { connection_name: options.connectionName ?? defaultConnectionName() },
  };
  for (const k of ['ca', 'cert', 'key', 'passphrase', 'servername', 'minVersion', 'rejectUnauthorized'] as const) {
    if (options[k] !== undefined) socketOptions[k] = options[k];
  }
  if (options.externalAuth) socketOptions.credentials = amqp.credentials.external();
  const base = options.connectionName ?? defaultConnectionName();
  const open = (role: 'publish' | 'consume'): Promise<ChannelModel> =>
    amqp.connect(u.toString(), { ...socketOptions, clientProperties: { connection_name: `${base} (${role})` } }).then(coalesceWrites);
  const [pub, sub] = await Promise.allSettled([open('publish'), open('consume')]);
  if (pub.status === 'rejected' || sub.status === 'rejected') {
    for (const r of [pub, sub]) if (r.status === 'fulfilled') await r.value.close().catch(() => undefined);
    throw brokerConnectError(pub.status === 'rejected' ? pub.reason : (sub as PromiseRejectedResult).reason, parsed);
  }
  const reopen = async (): Promise<{ publish: ChannelModel; consume: ChannelModel }> => {
    const [p, c] = await Promise.allSettled([open('publish'), open('consume')]);
    if (p.status === 'rejected' || c.status === 'rejected') {
      for (const r of [p, c]) if (r.status === 'fulfilled') await r.value.close().catch(() => undefined);
      throw brokerConnectError(p.status === 'rejected' ? p.reason : (c as PromiseRejectedResult).reason, parsed);
    }
    return { publish: p.value, consume: c.value };
  };
  const conn = new Connection({ publish: pub.value, consume: sub.value }, parsed, { ...options, secret }, reopen);
  try {
    await conn.init();
  } catch (err) {
    await Promise.all([pub.value.close().catch(() => undefined), sub.value.close().catch(() => undefined)]);
    throw brokerConnectError(err, parsed);
  }
  return conn;
}

/**
 * The channels a connection publishes and consumes on, opened and closed as
 * one unit: when one of them fails, the others are closed too and every
 * stream that used them is reset (their consumers or unconfirmed messages
 * are gone); the next stream opens a fresh set.
 */
interface ChannelSet {
  pub: ConfirmChannel;
  /** Feature `express`: small data messages, no confirm mode (docs/protocol.md). */
  express?: Channel;
  /** amqplib's buffer for `express` is full until its 'drain'. */
  expressFull: boolean;
  pool: Channel[];
  /** The presence queue (feature `presence`) and the channel that consumes it. */
  presence?: { channel: Channel; queue: string };
  next: number;
  /** Set once the set is torn down. */
  dead: boolean;
  /** Bytes published on `pub` that the broker has not confirmed yet (see PUBLISH_IN_FLIGHT_BYTES). */
  inFlight: number;
  /** amqplib's buffer for `pub` is full (publish() returned false) until its 'drain'. */
  bufferFull: boolean;
  /** A check for "drained" is scheduled (confirms come in bursts). */
  drainCheck: boolean;
}

export class Connection extends EventEmitter implements StreamHost {
  readonly url: StreamUrl;
  readonly options: ResolvedOptions;
  /** The AMQP connection that only publishes (the one a broker alarm blocks). */
  private pubModel: ChannelModel;
  /** The AMQP connection that declares, consumes and acks. */
  private model: ChannelModel;
  /** Opens a new pair of AMQP connections (v2 `resume`: reconnecting with streams held). */
  private readonly reopen?: () => Promise<{ publish: ChannelModel; consume: ChannelModel }>;
  /** v2 `resume`: set while the broker connection is gone and streams are held; new streams fail with it. */
  private suspended?: TunnelError;
  private reconnectTimer?: NodeJS.Timeout;
  private readonly consumerChannelCount: number;
  private channels?: ChannelSet;
  private ensuring?: Promise<ChannelSet>;
  private drainNeeded = false;
  private warm: QueuePool;
  private drainWaiters: Array<() => void> = [];
  private blocked?: string;
  private handshakeRoutes = new Map<string, (msg: Message) => void>();
  private returnRoutes = new Map<string, (msg: Message) => void>();
  private sockets = new Set<StreamSocket>();
  private servers = new Map<string, StreamServer>();
  private closing = false;
  private modelClosed = false;
  private lost?: TunnelError;
  private readonly heartbeat: number;
  private readonly liveness: LivenessProbe;

  /** @internal use `connect()` */
  constructor(
    models: { publish: ChannelModel; consume: ChannelModel },
    url: StreamUrl,
    options: ConnectOptions,
    reopen?: () => Promise<{ publish: ChannelModel; consume: ChannelModel }>,
  ) {
    super();
    this.pubModel = models.publish;
    this.model = models.consume;
    this.reopen = reopen;
    this.url = url;
    this.options = {
      logger: options.logger ?? silentLogger,
      problemLog: new RateLimitedLogger(options.logger ?? silentLogger),
      maxMessageSize: options.maxMessageSize ?? defaultMessageSize(models.publish),
      prefetch: options.prefetch ?? DEFAULTS.prefetch,
      handshakeTimeout: options.handshakeTimeout ?? DEFAULTS.handshakeTimeout,
      protocolVersion: Math.min(options.protocolVersion ?? PROTOCOL_VERSION, PROTOCOL_VERSION),
      features: new Set(options.features ?? DEFAULT_FEATURES),
      secret: options.secret === undefined ? undefined : resolveSecret(options.secret),
      window: resolveWindow(options.window),
      resumeGraceMs: resolveResumeGrace(options.resumeGrace),
    };
    const f = this.options.features as Set<Feature>;
    // `resume` needs its parts, and a grace period.
    if (this.options.resumeGraceMs === 0 || !f.has('presence') || !f.has('credit') || !f.has('seq')) f.delete('resume');
    this.heartbeat = options.heartbeat ?? DEFAULTS.heartbeat;
    this.consumerChannelCount = Math.max(1, options.consumerChannels ?? DEFAULTS.consumerChannels);
    this.warmSize = Math.max(0, Math.floor(options.warmQueues ?? DEFAULTS.warmQueues));
    this.warm = this.newWarmPool();
    this.liveness = new LivenessProbe(
      {
        logger: this.options.logger,
        usable: () => this.isOpen,
        streams: () => this.sockets,
        openChannel: () => this.model.createChannel(),
        pingPresence: (queue, now) => this.publish(queue, Buffer.alloc(0), { ...pingOptions(), timestamp: now }),
      },
      Math.max(0, options.livenessInterval ?? DEFAULTS.livenessInterval),
    );
    this.watchModels();
  }

  private readonly warmSize: number;

  private newWarmPool(): QueuePool {
    return new QueuePool(
      this.warmSize,
      (dispatch) => this.declareQueue(dispatch),
      (handle) => !!this.channels && !this.channels.dead && this.channels.pool.includes(handle.channel),
      this.options.logger,
    );
  }

  /** Listen to the current pair of AMQP connections (again after a reconnect; events of an old pair are ignored). */
  private watchModels(): void {
    const pub = this.pubModel;
    const sub = this.model;
    for (const [m, role] of [
      [pub, 'publish'],
      [sub, 'consume'],
    ] as const) {
      m.on('error', (err: Error) => this.options.logger.warn(`broker connection error (${role}): ${describeError(err)}`));
      m.on('close', (err?: Error) => {
        if (this.pubModel === pub && this.model === sub) this.onModelClose(err);
      });
    }
    pub.on('blocked', (reason: unknown) => {
      if (this.pubModel !== pub) return;
      this.blocked = String(reason);
      this.options.logger.warn(`the broker blocked publishing: ${this.blocked}; streams wait until it unblocks`);
      this.emit('blocked', this.blocked);
    });
    pub.on('unblocked', () => {
      if (this.pubModel !== pub) return;
      this.blocked = undefined;
      this.options.logger.info('the broker unblocked publishing');
      this.emit('unblocked');
    });
  }

  /** @internal */
  async init(): Promise<void> {
    await this.ensureChannels();
    this.warm.fill();
  }

  /** Data queues declared ahead of need and not yet taken by a stream (see `warmQueues`). */
  get warmQueueCount(): number {
    return this.warm.ready;
  }

  /** The broker address without password. */
  get address(): string {
    return this.url.safeUrl;
  }

  /** True until `close()` is called or the broker connection is lost (false while it reconnects with streams held). */
  get isOpen(): boolean {
    return !this.closing && !this.lost && !this.suspended;
  }

  /**
   * v2 `resume`: true while the broker connection is gone and this
   * connection reconnects, holding its resumable streams; 'reconnected'
   * (open again) or 'close' (the grace period ended) follows.
   */
  get reconnecting(): boolean {
    return !!this.suspended && !this.closing && !this.lost;
  }

  /** v2 `resume`: streams held now (their own broker connection or their peer's is away). */
  get heldStreams(): number {
    let n = 0;
    for (const s of this.sockets) if (s._held) n++;
    return n;
  }

  /** Number of open stream sockets on this connection. */
  get socketCount(): number {
    return this.sockets.size;
  }

  /** Why the broker blocks this connection's publishing (a memory or disk alarm), or undefined. */
  get blockedReason(): string | undefined {
    return this.blocked;
  }

  /** Open a stream to the listener on `queue` (net.connect's counterpart). */
  connect(queue: string, options: SocketOptions = {}, onConnect?: () => void): StreamSocket {
    assertQueueName(queue);
    const socket = new StreamSocket(options);
    if (onConnect) socket.once('connect', onConnect);
    socket._start(this, queue);
    return socket;
  }

  /** A server that is not listening yet; call `listen(queue)` on it. */
  createServer(options: ServerOptions = {}, onConnection?: (socket: StreamSocket) => void): StreamServer {
    const server = new StreamServer(this, options);
    if (onConnection) server.on('connection', onConnection);
    return server;
  }

  /** Listen on `queue` (net.createServer().listen()'s counterpart). */
  listen(queue: string, onConnection?: (socket: StreamSocket) => void): StreamServer {
    const server = this.createServer({}, onConnection);
    server.listen(queue);
    return server;
  }

  /**
   * Close every socket and server, then the broker connection. A broker that
   * does not answer the close (a stalled network) gets CLOSE_TIMEOUT_MS, then
   * the TCP connection is dropped: close() never hangs.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    const warm = this.warm.close();
    this.liveness.stop();
    for (const server of [...this.servers.values()]) server.close();
    // Like destroying net sockets: no local error, but v2 peers are told of the reset.
    for (const socket of [...this.sockets]) socket.destroy();
    if (this.suspended && !this.lost) {
      // Held streams end here; their queues expire at the broker.
      this.lost = this.suspended;
      this.emit('close', this.lost);
      return;
    }
    if (!this.lost) {
      // Resumable queues outlive the connection: delete them (a warm one nobody took, and the
      // deletes the destroyed streams started) before closing, so nothing is left on the broker.
      // Declarations of warm queues still on their way are waited for (bounded like the close itself).
      const late = await settleWithin(this.warm.settled(), CLOSE_TIMEOUT_MS, []);
      await Promise.all([this.deleteQueues([...warm, ...late].filter((h) => h.resumable).map((h) => h.queue)), ...this.deleting]);
      await Promise.all([closeWithin(this.pubModel, CLOSE_TIMEOUT_MS), closeWithin(this.model, CLOSE_TIMEOUT_MS)]);
    }
  }

  /** @internal */
  registerServer(queue: string, server: StreamServer): void {
    if (this.servers.has(queue)) {
      throw new TunnelError(
        'EADDRINUSE',
        `queue '${queue}' at ${this.url.safeUrl} already has a listener in this process — close it first or choose another queue name`,
      );
    }
    this.servers.set(queue, server);
  }

  /** @internal */
  unregisterServer(queue: string, server: StreamServer): void {
    if (this.servers.get(queue) === server) this.servers.delete(queue);
  }

  track(socket: StreamSocket): void {
    this.sockets.add(socket);
    this.liveness.start();
  }

  untrack(socket: StreamSocket): void {
    this.sockets.delete(socket);
    if (this.sockets.size === 0) this.liveness.stop();
  }

  /**
   * A channel of its own (for example for discovery); closing it is the
   * caller's job. By default on the consuming connection: declare, consume
   * and ack there, never publish (under a broker alarm, a connection that
   * publishes is blocked, and with it every ack on it, which is what lets
   * the alarm clear). `{ publish: true }` gives a channel on the publishing
   * connection for that.
   */
  openChannel(options?: { publish?: boolean }): Promise<Channel>;
  /** A confirm channel (on the publishing connection), when the caller must know that what it published reached the broker before it closes the channel. */
  openChannel(options: { confirm: true }): Promise<ConfirmChannel>;
  async openChannel(options: { confirm?: boolean; publish?: boolean } = {}): Promise<Channel> {
    this.assertUsable();
    // Publishing happens on the publishing connection, so an alarm never blocks our acks.
    const ch = options.confirm
      ? await this.pubModel.createConfirmChannel()
      : options.publish
        ? await this.pubModel.createChannel()
        : await this.model.createChannel();
    ch.on('error', (err: Error) => this.options.logger.debug(`channel error: ${describeError(err)}`));
    return ch;
  }

  async openQueue(onMessage: (msg: ConsumeMessage | null) => void): Promise<ConsumerHandle> {
    this.assertUsable();
    return this.warm.take(onMessage) ?? this.declareQueue(onMessage);
  }

  /**
   * Declare a server-named data queue and consume it (two broker round trips):
   * exclusive and auto-delete, or with `resume` offered, one that outlives
   * this connection for the grace period (x-expires) so a stream can resume.
   */
  private async declareQueue(onMessage: (msg: ConsumeMessage | null) => void): Promise<ConsumerHandle> {
    const set = await this.ensureChannels();
    const channel = set.pool[set.next++ % set.pool.length]!;
    const resumable = this.options.features.has('resume');
    const q = resumable
      ? await channel.assertQueue('', { durable: false, autoDelete: false, exclusive: false, arguments: { 'x-expires': this.options.resumeGraceMs } })
      : await channel.assertQueue('', { durable: false, autoDelete: true, exclusive: true });
    try {
      const { consumerTag } = await channel.consume(q.queue, onMessage, { noAck: false, exclusive: true });
      return { queue: q.queue, channel, consumerTag, resumable };
    } catch (err) {
      await channel.deleteQueue(q.queue).catch(() => undefined);
      throw channelError(err, this.url, q.queue, 'consume');
    }
  }

  /**
   * A stream is done with its queue: cancel the consumer (an exclusive
   * auto-delete queue goes with it) or, for a resumable queue, delete it,
   * along with `alsoDelete` (a peer's queue that expired in our eyes).
   */
  releaseQueue(handle: ConsumerHandle | undefined, alsoDelete: string[] = []): void {
    const queues = [...(handle?.resumable ? [handle.queue] : []), ...alsoDelete];
    if (handle && !handle.resumable) handle.channel.cancel(handle.consumerTag).catch(() => undefined);
    if (queues.length > 0) void this.deleteQueues(queues, handle?.channel);
  }

  private deleting = new Set<Promise<void>>();
  /** Resumable warm queues of a dropped broker connection, deleted once it is back. */
  private orphans: string[] = [];

  /** Delete queues (resumable data queues do not go with their connection); close() waits for these. */
  private deleteQueues(queues: string[], preferred?: Channel): Promise<void> {
    if (queues.length === 0) return Promise.resolve();
    const set = this.channels;
    const channel = preferred && set && !set.dead && set.pool.includes(preferred) ? preferred : set && !set.dead ? set.pool[0] : undefined;
    if (!channel) return Promise.resolve();
    const p = Promise.all(queues.map((q) => channel.deleteQueue(q).catch(() => undefined))).then(() => undefined);
    this.deleting.add(p);
    void p.finally(() => this.deleting.delete(p));
    return p;
  }

  /**
   * v2 `resume`: consume a stream's existing data queue again after a
   * reconnect. A broker that has not yet noticed our old connection still
   * lists its consumer: wait until it is gone (checked with a passive declare
   * on a throwaway channel, so a failure never closes a shared channel).
   * Rejects when the queue is gone (it expired) or `alive()` turns false.
   */
  async reconsume(queue: string, onMessage: (msg: ConsumeMessage | null) => void, alive: () => boolean): Promise<ConsumerHandle> {
    const set = await this.ensureChannels();
    for (;;) {
      if (!alive()) throw new TunnelError('ECONNRESET', 'the stream closed while it resumed');
      const ch = await this.model.createChannel();
      ch.on('error', () => undefined);
      let consumers: number;
      try {
        consumers = (await ch.checkQueue(queue)).consumerCount;
        await ch.close().catch(() => undefined);
      } catch (err) {
        if ((err as { code?: unknown }).code === 404) {
          throw new TunnelError('ECONNRESET', `the stream's queue ${queue} is gone from the broker (it expired before this end came back)`);
        }
        throw err;
      }
      if (consumers === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const channel = set.pool[set.next++ % set.pool.length]!;
    // Not exclusive: a refused exclusive consume would close a channel that other streams use.
    const { consumerTag } = await channel.consume(queue, onMessage, { noAck: false });
    return { queue, channel, consumerTag, resumable: true };
  }

  publish(queue: string, body: Buffer, options: Options.Publish, confirmed?: (err: Error | null) => void, express?: boolean): boolean {
    const set = this.channels;
    if (!set) {
      const err = this.lost ?? new TunnelError('ERR_AMQP_CLOSED', `the connection to ${this.url.safeUrl} is closed`);
      if (confirmed) process.nextTick(confirmed, err);
      return true;
    }
    if (express && set.express) {
      // No confirm will come: the message is as good as sent once amqplib has it.
      if (!set.express.publish('', queue, body, options)) {
        set.expressFull = true;
        this.drainNeeded = true;
      }
      if (confirmed) process.nextTick(confirmed, null);
      return !this.drainNeeded;
    }
    const size = body.length;
    set.inFlight += size;
    const ok = set.pub.publish('', queue, body, options, (err: Error | null) => {
      set.inFlight -= size;
      if (this.drainNeeded && !set.drainCheck && set.inFlight <= PUBLISH_IN_FLIGHT_BYTES) {
        // Waiters run outside amqplib's dispatch, once per burst of confirms.
        set.drainCheck = true;
        process.nextTick(() => {
          set.drainCheck = false;
          this.maybeDrained(set);
        });
      }
      if (confirmed) confirmed(err);
    });
    if (!ok) set.bufferFull = true;
    if (!ok || set.inFlight > PUBLISH_IN_FLIGHT_BYTES) this.drainNeeded = true;
    return !this.drainNeeded;
  }

  /** The publish buffer has room and the unconfirmed bytes are within bounds: release the writers. */
  private maybeDrained(set: ChannelSet): void {
    if (this.channels !== set || set.bufferFull || set.expressFull || set.inFlight > PUBLISH_IN_FLIGHT_BYTES) return;
    this.onDrain();
  }

  get needsDrain(): boolean {
    return this.drainNeeded;
  }

  whenDrained(cb: () => void): void {
    // The drain state belongs to the connection's publish buffer, not to the
    // stream that happened to fill it: a 'drain' that came while nobody
    // waited has already cleared it.
    if (!this.drainNeeded || !this.channels) {
      process.nextTick(cb);
      return;
    }
    this.drainWaiters.push(cb);
  }

  watchHandshakeReturns(ownQueue: string, onReturn: (msg: Message) => void): void {
    this.handshakeRoutes.set(ownQueue, onReturn);
  }

  unwatchHandshakeReturns(ownQueue: string, onReturn: (msg: Message) => void): void {
    if (this.handshakeRoutes.get(ownQueue) === onReturn) this.handshakeRoutes.delete(ownQueue);
  }

  watchReturns(peerQueue: string, onReturn: (msg: Message) => void): void {
    this.returnRoutes.set(peerQueue, onReturn);
  }

  hasReturnRoute(peerQueue: string): boolean {
    return this.returnRoutes.has(peerQueue);
  }

  unwatchReturns(peerQueue: string, onReturn: (msg: Message) => void): void {
    if (this.returnRoutes.get(peerQueue) === onReturn) this.returnRoutes.delete(peerQueue);
  }

  private assertUsable(): void {
    if (this.lost) throw this.lost;
    if (this.suspended) throw this.suspended;
    if (this.closing) throw new TunnelError('ERR_AMQP_CLOSED', `the connection to ${this.url.safeUrl} is closed`);
  }

  /** The current channel set, opened (again, after a channel failure) when there is none. */
  private ensureChannels(): Promise<ChannelSet> {
    this.assertUsable();
    if (this.channels) return Promise.resolve(this.channels);
    this.ensuring ??= this.openChannels().finally(() => {
      this.ensuring = undefined;
    });
    return this.ensuring;
  }

  private async openChannels(): Promise<ChannelSet> {
    const set: ChannelSet = { pub: undefined as unknown as ConfirmChannel, pool: [], next: 0, dead: false, inFlight: 0, bufferFull: false, expressFull: false, drainCheck: false };
    const opened: Channel[] = [];
    const watch = (ch: Channel, what: string): void => {
      opened.push(ch);
      let failure: Error | undefined;
      ch.on('error', (err: Error) => {
        failure = err;
        this.options.logger.warn(`${what} error: ${describeError(err)}`);
      });
      ch.on('close', () => this.onChannelClosed(set, what, failure));
    };
    // A publishing channel: its returns go to their streams, its 'drain' may release the writers.
    const publishing = <C extends Channel>(ch: C, what: string, hasRoom: () => void): C => {
      watch(ch, what);
      ch.on('return', (msg: Message) => this.onReturn(msg));
      ch.on('drain', () => {
        hasRoom();
        this.maybeDrained(set);
      });
      return ch;
    };
    try {
      const options = { highWaterMark: PUBLISH_BUFFER_FRAMES };
      set.pub = publishing(await this.pubModel.createConfirmChannel(options), 'publish channel', () => (set.bufferFull = false));
      if (this.options.features.has('express')) {
        set.express = publishing(await this.pubModel.createChannel(options), 'express channel', () => (set.expressFull = false));
      }
      for (let i = 0; i < this.consumerChannelCount; i++) {
        const ch = await this.model.createChannel();
        watch(ch, 'consumer channel');
        // Per-consumer limit (global=false): a stream whose reader stops gets no
        // more than `prefetch` messages; the rest wait in its queue at the broker.
        await ch.prefetch(this.options.prefetch, false);
        set.pool.push(ch);
      }
      if (this.options.features.has('presence')) {
        // One presence queue per connection: peers ping it (mandatory) instead of each stream's queue.
        const ch = await this.model.createChannel();
        watch(ch, 'presence channel');
        const q = await ch.assertQueue('', { durable: false, autoDelete: true, exclusive: true });
        await ch.consume(q.queue, () => undefined, { noAck: true, exclusive: true });
        set.presence = { channel: ch, queue: q.queue };
      }
      if (set.dead) throw new TunnelError('ECONNRESET', `a channel to ${this.url.safeUrl} closed while the channels were opened`);
      this.assertUsable();
    } catch (err) {
      // Nothing half-opened is left behind.
      set.dead = true;
      for (const ch of opened) ch.close().catch(() => undefined);
      throw err;
    }
    this.channels = set;
    return set;
  }

  /**
   * One channel of a set closed: close the rest and reset the streams that
   * used them. When the whole connection is going, its 'close' follows in
   * the same tick and names the real cause, so the streams are reset on
   * nextTick with the connection's error when there is one.
   */
  private onChannelClosed(set: ChannelSet, what: string, failure: Error | undefined): void {
    if (set.dead) return;
    set.dead = true;
    if (this.channels === set) this.channels = undefined;
    for (const ch of [set.pub, set.express, ...set.pool, set.presence?.channel]) {
      if (ch) ch.close().catch(() => undefined);
    }
    this.onDrain();
    const victims = [...this.sockets];
    process.nextTick(() => {
      if (this.closing || this.lost || this.suspended) return;
      const why = failure ? `the broker closed the ${what}: ${describeError(failure)}` : `the ${what} closed`;
      const err = new TunnelError('ECONNRESET', `stream reset: ${why} (${this.url.safeUrl})`, { cause: failure });
      for (const socket of victims) socket.destroy(err);
    });
  }

  private onReturn(msg: Message): void {
    // A returned connection request carries the client's own data queue as
    // reply-to: concurrent requests to one listener queue each find their socket.
    const replyTo = msg.properties.replyTo as unknown;
    const route =
      (typeof replyTo === 'string' ? this.handshakeRoutes.get(replyTo) : undefined) ?? this.returnRoutes.get(msg.fields.routingKey);
    if (route) route(msg);
    else if (isPing(msg)) this.presenceReturned(msg.fields.routingKey, Number(msg.properties.timestamp) || 0);
  }

  /** A presence ping came back: that peer connection is gone, and with it every stream we have with it. */
  private presenceReturned(queue: string, probedAt: number): void {
    for (const socket of this.sockets) {
      if (socket._presenceTarget === queue) afterGrace(() => socket._peerVanished(probedAt));
    }
  }

  /**
   * v2 `resume`: the broker connection dropped while resumable streams were
   * open. They are held (the others are reset as before), servers fail (the
   * tunnel listens again once 'reconnected'), and the connection reconnects
   * until the grace period ends.
   */
  private suspend(err: TunnelError): void {
    const graceS = this.options.resumeGraceMs / 1000;
    this.suspended = new TunnelError('ECONNRESET', `${err.message}; reconnecting (streams held for up to ${graceS} s)`, { cause: err });
    void closeWithin(this.pubModel, CLOSE_TIMEOUT_MS);
    void closeWithin(this.model, CLOSE_TIMEOUT_MS);
    // Unused warm queues outlive the connection too: deleted once it is back (else they expire).
    for (const h of this.warm.close()) if (h.resumable) this.orphans.push(h.queue);
    this.blocked = undefined;
    this.liveness.stop();
    if (this.channels) this.channels.dead = true;
    this.channels = undefined;
    let held = 0;
    for (const socket of [...this.sockets]) {
      if (socket._canHold()) {
        socket._holdOwn();
        held++;
      } else {
        socket.destroy(err);
      }
    }
    this.onDrain();
    for (const server of [...this.servers.values()]) server._connectionLost(err);
    this.options.logger.warn(`${err.message}; reconnecting, ${held} stream${held === 1 ? '' : 's'} held for up to ${graceS} s`);
    this.emit('reconnecting', { held, graceMs: this.options.resumeGraceMs });
    const deadline = Date.now() + this.options.resumeGraceMs;
    this.scheduleReconnect(deadline, RECONNECT_FIRST_MS);
  }

  private scheduleReconnect(deadline: number, delay: number): void {
    clearTimeout(this.reconnectTimer);
    const wait = Math.max(0, Math.min(delay, deadline - Date.now()));
    this.reconnectTimer = setTimeout(() => void this.reconnect(deadline, delay), wait);
  }

  private async reconnect(deadline: number, delay: number): Promise<void> {
    if (this.closing || this.lost || !this.suspended) return;
    if (this.heldStreams === 0) {
      this.giveUp(this.suspended.cause instanceof TunnelError ? this.suspended.cause : this.suspended);
      return;
    }
    if (Date.now() >= deadline) {
      const s = this.options.resumeGraceMs / 1000;
      this.giveUp(new TunnelError('ECONNRESET', `the broker connection did not come back within ${s} s (${this.url.safeUrl})`));
      return;
    }
    let models: { publish: ChannelModel; consume: ChannelModel };
    try {
      models = await this.reopen!();
    } catch (err) {
      this.options.logger.debug(`reconnect attempt failed: ${describeError(err)}`);
      this.scheduleReconnect(deadline, Math.min(delay * 2, RECONNECT_MAX_MS));
      return;
    }
    if (this.closing || this.lost) {
      void closeWithin(models.publish, CLOSE_TIMEOUT_MS);
      void closeWithin(models.consume, CLOSE_TIMEOUT_MS);
      return;
    }
    this.pubModel = models.publish;
    this.model = models.consume;
    this.modelClosed = false;
    this.watchModels();
    const suspended = this.suspended;
    this.suspended = undefined;
    try {
      await this.ensureChannels();
    } catch (err) {
      this.options.logger.debug(`reconnect attempt failed: ${describeError(err)}`);
      if (this.closing || this.lost) return;
      // Dropped again meanwhile: onModelClose suspended anew (with a new grace period).
      if (this.suspended) return;
      this.suspended = suspended;
      this.modelClosed = true;
      void closeWithin(models.publish, CLOSE_TIMEOUT_MS);
      void closeWithin(models.consume, CLOSE_TIMEOUT_MS);
      this.scheduleReconnect(deadline, Math.min(delay * 2, RECONNECT_MAX_MS));
      return;
    }
    this.warm = this.newWarmPool();
    this.warm.fill();
    void this.deleteQueues(this.orphans.splice(0));
    if (this.sockets.size > 0) this.liveness.start();
    const held = [...this.sockets].filter((s) => s._held);
    this.options.logger.info(`reconnected to the broker; resuming ${held.length} stream${held.length === 1 ? '' : 's'}`);
    for (const socket of held) socket._reattach();
    this.emit('reconnected');
  }

  /** The grace period ended (or nothing is held any more): the connection is lost for good. */
  private giveUp(err: TunnelError): void {
    clearTimeout(this.reconnectTimer);
    this.suspended = undefined;
    this.lost = err;
    this.options.logger.warn(err.message);
    for (const socket of [...this.sockets]) socket.destroy(err);
    this.emit('close', this.lost);
  }

  get presenceQueue(): string | undefined {
    return this.channels?.presence?.queue;
  }

  private onDrain(): void {
    this.drainNeeded = false;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of waiters) cb();
  }

  /**
   * Either AMQP connection closed: the Connection is gone (the other one is
   * closed too), unless streams can be held (v2 `resume`): then it
   * reconnects for up to the grace period and they resume.
   */
  private onModelClose(cause?: Error): void {
    if (this.lost || this.modelClosed) return;
    this.modelClosed = true;
    if (!this.closing && this.reopen && [...this.sockets].some((s) => s._canHold())) {
      this.suspend(brokerLostError(cause, this.url, this.heartbeat));
      return;
    }
    if (!this.closing) {
      this.lost = brokerLostError(cause, this.url, this.heartbeat);
      this.options.logger.warn(this.lost.message);
      void closeWithin(this.pubModel, CLOSE_TIMEOUT_MS);
      void closeWithin(this.model, CLOSE_TIMEOUT_MS);
    }
    this.warm.close();
    this.blocked = undefined;
    this.liveness.stop();
    if (this.channels) this.channels.dead = true;
    this.channels = undefined;
    this.onDrain();
    const err = this.lost ?? new TunnelError('ECONNRESET', `the connection to ${this.url.safeUrl} was closed locally`);
    for (const socket of [...this.sockets]) socket.destroy(err);
    for (const server of [...this.servers.values()]) server._connectionLost(err);
    this.emit('close', this.lost);
  }
}

/** v2 `resume`: first and longest wait between two reconnect attempts while streams are held. */
const RECONNECT_FIRST_MS = 200;
const RECONNECT_MAX_MS = 1000;

/** How long `close()` waits for the broker to answer before dropping the TCP connection. */
const CLOSE_TIMEOUT_MS = 2000;

/** model.close(), or after `ms` the TCP connection dropped (a broker that does not answer). */
async function closeWithin(model: ChannelModel, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      (model.connection as unknown as { stream?: { destroy(): void } }).stream?.destroy();
      resolve();
    }, ms);
  });
  await Promise.race([Promise.resolve().then(() => model.close()).catch(() => undefined), gaveUp]);
  clearTimeout(timer);
}
