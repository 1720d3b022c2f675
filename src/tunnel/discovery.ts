/**
 * Discovery: publishers make themselves known on the broker over plain AMQP
 * (no management plugin), and listers ask who is there. The wire rules are
 * in docs/protocol.md, section "Discovery"; in short:
 *
 *     exchange amqp-tunnel.discovery: topic, durable=false, auto-delete=false
 *     publisher: an exclusive server-named queue bound with "query"; answers
 *                each query (type "query", reply-to, correlation-id) with its
 *                info (type "info") to the reply-to queue; announces "up" and
 *                "down" (routing key "announce") when it starts and stops
 *     lister:    an exclusive server-named queue (bound with "announce" when
 *                it watches), publishes a query, collects the answers
 *
 * Answers come from live publishers only, so a publisher whose process or
 * connection died (its exclusive queue went with it) is never listed.
 *
 * Nothing here makes the broker log an error: the exchange is always
 * declared with the same arguments, no passive declares, no mandatory
 * publishes, and every channel is closed in order.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as os from 'node:os';
import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { describeError } from '../common/errors';
import { settleWithin } from '../common/timeout';
import { silentLogger, type Logger } from '../common/logger';
import { VERSION } from '../common/version';
import { DEBUG_PROTOCOLS, type DebugProtocol, type Detection } from './detect';

export type { DebugProtocol } from './detect';
import type { BrokerLink, Transport } from './transport';

export const DISCOVERY_EXCHANGE = 'amqp-tunnel.discovery';
/** Declared the same way by every publisher and lister (a different declare would be a broker-logged channel error). */
export const DISCOVERY_EXCHANGE_OPTIONS = { durable: false, autoDelete: false, internal: false } as const;
export const QUERY_KEY = 'query';
export const ANNOUNCE_KEY = 'announce';
/** The AMQP `type` property of each discovery message. */
export const MESSAGE_TYPES = { query: 'amqp-tunnel.query', info: 'amqp-tunnel.info', up: 'amqp-tunnel.up', down: 'amqp-tunnel.down' } as const;
/** Version of the info document. */
export const INFO_VERSION = 1;

/** What a publisher says about itself (JSON on the wire; never a secret). */
export interface PublisherInfo {
  v: number;
  /** The queue it listens on: what a forward connects to. Unique on a broker (an exclusive queue). */
  queue: string;
  /** The publishing machine's host name. */
  host: string;
  /** The publishing process (amqp-tunnel or VS Code's extension host). */
  pid: number;
  /** The published address on the publishing machine, "127.0.0.1:9229". */
  target: string;
  /** What listens on the target (see detect.ts). */
  protocol: DebugProtocol;
  /** "node.js/v22.3.0", "debugpy", "JDWP", "Delve". */
  runtime?: string;
  /** The script (Node's /json/list title) or program. */
  title?: string;
  /** The pid of the process listening on the target, when known. */
  targetPid?: number;
  /** When the publisher started, ISO 8601. */
  startedAt: string;
  /** Whether a forwarder must present a tunnel secret (the secret itself is never sent). */
  secretRequired: boolean;
  /** amqp-tunnel's version. */
  version: string;
}

/** What the channel of a broker link can do; a narrow view so the tunnel layer needs no amqplib types elsewhere. */
export type DiscoveryLink = Pick<BrokerLink, 'openChannel'>;

/** Build a publisher's info from its parts. */
export function publisherInfo(p: { queue: string; target: string; startedAt: Date; detection: Detection; secretRequired?: boolean }): PublisherInfo {
  const info: PublisherInfo = {
    v: INFO_VERSION,
    queue: p.queue,
    host: os.hostname(),
    pid: process.pid,
    target: p.target,
    protocol: p.detection.protocol,
    startedAt: p.startedAt.toISOString(),
    secretRequired: p.secretRequired ?? false,
    version: VERSION,
  };
  if (p.detection.runtime) info.runtime = p.detection.runtime;
  if (p.detection.title) info.title = p.detection.title;
  if (p.detection.pid !== undefined) info.targetPid = p.detection.pid;
  return info;
}

const str = (x: unknown): x is string => typeof x === 'string';

/** A discovery message body as info, or undefined when it is not a valid one (other versions' extra fields are kept out). */
export function parsePublisherInfo(body: Buffer | string): PublisherInfo | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!raw || typeof raw !== 'object') return undefined;
  const r = raw as Record<string, unknown>;
  if (typeof r.v !== 'number' || r.v < 1) return undefined;
  if (!str(r.queue) || !r.queue || !str(r.host) || !Number.isInteger(r.pid) || !str(r.target) || !str(r.startedAt) || !str(r.version)) return undefined;
  const protocol = DEBUG_PROTOCOLS.includes(r.protocol as DebugProtocol) ? (r.protocol as DebugProtocol) : 'unknown';
  const info: PublisherInfo = {
    v: r.v,
    queue: r.queue,
    host: r.host,
    pid: r.pid as number,
    target: r.target,
    protocol,
    startedAt: r.startedAt,
    secretRequired: r.secretRequired === true,
    version: r.version,
  };
  if (str(r.runtime)) info.runtime = r.runtime;
  if (str(r.title)) info.title = r.title;
  if (Number.isInteger(r.targetPid)) info.targetPid = r.targetPid as number;
  return info;
}

function encode(info: PublisherInfo): Buffer {
  return Buffer.from(JSON.stringify(info));
}

async function declareExchange(ch: Channel): Promise<void> {
  await ch.assertExchange(DISCOVERY_EXCHANGE, 'topic', DISCOVERY_EXCHANGE_OPTIONS);
}

/** Longest a stopping publisher waits for the broker to take its "down" announcement. */
const GOODBYE_TIMEOUT_MS = 1000;

/** Close a channel in order, ignoring a channel that is closed already. */
/** Longest we wait for the broker to confirm a channel's close: it reads nothing from a connection it blocked (an alarm), so the close is left to finish by itself. */
const CLOSE_WAIT_MS = 1000;

async function closeQuietly(ch: Channel | undefined): Promise<void> {
  if (!ch) return;
  await settleWithin(ch.close().catch(() => undefined), CLOSE_WAIT_MS, undefined);
}

// ---- the publisher's side ------------------------------------------------------

/**
 * A publisher's presence on one broker connection: answers queries with
 * `info()` and announces itself. Started after the publisher listens on
 * each (re)connection; stopped with a "down" announcement when the tunnel
 * stops, silently when the connection was lost.
 */
export class DiscoveryResponder {
  private channel?: ConfirmChannel;

  constructor(
    private readonly info: () => PublisherInfo,
    private readonly log: Logger = silentLogger,
  ) {}

  async start(link: DiscoveryLink): Promise<void> {
    // A confirm channel: amqplib may write a channel's close before a message published just before it, and "down" must arrive.
    const ch = await link.openChannel({ confirm: true });
    ch.on('close', () => {
      if (this.channel === ch) this.channel = undefined;
    });
    try {
      await declareExchange(ch);
      const { queue } = await ch.assertQueue('', { durable: false, autoDelete: true, exclusive: true });
      await ch.bindQueue(queue, DISCOVERY_EXCHANGE, QUERY_KEY);
      await ch.consume(queue, (msg) => this.onQuery(ch, msg), { noAck: true, exclusive: true });
    } catch (err) {
      await closeQuietly(ch);
      throw err;
    }
    this.channel = ch;
    this.announce(ch, 'up');
  }

  /** Stop answering; `goodbye` announces "down" first (an orderly stop, not a lost connection). */
  async stop(goodbye: boolean): Promise<void> {
    const ch = this.channel;
    this.channel = undefined;
    if (!ch) return;
    if (goodbye) {
      this.announce(ch, 'down');
      await settleWithin(ch.waitForConfirms().catch(() => undefined), GOODBYE_TIMEOUT_MS, undefined);
    }
    await closeQuietly(ch);
  }

  private announce(ch: ConfirmChannel, what: 'up' | 'down'): void {
    try {
      ch.publish(DISCOVERY_EXCHANGE, ANNOUNCE_KEY, encode(this.info()), { type: MESSAGE_TYPES[what], contentType: 'application/json', deliveryMode: 1 });
    } catch (err) {
      this.log.debug(`discovery: could not announce '${what}': ${describeError(err)}`);
    }
  }

  private onQuery(ch: ConfirmChannel, msg: ConsumeMessage | null): void {
    if (!msg) return; // the consumer was cancelled (the channel is closing)
    const { replyTo, correlationId, type } = msg.properties as { replyTo?: string; correlationId?: string; type?: string };
    if (type !== MESSAGE_TYPES.query || !replyTo) return;
    try {
      // Not mandatory: a lister that left already is no error anywhere.
      ch.publish('', replyTo, encode(this.info()), { type: MESSAGE_TYPES.info, correlationId, contentType: 'application/json', deliveryMode: 1 });
    } catch (err) {
      this.log.debug(`discovery: could not answer a query: ${describeError(err)}`);
    }
  }
}

// ---- the lister's side --------------------------------------------------------------

/** Default ms a lister collects answers. */
export const DEFAULT_LIST_WAIT_MS = 500;

function byQueue(a: PublisherInfo, b: PublisherInfo): number {
  return a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0;
}

/**
 * Ask who publishes on the broker: one query, answers collected for
 * `waitMs` (default 500 ms), sorted by queue. Opens and closes one channel.
 */
export async function listPublished(link: DiscoveryLink, options: { waitMs?: number } = {}): Promise<PublisherInfo[]> {
  const waitMs = options.waitMs ?? DEFAULT_LIST_WAIT_MS;
  // Consume on the consuming connection, publish the query on the publishing
  // one: a connection that publishes during a broker alarm is blocked, and the
  // tunnels' acks on the consuming connection must keep flowing.
  const ch = await link.openChannel();
  let pub: Channel | undefined;
  const found = new Map<string, PublisherInfo>();
  try {
    pub = await link.openChannel({ publish: true });
    await declareExchange(ch);
    const { queue } = await ch.assertQueue('', { durable: false, autoDelete: true, exclusive: true });
    const id = randomUUID();
    await ch.consume(
      queue,
      (msg) => {
        if (!msg || msg.properties.type !== MESSAGE_TYPES.info || msg.properties.correlationId !== id) return;
        const info = parsePublisherInfo(msg.content);
        if (info) found.set(info.queue, info);
      },
      { noAck: true, exclusive: true },
    );
    pub.publish(DISCOVERY_EXCHANGE, QUERY_KEY, Buffer.alloc(0), { type: MESSAGE_TYPES.query, replyTo: queue, correlationId: id, deliveryMode: 1 });
    await new Promise((resolve) => setTimeout(resolve, waitMs));
  } finally {
    await closeQuietly(pub);
    await closeQuietly(ch);
  }
  return [...found.values()].sort(byQueue);
}

export interface DiscoveryWatchOptions {
  /** Ms between query rounds (default 2000). */
  intervalMs?: number;
  /** Ms a round waits for answers before dropping publishers that did not answer (default 1000). */
  windowMs?: number;
  logger?: Logger;
}

interface Seen {
  info: PublisherInfo;
  seenAt: number;
}

/**
 * A live list of what is published on one broker, for a view that is
 * visible: announcements add and remove publishers at once, and a query
 * round every `intervalMs` drops those that stopped answering (killed, or
 * lost their broker connection) within `intervalMs + windowMs`.
 *
 * Events: 'change' (PublisherInfo[]) whenever the list or `error` changes.
 */
export class DiscoveryWatch extends EventEmitter {
  /** Why the broker cannot be asked right now (no secret in it), or undefined. */
  error?: string;
  private readonly entries = new Map<string, Seen>();
  private readonly intervalMs: number;
  private readonly windowMs: number;
  private readonly log: Logger;
  private channel?: Channel;
  /** The query goes out on the publishing connection (see listPublished). */
  private pubChannel?: Channel;
  private replyQueue?: string;
  private opening?: Promise<Channel>;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  private roundId?: string;
  private everListed = false;

  constructor(
    private readonly transport: Transport,
    options: DiscoveryWatchOptions = {},
  ) {
    super();
    this.intervalMs = options.intervalMs ?? 2000;
    this.windowMs = options.windowMs ?? 1000;
    this.log = options.logger ?? silentLogger;
  }

  /** What is published, sorted by queue. */
  list(): PublisherInfo[] {
    return [...this.entries.values()].map((s) => s.info).sort(byQueue);
  }

  /** True once a round has completed (so an empty list means "nothing published", not "not asked yet"). */
  get listed(): boolean {
    return this.everListed;
  }

  /** Start the rounds (the first at once). */
  start(): void {
    this.stopped = false;
    if (!this.timer && !this.running) void this.refresh();
  }

  /** A query round now; resolves when its answers are in. */
  refresh(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    clearTimeout(this.timer);
    this.timer = undefined;
    const started = Date.now();
    this.running ??= this.round().finally(() => {
      this.running = undefined;
      // Rounds start every intervalMs (the window is part of the interval).
      if (!this.stopped) this.timer = setTimeout(() => void this.refresh(), Math.max(0, this.intervalMs - (Date.now() - started)));
    });
    return this.running;
  }

  /** Stop the rounds and close the channel (the list is kept until `start()`). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const ch = this.channel;
    const pub = this.pubChannel;
    this.channel = undefined;
    this.pubChannel = undefined;
    await closeQuietly(pub);
    await closeQuietly(ch);
  }

  private async open(): Promise<Channel> {
    if (this.channel && this.pubChannel) return this.pubChannel;
    this.opening ??= (async () => {
      const link = await this.transport.acquire();
      const ch = await link.openChannel();
      let pub: Channel | undefined;
      // Either channel closing ends both: the next round opens a pair again.
      const drop = (): void => {
        if (this.channel === ch) this.channel = undefined;
        if (this.pubChannel === pub) this.pubChannel = undefined;
        void closeQuietly(pub);
        void closeQuietly(ch);
      };
      ch.on('close', drop);
      try {
        pub = await link.openChannel({ publish: true });
        pub.on('close', drop);
        await declareExchange(ch);
        const { queue } = await ch.assertQueue('', { durable: false, autoDelete: true, exclusive: true });
        await ch.bindQueue(queue, DISCOVERY_EXCHANGE, ANNOUNCE_KEY);
        await ch.consume(queue, (msg) => this.onMessage(msg), { noAck: true, exclusive: true });
        this.replyQueue = queue;
      } catch (err) {
        await closeQuietly(pub);
        await closeQuietly(ch);
        throw err;
      }
      if (this.stopped) {
        await closeQuietly(pub);
        await closeQuietly(ch);
        throw new Error('stopped');
      }
      this.channel = ch;
      this.pubChannel = pub;
      return pub;
    })().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async round(): Promise<void> {
    let ch: Channel;
    try {
      ch = await this.open();
    } catch (err) {
      if (this.stopped) return;
      const error = describeError(err);
      this.log.debug(`discovery: cannot list on ${this.transport.address}: ${error}`);
      if (error !== this.error || this.entries.size > 0) {
        this.error = error;
        this.entries.clear();
        this.emit('change', this.list());
      }
      return;
    }
    const hadError = this.error !== undefined;
    this.error = undefined;
    const started = Date.now();
    const id = randomUUID();
    this.roundId = id;
    try {
      ch.publish(DISCOVERY_EXCHANGE, QUERY_KEY, Buffer.alloc(0), { type: MESSAGE_TYPES.query, replyTo: this.replyQueue, correlationId: id, deliveryMode: 1 });
    } catch (err) {
      this.log.debug(`discovery: query failed: ${describeError(err)}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, this.windowMs));
    let changed = hadError || !this.everListed;
    for (const [queue, s] of this.entries) {
      if (s.seenAt < started) {
        this.entries.delete(queue);
        changed = true;
      }
    }
    this.everListed = true;
    if (changed) this.emit('change', this.list());
  }

  private onMessage(msg: ConsumeMessage | null): void {
    if (!msg) return;
    const type = msg.properties.type as string | undefined;
    const info = parsePublisherInfo(msg.content);
    if (!info) return;
    if (type === MESSAGE_TYPES.down) {
      const cur = this.entries.get(info.queue);
      // Only the publisher that said goodbye: a new one may hold the queue already.
      if (cur && cur.info.pid === info.pid && cur.info.host === info.host && cur.info.startedAt === info.startedAt) {
        this.entries.delete(info.queue);
        this.emit('change', this.list());
      }
      return;
    }
    if (type === MESSAGE_TYPES.info && msg.properties.correlationId !== this.roundId) return;
    if (type !== MESSAGE_TYPES.info && type !== MESSAGE_TYPES.up) return;
    const before = this.entries.get(info.queue);
    this.entries.set(info.queue, { info, seenAt: Date.now() });
    if (!before || JSON.stringify(before.info) !== JSON.stringify(info)) this.emit('change', this.list());
  }
}

/** "4s", "3m", "2h", "5d": how long ago `iso` was (a publisher's uptime in `list` and the Tunnels view). */
export function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}
