/**
 * One end of the raw amqplib baseline, as its own process with its own
 * broker connection (noDelay on), driven by bench/cli.ts over IPC. This is
 * what an application gets from amqplib alone, without the tunnel:
 *
 * - `sink`: consume a queue (prefetch, one ack per message), hash the bodies,
 *   report when `total` bytes have arrived;
 * - `publish`: publish `total` bytes of the pattern in `body`-byte messages,
 *   waiting for 'drain' when publish() returns false;
 * - `echo`: consume a queue and publish every body to a reply queue;
 * - `rtt`: publish a `size`-byte request, wait for its echo, `n` times.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as amqp from 'amqplib';
import { patternAt } from './pattern';

type Cmd =
  | { cmd: 'sink'; queue: string; total: number; prefetch: number; noAck?: boolean }
  | { cmd: 'publish'; queue: string; total: number; body: number; confirm?: boolean }
  | { cmd: 'echo'; queue: string; replyQueue: string }
  | { cmd: 'rtt'; queue: string; replyQueue: string; size: number; n: number; warmup: number; confirm?: boolean; noAck?: boolean }
  | { cmd: 'stop' };

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const send = (m: unknown): void => void process.send?.(m);
const QUEUE_ARGS = { durable: false, autoDelete: true, arguments: { 'x-expires': 60_000 } };

async function main(): Promise<void> {
  const conn = await amqp.connect(url, { noDelay: true, clientProperties: { connection_name: `amqp-tunnel bench raw peer (pid ${process.pid})` } });
  const ch = await conn.createChannel();
  const cch = await conn.createConfirmChannel();
  process.on('message', (m: Cmd) => {
    run(m).catch((err: unknown) => send({ error: String(err instanceof Error ? err.stack : err) }));
  });
  send({ ready: true });

  async function run(m: Cmd): Promise<void> {
    switch (m.cmd) {
      case 'sink': {
        const c = await conn.createChannel();
        await c.prefetch(m.prefetch);
        await c.assertQueue(m.queue, QUEUE_ARGS);
        const h = createHash('sha256');
        let got = 0;
        const { consumerTag } = await c.consume(
          m.queue,
          (msg) => {
            if (!msg) return;
            h.update(msg.content);
            got += msg.content.length;
            if (!m.noAck) c.ack(msg);
            if (got >= m.total) {
              send({ done: true, bytes: got, sha: h.digest('hex') });
              void c.cancel(consumerTag).then(() => c.close());
            }
          },
          { noAck: Boolean(m.noAck) },
        );
        send({ ok: true });
        return;
      }
      case 'publish': {
        const c = m.confirm ? cch : ch;
        for (let off = 0; off < m.total; ) {
          const n = Math.min(m.body, m.total - off);
          let body = patternAt(off, n);
          if (body.length < n) body = Buffer.concat([body, patternAt(off + body.length, n - body.length)]);
          off += n;
          if (!c.publish('', m.queue, body)) await once(c, 'drain');
        }
        if (m.confirm) await cch.waitForConfirms();
        send({ ok: true });
        return;
      }
      case 'echo': {
        await ch.assertQueue(m.queue, QUEUE_ARGS);
        await ch.consume(m.queue, (msg) => {
          if (!msg) return;
          ch.publish('', m.replyQueue, msg.content);
          ch.ack(msg);
        });
        send({ ok: true });
        return;
      }
      case 'rtt': {
        const c = m.confirm ? await conn.createConfirmChannel() : await conn.createChannel();
        await c.assertQueue(m.replyQueue, QUEUE_ARGS);
        let next: (() => void) | undefined;
        const { consumerTag } = await c.consume(
          m.replyQueue,
          (msg) => {
            if (!msg) return;
            if (!m.noAck) c.ack(msg);
            next?.();
          },
          { noAck: Boolean(m.noAck) },
        );
        const body = Buffer.alloc(m.size, 120);
        const samples: number[] = [];
        for (let i = 0; i < m.warmup + m.n; i++) {
          const got = new Promise<void>((resolve) => (next = resolve));
          const t = process.hrtime.bigint();
          c.publish('', m.queue, body);
          await got;
          if (i >= m.warmup) samples.push(Number(process.hrtime.bigint() - t) / 1e6);
        }
        await c.cancel(consumerTag);
        await c.close();
        send({ ok: true, samples });
        return;
      }
      case 'stop':
        await conn.close();
        process.exit(0);
    }
  }
}

process.on('disconnect', () => process.exit(0));
main().catch((err: unknown) => {
  send({ error: String(err instanceof Error ? err.stack : err) });
  process.exit(1);
});
