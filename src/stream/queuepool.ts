/**
 * Data queues declared and consumed ahead of need (docs/protocol.md, "Stream
 * open in one broker round trip"). Declaring a server-named queue and
 * consuming it are two broker round trips; with a warm queue at hand a
 * client publishes its request at once and a listener answers at once, so
 * opening a stream costs one broker round trip instead of about five.
 *
 * Nothing changes on the wire: each stream still has its own server-named,
 * exclusive, auto-delete queue (v1 peers see nothing new). A warm queue
 * nobody has taken yet receives nothing, since nobody knows its name; the
 * broker deletes it with its connection.
 */
import type { ConsumeMessage } from 'amqplib';
import { describeError } from '../common/errors';
import type { Logger } from '../common/logger';
import type { ConsumerHandle } from './connection';

type OnMessage = (msg: ConsumeMessage | null) => void;

/** Declare and consume a fresh data queue whose deliveries go to `dispatch`. */
export type DeclareQueue = (dispatch: OnMessage) => Promise<ConsumerHandle>;

interface Warm {
  handle: ConsumerHandle;
  /** Set when a stream takes the queue; until then deliveries are strays. */
  onMessage?: OnMessage;
  gone: boolean;
}

export class QueuePool {
  private warm: Warm[] = [];
  private closed = false;
  /** Declarations on their way (they count towards `size`; close() waits for them, see `settled`). */
  private readonly pending = new Set<Promise<ConsumerHandle | undefined>>();
  /** Queues whose declaration finished after close(): the caller of `settled()` gets them. */
  private late: ConsumerHandle[] = [];

  /**
   * @param size queues to keep ready (0: none, every stream declares its own)
   * @param declare how a queue is made (the connection's declare + consume)
   * @param usable false for a queue whose channel has since failed (its consumer is gone)
   */
  constructor(
    readonly size: number,
    private readonly declare: DeclareQueue,
    private readonly usable: (handle: ConsumerHandle) => boolean,
    private readonly logger: Logger,
  ) {}

  /** Queues ready to be taken now. */
  get ready(): number {
    return this.warm.length;
  }

  /** A ready queue whose deliveries now go to `onMessage`, or undefined when none is ready. Refills in the background. */
  take(onMessage: OnMessage): ConsumerHandle | undefined {
    let taken: Warm | undefined;
    while ((taken = this.warm.shift()) && !this.usable(taken.handle));
    this.fill();
    if (!taken) return undefined;
    taken.onMessage = onMessage;
    return taken.handle;
  }

  /** Declare queues until `size` are ready or on their way. A failure (a closing connection) is retried only at the next take. */
  fill(): void {
    while (!this.closed && this.warm.length + this.pending.size < this.size) {
      const entry: Warm = { handle: undefined as unknown as ConsumerHandle, gone: false };
      const p: Promise<ConsumerHandle | undefined> = this.declare((msg) => this.deliver(entry, msg))
        .then(
          (handle) => {
            entry.handle = handle;
            if (this.closed) this.late.push(handle);
            else if (!entry.gone) this.warm.push(entry);
            return handle;
          },
          (err: unknown) => {
            this.logger.debug(`could not declare a warm data queue: ${describeError(err)}`);
            return undefined;
          },
        )
        .finally(() => this.pending.delete(p));
      this.pending.add(p);
    }
  }

  /** Forget every ready queue; returns them (resumable queues outlive the connection and must be deleted). */
  close(): ConsumerHandle[] {
    this.closed = true;
    const handles = this.warm.map((w) => w.handle);
    this.warm = [];
    return handles;
  }

  /**
   * After close(): resolves, once the declarations still on their way have
   * finished (or failed), with the queues they made. An orderly close waits
   * for these before it closes the broker connection, so no declaration
   * races the close and no resumable queue is left to expire on its own.
   */
  async settled(): Promise<ConsumerHandle[]> {
    await Promise.all([...this.pending]);
    const late = this.late;
    this.late = [];
    return late;
  }

  private deliver(entry: Warm, msg: ConsumeMessage | null): void {
    if (entry.onMessage) {
      entry.onMessage(msg);
      return;
    }
    if (msg === null) {
      // The broker cancelled the consumer of a queue nobody took: drop it.
      entry.gone = true;
      this.warm = this.warm.filter((w) => w !== entry);
      return;
    }
    // A message for a queue no stream uses yet (nobody should know its name): drop it.
    try {
      entry.handle.channel.reject(msg, false);
    } catch {
      // channel gone
    }
  }
}
