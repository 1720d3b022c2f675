/**
 * A v1 peer written with raw amqplib calls that follows the steps of
 * ../shared/seed-protocol.md literally, the way the Go library amqp-stream
 * behaves: two channels per stream, empty-body handshake with reply-to,
 * one message per write, an empty body as EOF, control messages never
 * acked, no prefetch, headers ignored.
 */
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';

const QUEUE_OPTS = { durable: false, autoDelete: true, exclusive: true } as const;
const PUBLISH_OPTS = { mandatory: true, deliveryMode: 1 } as const;

export class V1Stream {
  /** Bodies received, in order (EOF not included). */
  readonly received: Buffer[] = [];
  /** Resolves when the peer's empty body (EOF) arrives. */
  readonly ended: Promise<void>;
  /** Every message the peer sent on our queue, with its headers, in order. */
  readonly raw: ConsumeMessage[] = [];
  private onEnd!: () => void;

  constructor(
    readonly inChannel: Channel,
    readonly outChannel: Channel,
    readonly localQueue: string,
    public remoteQueue: string,
  ) {
    this.ended = new Promise((resolve) => (this.onEnd = resolve));
  }

  /** @internal data message handler (the reader acks each message as it reads it). */
  deliver(msg: ConsumeMessage): void {
    this.raw.push(msg);
    this.inChannel.ack(msg);
    if (msg.content.length === 0) {
      this.onEnd();
      // After EOF the reader closes its incoming channel.
      this.inChannel.close().catch(() => undefined);
      return;
    }
    this.received.push(msg.content);
  }

  get data(): Buffer {
    return Buffer.concat(this.received);
  }

  /** One write = one message. */
  write(bytes: Buffer | string): void {
    this.outChannel.publish('', this.remoteQueue, Buffer.from(bytes), PUBLISH_OPTS);
  }

  /** Close: an empty body, then close the outgoing channel. */
  async end(): Promise<void> {
    this.outChannel.publish('', this.remoteQueue, Buffer.alloc(0), PUBLISH_OPTS);
    await this.outChannel.close().catch(() => undefined);
  }

  /** Close both channels (the exclusive auto-delete queue goes with them). */
  async close(): Promise<void> {
    await this.outChannel.close().catch(() => undefined);
    await this.inChannel.close().catch(() => undefined);
  }
}

/** Step 1 of both sides: a channel, a server-named exclusive queue, a manual-ack consumer. */
async function openIncoming(model: ChannelModel) {
  const inChannel = await model.createChannel();
  const q = await inChannel.assertQueue('', QUEUE_OPTS);
  let handler: ((msg: ConsumeMessage) => void) | undefined;
  const early: ConsumeMessage[] = [];
  await inChannel.consume(
    q.queue,
    (msg) => {
      if (!msg) return;
      if (handler) handler(msg);
      else early.push(msg);
    },
    { noAck: false, exclusive: true },
  );
  return {
    inChannel,
    queue: q.queue,
    /** Messages that arrived before the handler was set are handed over first, in order. */
    setHandler(fn: (msg: ConsumeMessage) => void) {
      handler = fn;
      for (const m of early.splice(0)) fn(m);
    },
  };
}

/** A v1 listener: declare + consume the control queue, answer each valid request. */
export async function v1Listen(model: ChannelModel, name: string, onStream: (s: V1Stream) => void): Promise<{ close(): Promise<void> }> {
  const ch = await model.createChannel();
  await ch.assertQueue(name, QUEUE_OPTS);
  await ch.consume(
    name,
    (msg) => {
      if (!msg) return;
      // Never acked, as in the Go listener. Malformed requests are left unacked too.
      const replyTo = msg.properties.replyTo as string | undefined;
      if (msg.content.length !== 0 || !replyTo) return;
      void (async () => {
        const own = await openIncoming(model);
        const outChannel = await model.createChannel();
        const stream = new V1Stream(own.inChannel, outChannel, own.queue, replyTo);
        own.setHandler((m) => stream.deliver(m));
        outChannel.publish('', replyTo, Buffer.alloc(0), { ...PUBLISH_OPTS, replyTo: own.queue });
        onStream(stream);
      })();
    },
    { noAck: false, exclusive: true, consumerTag: name },
  );
  return { close: () => ch.close().catch(() => undefined) };
}

/** A v1 client: own queue, request with reply-to, the first message names the server's queue. */
export async function v1Dial(model: ChannelModel, name: string): Promise<V1Stream> {
  const own = await openIncoming(model);
  const outChannel = await model.createChannel();
  const stream = new V1Stream(own.inChannel, outChannel, own.queue, '');
  const connected = new Promise<void>((resolve, reject) => {
    own.setHandler((msg) => {
      if (stream.remoteQueue) {
        stream.deliver(msg);
        return;
      }
      own.inChannel.ack(msg);
      const replyTo = msg.properties.replyTo as string | undefined;
      if (msg.content.length !== 0 || !replyTo) {
        reject(new Error('v1 handshake: the reply must have an empty body and a reply-to'));
        return;
      }
      stream.remoteQueue = replyTo;
      resolve();
    });
  });
  outChannel.publish('', name, Buffer.alloc(0), { ...PUBLISH_OPTS, replyTo: own.queue });
  await connected;
  return stream;
}
