/**
 * One AMQP connection shared by any number of stream servers and sockets,
 * like the Go library's Connection.
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
import { brokerConnectError, channelError } from './brokerErrors';
import { resolveSecret } from './auth';
import { resolveWindow } from './flow';
import { QueuePool } from './queuepool';
import { PROTOCOL_VERSION, type Feature } from './protocol';
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
  /** Largest message body a stream sends, in bytes (default 128 KiB). */
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
   * connection before its reader consumed them (default 1 MiB, from 64 KiB to
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
   * that has not heard from its peer for this long has the peer's queue
   * checked with a passive declare; when the queue is gone (the peer's
   * process or connection died) the stream is reset with ECONNRESET. Nothing
   * is sent to the peer, so v1 peers are unaffected.
   */
  livenessInterval?: number;
  /**
   * Tunnel secret (at least 16 bytes) for every server and stream of this
   * connection, unless a server or stream is given its own (`SocketOptions.secret`).
   * With a secret, both ends of a stream prove they know it (feature `auth`)
   * and a peer without it is refused. Never logged.
   */
  secret?: string | Buffer;
}

interface ResolvedOptions {
  logger: Logger;
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
}

/** Internal: what a socket or server needs from its connection. */
export interface Transport {
  readonly url: StreamUrl;
  readonly options: ResolvedOptions;
  /** Declare a server-named exclusive auto-delete queue and consume it. */
  openQueue(onMessage: (msg: ConsumeMessage | null) => void): Promise<ConsumerHandle>;
  /** Publish on the shared confirm channel; false means wait for `whenDrained`. */
  publish(queue: string, body: Buffer, options: Options.Publish, confirmed?: (err: Error | null) => void): boolean;
  whenDrained(cb: () => void): void;
  /** Route broker returns of messages sent to `queue` (a peer's data queue). */
  watchReturns(queue: string, onReturn: (msg: Message) => void): void;
  unwatchReturns(queue: string): void;
  openChannel(): Promise<Channel>;
  track(socket: StreamSocket): void;
  untrack(socket: StreamSocket): void;
}

export interface ConsumerHandle {
  queue: string;
  channel: Channel;
  consumerTag: string;
}

/** The v2 features this version implements and offers by default (each is added as it lands). */
export const DEFAULT_FEATURES: readonly Feature[] = ['credit', 'seq'];

const DEFAULTS = {
  heartbeat: 10,
  connectTimeout: 10_000,
  maxMessageSize: 128 * 1024,
  prefetch: 64,
  handshakeTimeout: 10_000,
  consumerChannels: 4,
  warmQueues: 4,
  livenessInterval: 500,
};

/** Most peer queues checked per liveness round; the rest wait for the next rounds. */
const PROBES_PER_ROUND = 256;
/** After a probe finds a peer's queue gone, wait this long for an end-of-stream already on its way. */
const VANISH_GRACE_MS = 150;
/** AMQP reply codes of a passive declare: the queue is gone, or it exists and is exclusive to its owner. */
const NOT_FOUND = 404;
const RESOURCE_LOCKED = 405;

/** What the broker's UI shows for a connection by default: which machine and process holds it. */
export function defaultConnectionName(): string {
  return `amqp-tunnel on ${os.hostname()} (pid ${process.pid})`;
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
  let model: ChannelModel;
  try {
    model = await amqp.connect(u.toString(), socketOptions);
  } catch (err) {
    throw brokerConnectError(err, parsed);
  }
  const conn = new Connection(model, parsed, { ...options, secret });
  try {
    await conn.init();
  } catch (err) {
    await model.close().catch(() => undefined);
    throw brokerConnectError(err, parsed);
  }
  return conn;
}

export class Connection extends EventEmitter implements Transport {
  readonly url: StreamUrl;
  readonly options: ResolvedOptions;
  private readonly model: ChannelModel;
  private readonly consumerChannelCount: number;
  private readonly warm: QueuePool;
  private pub?: ConfirmChannel;
  private pool: Channel[] = [];
  private next = 0;
  private drainWaiters: Array<() => void> = [];
  private returnRoutes = new Map<string, (msg: Message) => void>();
  private sockets = new Set<StreamSocket>();
  private servers = new Map<string, StreamServer>();
  private closing = false;
  private lost?: TunnelError;
  private readonly livenessInterval: number;
  private livenessTimer?: NodeJS.Timeout;
  private probing = false;
  private probeChannel?: Channel;
  private probeCursor = 0;

  /** @internal use `connect()` */
  constructor(model: ChannelModel, url: StreamUrl, options: ConnectOptions) {
    super();
    this.model = model;
    this.url = url;
    this.options = {
      logger: options.logger ?? silentLogger,
      maxMessageSize: options.maxMessageSize ?? DEFAULTS.maxMessageSize,
      prefetch: options.prefetch ?? DEFAULTS.prefetch,
      handshakeTimeout: options.handshakeTimeout ?? DEFAULTS.handshakeTimeout,
      protocolVersion: Math.min(options.protocolVersion ?? PROTOCOL_VERSION, PROTOCOL_VERSION),
      features: new Set(options.features ?? DEFAULT_FEATURES),
      secret: options.secret === undefined ? undefined : resolveSecret(options.secret),
      window: resolveWindow(options.window),
    };
    this.consumerChannelCount = Math.max(1, options.consumerChannels ?? DEFAULTS.consumerChannels);
    this.warm = new QueuePool(
      Math.max(0, Math.floor(options.warmQueues ?? DEFAULTS.warmQueues)),
      (dispatch) => this.declareQueue(dispatch),
      (handle) => this.pool.includes(handle.channel),
      this.options.logger,
    );
    this.livenessInterval = Math.max(0, options.livenessInterval ?? DEFAULTS.livenessInterval);
    model.on('error', (err: Error) => this.options.logger.warn(`broker connection error: ${describeError(err)}`));
    model.on('close', (err?: Error) => this.onModelClose(err));
    model.on('blocked', (reason: string) => this.options.logger.warn(`the broker blocked publishing: ${reason}`));
    model.on('unblocked', () => this.options.logger.info('the broker unblocked publishing'));
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

  /** True until `close()` is called or the broker connection is lost. */
  get isOpen(): boolean {
    return !this.closing && !this.lost;
  }

  /** Number of open stream sockets on this connection. */
  get socketCount(): number {
    return this.sockets.size;
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

  /** Close every socket and server, then the broker connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.warm.close();
    this.stopLiveness();
    for (const server of [...this.servers.values()]) server.close();
    // Like destroying net sockets: no local error, but v2 peers are told of the reset.
    for (const socket of [...this.sockets]) socket.destroy();
    if (!this.lost) await this.model.close().catch(() => undefined);
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
    if (this.livenessInterval > 0 && !this.livenessTimer && !this.closing && !this.lost) {
      this.livenessTimer = setInterval(() => void this.probeRound(), this.livenessInterval);
      this.livenessTimer.unref();
    }
  }

  untrack(socket: StreamSocket): void {
    this.sockets.delete(socket);
    if (this.sockets.size === 0) this.stopLiveness();
  }

  private stopLiveness(): void {
    clearInterval(this.livenessTimer);
    this.livenessTimer = undefined;
  }

  /**
   * One liveness round over the streams that have been quiet for a whole
   * interval. A dead peer process or connection takes its exclusive queues
   * with it. A v2 peer is sent a ping (mandatory: the broker returns it when
   * the queue is gone, and the socket resets). A v1 peer must not be sent
   * anything it would misread, so its queue is checked with a passive
   * declare instead: NOT_FOUND means gone, RESOURCE_LOCKED means it exists
   * (exclusive to the peer). Either reply closes the probe channel; the next
   * probe opens a new one.
   */
  private async probeRound(): Promise<void> {
    if (this.probing || this.closing || this.lost) return;
    this.probing = true;
    try {
      const now = Date.now();
      const all = [...this.sockets];
      const v1: Array<[StreamSocket, string]> = [];
      let probed = 0;
      for (let i = 0; i < all.length && probed < PROBES_PER_ROUND; i++) {
        const socket = all[(this.probeCursor + i) % all.length]!;
        const queue = socket._probeTarget(now, this.livenessInterval);
        if (!queue) continue;
        probed++;
        if (socket.protocolVersion >= 2) socket._ping(now);
        else v1.push([socket, queue]);
      }
      this.probeCursor = all.length > 0 ? (this.probeCursor + PROBES_PER_ROUND) % all.length : 0;
      for (const [socket, queue] of v1) {
        if (this.closing || this.lost) return;
        const probedAt = Date.now();
        if (!(await this.queueGone(queue))) continue;
        setTimeout(() => socket._peerVanished(probedAt), VANISH_GRACE_MS).unref();
      }
    } catch (err) {
      this.options.logger.debug(`liveness probe failed: ${describeError(err)}`);
    } finally {
      this.probing = false;
    }
  }

  /** True when the broker says `queue` does not exist. */
  private async queueGone(queue: string): Promise<boolean> {
    if (!this.probeChannel) {
      const ch = await this.model.createChannel();
      ch.on('error', () => undefined); // NOT_FOUND / RESOURCE_LOCKED close it: expected
      ch.on('close', () => {
        if (this.probeChannel === ch) this.probeChannel = undefined;
      });
      this.probeChannel = ch;
    }
    try {
      await this.probeChannel.checkQueue(queue);
      return false;
    } catch (err) {
      this.probeChannel = undefined;
      const code = (err as { code?: unknown }).code;
      if (code === NOT_FOUND) return true;
      if (code === RESOURCE_LOCKED) return false;
      throw err;
    }
  }

  async openChannel(): Promise<Channel> {
    this.assertUsable();
    const ch = await this.model.createChannel();
    ch.on('error', (err: Error) => this.options.logger.debug(`channel error: ${describeError(err)}`));
    return ch;
  }

  async openQueue(onMessage: (msg: ConsumeMessage | null) => void): Promise<ConsumerHandle> {
    this.assertUsable();
    return this.warm.take(onMessage) ?? this.declareQueue(onMessage);
  }

  /** Declare a server-named exclusive auto-delete queue and consume it (two broker round trips). */
  private async declareQueue(onMessage: (msg: ConsumeMessage | null) => void): Promise<ConsumerHandle> {
    await this.ensureChannels();
    const channel = this.pool[this.next++ % this.pool.length]!;
    const q = await channel.assertQueue('', { durable: false, autoDelete: true, exclusive: true });
    try {
      const { consumerTag } = await channel.consume(q.queue, onMessage, { noAck: false, exclusive: true });
      return { queue: q.queue, channel, consumerTag };
    } catch (err) {
      await channel.deleteQueue(q.queue).catch(() => undefined);
      throw channelError(err, this.url, q.queue, 'consume');
    }
  }

  publish(queue: string, body: Buffer, options: Options.Publish, confirmed?: (err: Error | null) => void): boolean {
    const pub = this.pub;
    if (!pub) {
      const err = this.lost ?? new TunnelError('ERR_AMQP_CLOSED', `the connection to ${this.url.safeUrl} is closed`);
      if (confirmed) process.nextTick(confirmed, err);
      return true;
    }
    return pub.publish('', queue, body, options, confirmed);
  }

  whenDrained(cb: () => void): void {
    if (!this.pub) {
      process.nextTick(cb);
      return;
    }
    this.drainWaiters.push(cb);
  }

  watchReturns(queue: string, onReturn: (msg: Message) => void): void {
    this.returnRoutes.set(queue, onReturn);
  }

  unwatchReturns(queue: string): void {
    this.returnRoutes.delete(queue);
  }

  private assertUsable(): void {
    if (this.lost) throw this.lost;
    if (this.closing) throw new TunnelError('ERR_AMQP_CLOSED', `the connection to ${this.url.safeUrl} is closed`);
  }

  private ensuring?: Promise<void>;

  /** Open (or re-open after a channel failure) the publish channel and the consumer pool. */
  private ensureChannels(): Promise<void> {
    this.assertUsable();
    if (this.pub && this.pool.length > 0) return Promise.resolve();
    this.ensuring ??= this.openChannels().finally(() => {
      this.ensuring = undefined;
    });
    return this.ensuring;
  }

  private async openChannels(): Promise<void> {
    const pub = await this.model.createConfirmChannel();
    pub.on('error', (err: Error) => this.options.logger.warn(`publish channel error: ${describeError(err)}`));
    pub.on('return', (msg: Message) => this.onReturn(msg));
    pub.on('drain', () => this.onDrain());
    pub.on('close', () => {
      if (this.pub === pub) this.pub = undefined;
      this.onDrain();
      this.failAll('the publish channel closed');
    });
    const pool: Channel[] = [];
    for (let i = 0; i < this.consumerChannelCount; i++) {
      const ch = await this.model.createChannel();
      // Per-consumer limit (global=false): a stream whose reader stops gets no
      // more than `prefetch` messages; the rest wait in its queue at the broker.
      await ch.prefetch(this.options.prefetch, false);
      ch.on('error', (err: Error) => this.options.logger.warn(`consumer channel error: ${describeError(err)}`));
      ch.on('close', () => {
        const i = this.pool.indexOf(ch);
        if (i >= 0) {
          this.pool = [];
          this.failAll('a consumer channel closed');
        }
      });
      pool.push(ch);
    }
    this.pub = pub;
    this.pool = pool;
  }

  private onReturn(msg: Message): void {
    const route = this.returnRoutes.get(msg.fields.routingKey);
    if (route) route(msg);
  }

  private onDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of waiters) cb();
  }

  private failAll(why: string): void {
    if (this.closing) return;
    const err = this.lost ?? new TunnelError('ECONNRESET', `stream reset: ${why} on ${this.url.safeUrl}`);
    for (const socket of [...this.sockets]) socket.destroy(err);
  }

  private onModelClose(cause?: Error): void {
    if (!this.closing) {
      this.lost = new TunnelError(
        'ECONNRESET',
        `lost the connection to the broker at ${this.url.safeUrl}${cause ? `: ${describeError(cause)}` : ''}`,
        { cause },
      );
      this.options.logger.warn(this.lost.message);
    }
    this.warm.close();
    this.stopLiveness();
    this.probeChannel = undefined;
    this.pub = undefined;
    this.pool = [];
    this.onDrain();
    const err = this.lost ?? new TunnelError('ECONNRESET', `the connection to ${this.url.safeUrl} was closed locally`);
    for (const socket of [...this.sockets]) socket.destroy(err);
    for (const server of [...this.servers.values()]) server._connectionLost(err);
    this.emit('close', this.lost);
  }
}
