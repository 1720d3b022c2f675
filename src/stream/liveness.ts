/**
 * Liveness: noticing a peer that died without closing its stream
 * (docs/protocol.md, "Liveness"). One module for the whole concept: the
 * grace period, the shared "does this queue exist" check, the per-stream
 * schedule (with the v1 backoff) and the connection's probe rounds.
 *
 * A peer whose process or broker connection dies takes its exclusive queues
 * with it. A v2 peer is sent a ping (mandatory: the broker returns it when
 * the queue is gone). A v1 peer must not be sent anything it would misread,
 * so its queue is checked with a passive declare instead; RabbitMQ logs the
 * "alive" answer (RESOURCE_LOCKED) as an error, so those probes back off
 * while the stream stays idle.
 */
import type { Channel } from 'amqplib';
import { describeError } from '../common/errors';
import type { Logger } from '../common/logger';

/** After a probe finds a peer's queue gone, wait this long for an end-of-stream already on its way. */
export const VANISH_GRACE_MS = 150;
/** Most streams probed per round; the rest wait for the next rounds. */
export const PROBES_PER_ROUND = 256;
/** The longest wait between two v1 probes of an idle stream (each costs a line in the broker's log). */
export const V1_BACKOFF_MAX_MS = 30_000;

/** AMQP reply codes of a passive declare: the queue is gone, or it exists and is exclusive to its owner. */
const NOT_FOUND = 404;
const RESOURCE_LOCKED = 405;

/**
 * Does `queue` exist? A passive declare on `channel`: OK or RESOURCE_LOCKED
 * (exclusive to another connection: a publisher or a stream end holds it)
 * mean yes, NOT_FOUND means no. Any failed declare closes the channel, so
 * the caller opens a new one for the next check. Other errors are thrown.
 * Shared by the liveness probe and the editor's "is anything published" check.
 */
export async function queueExists(channel: Channel, queue: string): Promise<boolean> {
  try {
    await channel.checkQueue(queue);
    return true;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === NOT_FOUND) return false;
    if (code === RESOURCE_LOCKED) return true;
    throw err;
  }
}

/** Run `fn` after the grace period (for an end-of-stream that may be on its way); never holds the process. */
export function afterGrace(fn: () => void): void {
  setTimeout(fn, VANISH_GRACE_MS).unref();
}

/**
 * One stream's liveness schedule. A probe is due once the peer has been
 * quiet for the base interval; for v1 peers each further probe waits twice
 * as long as the one before, up to V1_BACKOFF_MAX_MS, and hearing from the
 * peer starts over (an idle v1 stream costs the broker's log at most one
 * line per 30 s; a busy one that goes quiet is probed after 0.5 s).
 */
export class PeerWatch {
  /** When the peer was last heard from (any message on our queue). */
  lastHeard = Date.now();
  private lastProbe = 0;
  private streak = 0;

  /** A message from the peer arrived. */
  heard(now = Date.now()): void {
    this.lastHeard = now;
    this.streak = 0;
  }

  /** True (and counted as probed) when a probe is due at `now`. */
  due(now: number, baseMs: number, backoff: boolean): boolean {
    const wait = backoff ? Math.min(baseMs * 2 ** this.streak, V1_BACKOFF_MAX_MS) : baseMs;
    if (now - Math.max(this.lastHeard, this.lastProbe) < wait) return false;
    this.lastProbe = now;
    if (backoff) this.streak++;
    return true;
  }
}

/** What a probe round needs of a stream (StreamSocket). */
export interface Probed {
  readonly protocolVersion: number;
  /** The queue to probe now, or undefined (see StreamSocket#_probeTarget). */
  _probeTarget(now: number, intervalMs: number): string | undefined;
  /** v2: send a mandatory ping to the peer's data queue. */
  _ping(now: number): void;
  /** With `presence`: the peer connection's presence queue, pinged once per round for all its streams. */
  readonly _presenceTarget: string | undefined;
  /** v1: the peer's queue was found gone by a check started at `probedAt`. */
  _queueGone(probedAt: number, check: (queue: string) => Promise<boolean>): void;
}

export interface ProbeHost {
  readonly logger: Logger;
  /** False once the connection is closing or lost. */
  usable(): boolean;
  /** The streams to look at. */
  streams(): Iterable<Probed>;
  /** A fresh channel for passive declares (each failed declare closes it). */
  openChannel(): Promise<Channel>;
  /** Publish a mandatory ping to a peer connection's presence queue (its return resets that peer's streams). */
  pingPresence(queue: string, now: number): void;
}

/** A connection's probe rounds: started with the first stream, stopped with the last. */
export class LivenessProbe {
  private timer?: NodeJS.Timeout;
  private probing = false;
  private cursor = 0;

  constructor(
    private readonly host: ProbeHost,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.intervalMs <= 0 || this.timer || !this.host.usable()) return;
    this.timer = setInterval(() => void this.round(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One round over the streams that are due (at most PROBES_PER_ROUND). */
  private async round(): Promise<void> {
    if (this.probing || !this.host.usable()) return;
    this.probing = true;
    try {
      const now = Date.now();
      const all = [...this.host.streams()];
      const v1: Array<[Probed, string]> = [];
      const pinged = new Set<string>();
      let probed = 0;
      for (let i = 0; i < all.length && probed < PROBES_PER_ROUND; i++) {
        const stream = all[(this.cursor + i) % all.length]!;
        const queue = stream._probeTarget(now, this.intervalMs);
        if (!queue) continue;
        // `presence`: one ping per peer connection per round, however many of its streams are quiet.
        const presence = stream._presenceTarget;
        if (presence !== undefined) {
          if (!pinged.has(presence)) {
            pinged.add(presence);
            probed++;
            this.host.pingPresence(presence, now);
          }
          continue;
        }
        probed++;
        if (stream.protocolVersion >= 2) stream._ping(now);
        else v1.push([stream, queue]);
      }
      this.cursor = all.length > 0 ? (this.cursor + PROBES_PER_ROUND) % all.length : 0;
      for (const [stream, queue] of v1) {
        if (!this.host.usable()) return;
        const probedAt = Date.now();
        if (await this.exists(queue)) continue;
        stream._queueGone(probedAt, (q) => this.exists(q));
      }
    } catch (err) {
      this.host.logger.debug(`liveness probe failed: ${describeError(err)}`);
    } finally {
      this.probing = false;
    }
  }

  /**
   * queueExists() on a probe channel of its own. Data queues are exclusive,
   * so the broker answers RESOURCE_LOCKED or NOT_FOUND, and either closes
   * the channel: every check gets a fresh one (a rare plain OK closes it too).
   */
  private async exists(queue: string): Promise<boolean> {
    const ch = await this.host.openChannel();
    ch.on('error', () => undefined); // NOT_FOUND / RESOURCE_LOCKED close it: expected
    let closed = false;
    ch.on('close', () => (closed = true));
    try {
      return await queueExists(ch, queue);
    } finally {
      if (!closed) ch.close().catch(() => undefined);
    }
  }
}
