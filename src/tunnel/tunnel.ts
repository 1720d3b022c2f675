/**
 * What publish and forward tunnels share: the state machine, reconnecting,
 * connection bookkeeping and stats.
 *
 *     starting --ok--> ready --broker lost--> reconnecting --ok--> ready
 *        |                                        (retries with capped backoff until stop())
 *        +--first attempt fails--> failed
 *     any state --stop()--> stopped
 *
 * A tunnel's first connection must succeed (a wrong password or an
 * unreachable broker is reported at once, not retried forever); after that,
 * losing the broker is never fatal: the tunnel retries until it is stopped.
 * One failing TCP connection or stream is logged with its own prefix
 * ("publish q > conn #7") and never affects the tunnel.
 */
import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectOptions } from '../stream';
import { TunnelError, describeError } from '../common/errors';
import { prefixed, silentLogger, type Logger } from '../common/logger';
import { Backoff, type BackoffOptions } from './backoff';
import { describePipeResult, pipe, type Pipe, type PipeResult } from './pipe';
import { brokerTransport, type BrokerLink, type Transport } from './transport';
import { redactUrl } from '../stream';
import { secretBytes } from '../stream/secure';

export type TunnelState = 'starting' | 'ready' | 'reconnecting' | 'failed' | 'stopped';

export interface TunnelOptions {
  /** The queue the publisher listens on and the forwarder connects to. */
  queue: string;
  /** Broker URL (used when no `transport` is given). */
  broker?: string;
  /** TLS, auth and stream options for the broker connection. */
  connectOptions?: ConnectOptions;
  /** A shared broker connection source; the tunnel does not close it on stop. */
  transport?: Transport;
  logger?: Logger;
  /** Shown in logs and stats (default "publish QUEUE" / "forward QUEUE"). */
  name?: string;
  backoff?: BackoffOptions;
  /** Ms that stop() waits for streams to end cleanly before destroying them (default 2000). */
  stopTimeoutMs?: number;
  /**
   * Tunnel secret (at least 16 bytes), the same on both sides: each stream's
   * two ends prove they know it and a peer without it is refused. Never logged.
   */
  secret?: string | Buffer;
}

export interface ConnectionStats {
  id: number;
  /** The TCP peer ("127.0.0.1:53122") or target. */
  peer: string;
  /** The stream's Go-style address (broker URL without password, queue names), when there is one. */
  stream?: string;
  tcpToStream: number;
  streamToTcp: number;
  startedAt: number;
  ageMs: number;
}

export interface TunnelStats {
  name: string;
  kind: 'publish' | 'forward';
  queue: string;
  state: TunnelState;
  activeConnections: number;
  totalConnections: number;
  /** Bytes from the local TCP side into streams, over the tunnel's life. */
  tcpToStream: number;
  /** Bytes from streams to the local TCP side. */
  streamToTcp: number;
  connections: ConnectionStats[];
  lastError?: string;
  lastErrorAt?: number;
  /**
   * Set while the broker blocks publishing (a memory or disk alarm): its
   * reason. Streams stall (acks and reads keep flowing) and resume with
   * nothing lost once it clears.
   */
  blocked?: string;
  /**
   * v2 `resume`: while reconnecting, the open connections whose streams are
   * held (they go on, with nothing lost, once the broker connection is back
   * within the grace period).
   */
  held?: number;
}

export interface StateChange {
  state: TunnelState;
  previous: TunnelState;
  error?: Error;
  /** Entering 'reconnecting' with v2 `resume`: how many streams are held rather than reset. */
  held?: number;
}

interface Tracked {
  id: number;
  peer: string;
  stream?: string;
  pipe: Pipe;
}

/**
 * Events: 'state' (StateChange), 'connection' (ConnectionStats),
 * 'connectionClosed' (ConnectionStats, PipeResult), 'blocked' (reason: the
 * broker blocks publishing) and 'unblocked'.
 */
export abstract class Tunnel extends EventEmitter {
  abstract readonly kind: 'publish' | 'forward';
  readonly queue: string;
  readonly name: string;
  /** Resolves when the tunnel is first ready; rejects when the first attempt fails. */
  readonly ready: Promise<void>;
  protected readonly log: Logger;
  protected readonly transport: Transport;
  /** The tunnel secret, checked once here; handed to each stream or server. */
  protected readonly secret?: Buffer;
  protected link?: BrokerLink;
  private readonly ownsTransport: boolean;
  private readonly backoff: Backoff;
  private readonly stopTimeoutMs: number;
  private _state: TunnelState = 'starting';
  private retryTimer?: NodeJS.Timeout;
  private nextId = 1;
  private live = new Map<number, Tracked>();
  private total = 0;
  private closedTcpToStream = 0;
  private closedStreamToTcp = 0;
  private lastError?: { message: string; at: number };
  private onLinkClose?: (err?: Error) => void;
  private onLinkBlocked?: (reason: string) => void;
  private onLinkUnblocked?: () => void;
  private onLinkReconnecting?: (info: { held: number; graceMs: number }) => void;
  /** v2 `resume`: the connection that reconnects with streams held (counted in stats while reconnecting). */
  private holding?: BrokerLink;
  private blocked?: string;
  private stopping?: Promise<void>;

  constructor(kind: 'publish' | 'forward', options: TunnelOptions) {
    super();
    this.queue = options.queue;
    this.name = options.name ?? `${kind} ${options.queue}`;
    this.log = prefixed(options.logger ?? silentLogger, `tunnel ${this.name} >`);
    this.backoff = new Backoff(options.backoff);
    this.stopTimeoutMs = options.stopTimeoutMs ?? 2000;
    this.secret = options.secret === undefined ? undefined : secretBytes(options.secret);
    if (options.transport) {
      this.transport = options.transport;
      this.ownsTransport = false;
    } else {
      const url = options.broker ?? 'amqp://guest:guest@localhost:5672';
      this.transport = brokerTransport(url, { ...options.connectOptions, logger: options.connectOptions?.logger ?? this.log }, redactUrl(url));
      this.ownsTransport = true;
    }
    // Started on the next tick, so a caller can attach listeners first.
    this.ready = new Promise<void>((resolve) => process.nextTick(resolve)).then(() => this.start());
    this.ready.catch(() => undefined);
  }

  get state(): TunnelState {
    return this._state;
  }

  stats(): TunnelStats {
    const now = Date.now();
    const connections = [...this.live.values()].map((t) => this.connectionStats(t, now));
    return {
      name: this.name,
      kind: this.kind,
      queue: this.queue,
      state: this._state,
      activeConnections: connections.length,
      totalConnections: this.total,
      tcpToStream: this.closedTcpToStream + connections.reduce((n, c) => n + c.tcpToStream, 0),
      streamToTcp: this.closedStreamToTcp + connections.reduce((n, c) => n + c.streamToTcp, 0),
      connections,
      lastError: this.lastError?.message,
      lastErrorAt: this.lastError?.at,
      blocked: this.blocked,
      held: this._state === 'reconnecting' && this.holding?.reconnecting ? this.holding.heldStreams : undefined,
    };
  }

  /** Stop: no new connections, end open streams with EOF (destroying them after a bound), release the broker. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  // ---- for subclasses ------------------------------------------------------

  /** Before the first broker connection (forward binds its local port here). */
  protected async prepare(): Promise<void> {}
  /** Set up on a fresh broker connection (publish listens here). */
  protected abstract setup(link: BrokerLink): Promise<void>;
  /** Drop what belonged to the lost broker connection. */
  protected abstract teardown(): void;
  /** Release local resources for good (forward closes its port). */
  protected async release(): Promise<void> {}

  /** Report that the broker side broke (a listener error, a lost connection): reconnect. */
  protected lost(err: Error): void {
    if (this._state !== 'ready') return;
    this.recordError(err);
    this.log.warn(`lost the broker side: ${describeError(err)}; reconnecting`);
    this.detachLink();
    this.teardown();
    this.setState('reconnecting', err);
    this.scheduleRetry();
  }

  /**
   * Pipe a TCP socket and a stream, with stats and a per-connection log
   * prefix. The open line stays short (the peer); the stream's full address
   * (broker URL, generated queue names) goes to debug and the stats.
   */
  protected track(tcp: net.Socket, stream: Duplex, peer: string, streamAddress?: string): void {
    const id = this.nextId++;
    this.total++;
    const p = pipe(tcp, stream);
    const t: Tracked = { id, peer, stream: streamAddress, pipe: p };
    this.live.set(id, t);
    const log = prefixed(this.log, `conn #${id}`);
    log.info(`open (${peer})`);
    if (streamAddress) log.debug(`stream ${streamAddress}`);
    this.emit('connection', this.connectionStats(t, Date.now()));
    void p.done.then((r: PipeResult) => {
      this.live.delete(id);
      this.closedTcpToStream += r.tcpToStream;
      this.closedStreamToTcp += r.streamToTcp;
      if (r.error) {
        log.warn(describePipeResult(r));
      } else {
        log.info(describePipeResult(r));
      }
      this.emit('connectionClosed', { ...this.connectionStats(t, Date.now()), tcpToStream: r.tcpToStream, streamToTcp: r.streamToTcp }, r);
    });
  }

  /** A per-connection logger for failures before a pipe exists. */
  protected connLog(): Logger {
    return prefixed(this.log, `conn #${this.nextId++}`);
  }

  protected recordError(err: Error | string): void {
    this.lastError = { message: typeof err === 'string' ? err : describeError(err), at: Date.now() };
  }

  // ---- internals -----------------------------------------------------------

  private connectionStats(t: Tracked, now: number): ConnectionStats {
    return {
      id: t.id,
      peer: t.peer,
      stream: t.stream,
      tcpToStream: t.pipe.tcpToStream,
      streamToTcp: t.pipe.streamToTcp,
      startedAt: t.pipe.startedAt,
      ageMs: now - t.pipe.startedAt,
    };
  }

  private setState(state: TunnelState, error?: Error): void {
    const previous = this._state;
    if (previous === state) return;
    this._state = state;
    const held = state === 'reconnecting' && this.holding?.reconnecting ? this.holding.heldStreams : undefined;
    if (state !== 'reconnecting') this.holding = undefined;
    const change: StateChange = { state, previous, error, held };
    this.emit('state', change);
  }

  private async start(): Promise<void> {
    if (this._state !== 'starting') return;
    try {
      await this.prepare();
      await this.attempt();
    } catch (err) {
      const e = err instanceof Error ? err : new TunnelError('ERR_AMQP_BROKER', String(err));
      if (this._state !== 'starting') return;
      this.recordError(e);
      // The caller reports the failure (the `ready` promise rejects); log it only for debugging.
      this.log.debug(`could not start: ${describeError(e)}`);
      this.detachLink();
      this.teardown();
      await this.release().catch(() => undefined);
      if (this.ownsTransport) await this.transport.close().catch(() => undefined);
      this.setState('failed', e);
      throw e;
    }
    if (this._state === 'starting') this.setState('ready');
  }

  /** One try: get a broker connection, set up on it. */
  private async attempt(): Promise<void> {
    const link = await this.transport.acquire();
    this.attachLink(link);
    await this.setup(link);
    if (!link.isOpen) throw new TunnelError('ECONNRESET', `the connection to ${this.transport.address} closed while the tunnel was setting up`);
  }

  private attachLink(link: BrokerLink): void {
    if (this.link === link) return;
    this.detachLink();
    this.link = link;
    const onClose = (err?: Error): void => {
      if (this.link !== link) return;
      this.lost(err ?? new TunnelError('ECONNRESET', `the connection to ${this.transport.address} closed`));
    };
    this.onLinkClose = onClose;
    link.once('close', onClose);
    this.onLinkBlocked = (reason) => this.setBlocked(reason);
    this.onLinkUnblocked = () => this.setBlocked(undefined);
    link.on('blocked', this.onLinkBlocked);
    link.on('unblocked', this.onLinkUnblocked);
    // v2 `resume`: the connection reconnects by itself, holding streams; the tunnel listens again once it is back.
    this.onLinkReconnecting = (info) => {
      if (this.link !== link) return;
      this.holding = link;
      this.lost(new TunnelError('ECONNRESET', `the connection to ${this.transport.address} was lost; reconnecting, ${info.held} stream${info.held === 1 ? '' : 's'} held for up to ${info.graceMs / 1000} s`));
    };
    link.on('reconnecting', this.onLinkReconnecting);
    this.setBlocked(link.blockedReason);
  }

  /** The broker blocks (reason) or unblocks (undefined) publishing on the tunnel's connection. */
  private setBlocked(reason: string | undefined): void {
    if (reason === this.blocked) return;
    this.blocked = reason;
    if (reason !== undefined) {
      this.log.warn(`blocked by the broker: ${reason}; streams wait until it clears`);
      this.emit('blocked', reason);
    } else {
      this.log.info('the broker no longer blocks publishing; streams go on');
      this.emit('unblocked');
    }
  }

  private detachLink(): void {
    if (this.link && this.onLinkClose) this.link.off('close', this.onLinkClose);
    if (this.link && this.onLinkBlocked) this.link.off('blocked', this.onLinkBlocked);
    if (this.link && this.onLinkUnblocked) this.link.off('unblocked', this.onLinkUnblocked);
    if (this.link && this.onLinkReconnecting) this.link.off('reconnecting', this.onLinkReconnecting);
    this.onLinkReconnecting = undefined;
    this.onLinkBlocked = undefined;
    this.onLinkUnblocked = undefined;
    if (this.blocked !== undefined) this.setBlocked(undefined);
    this.link = undefined;
    this.onLinkClose = undefined;
  }

  private scheduleRetry(): void {
    const delay = this.backoff.next();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.attempt().then(
        () => {
          if (this._state !== 'reconnecting') return;
          this.backoff.reset();
          this.log.info('reconnected; ready');
          this.setState('ready');
        },
        (err: unknown) => {
          if (this._state !== 'reconnecting') return;
          const e = err instanceof Error ? err : new Error(String(err));
          this.recordError(e);
          const locked = e instanceof TunnelError && e.code === 'EADDRINUSE';
          this.log.info(
            `reconnect attempt ${this.backoff.attempts} failed: ${describeError(e)}${locked ? ' (the old listener is probably still registered; retrying)' : ''}`,
          );
          this.detachLink();
          this.teardown();
          this.scheduleRetry();
        },
      );
    }, delay);
  }

  private async doStop(): Promise<void> {
    if (this._state === 'starting') await this.ready.catch(() => undefined);
    const wasFailed = this._state === 'failed';
    this.setState('stopped');
    clearTimeout(this.retryTimer);
    if (wasFailed) return;
    this.teardown();
    // release() stops accepting at once; its promise settles when the last local connection is gone.
    const released = this.release().catch(() => undefined);
    const pending = [...this.live.values()].map((t) => {
      t.pipe.end(this.stopTimeoutMs);
      return t.pipe.done;
    });
    await Promise.all([...pending, released]);
    this.detachLink();
    if (this.ownsTransport) await this.transport.close().catch(() => undefined);
    this.log.info('stopped');
  }
}
