/**
 * A forged connection request that names the data queue of a live stream
 * as its reply-to (found in review): it must be refused, and must not take
 * over that stream's broker returns (its dead-peer detection).
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as amqp from 'amqplib';
import { connect, type StreamSocket } from '../../src/stream';
import { FaultProxy } from './faultproxy';
import { AMQP_URL, uniqueQueue } from './support';

const brokerPort = Number(new URL(AMQP_URL).port || 5672);

describe('stream: a forged request naming a live stream\'s queue (real broker)', function () {
  this.timeout(30_000);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('is rejected without a stream, and the live stream still notices its client dying', async () => {
    const lines: string[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
    // Without resumption: the dying client is noticed at once.
    const l = await connect(AMQP_URL, { logger, resumeGrace: 0 });
    cleanups.push(() => l.close());
    const fp = await new FaultProxy(brokerPort).start();
    cleanups.push(() => fp.close());
    const c = await connect(fp.url(AMQP_URL), { resumeGrace: 0 });
    cleanups.push(() => c.close().catch(() => undefined));
    const q = uniqueQueue('forged');
    const accepted: StreamSocket[] = [];
    const server = l.listen(q, (s) => {
      s.on('error', () => undefined);
      accepted.push(s);
    });
    await once(server, 'listening');
    const client = c.connect(q);
    client.on('error', () => undefined);
    await once(client, 'connect');
    while (accepted.length < 1) await new Promise((r) => setTimeout(r, 10));
    const live = accepted[0]!;
    const clientQueue = new URLSearchParams(client.localAddress!.split('?')[1]).get('local_queue')!;

    const raw = await amqp.connect(AMQP_URL);
    cleanups.push(() => raw.close());
    const ch = await raw.createConfirmChannel();
    await new Promise<void>((resolve, reject) =>
      ch.publish('', q, Buffer.alloc(0), { replyTo: clientQueue, headers: { 'x-amqp-stream-version': 2, 'x-amqp-stream-features': 'credit,seq' } }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    const deadline = Date.now() + 3000;
    while (!lines.some((m) => m.includes('already the queue of a live stream')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(lines.some((m) => m.includes('already the queue of a live stream')), `not logged; log: ${lines.join(' | ')}`);
    assert.equal(accepted.length, 1, 'a stream was opened for the forged request');

    // The real client's broker connection dies: the live stream must still find out.
    const closed = new Promise<Error | null>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the live stream did not notice its client dying within 4 s')), 4000);
      live.once('close', () => {
        clearTimeout(t);
        resolve(live.errored);
      });
    });
    fp.cutAll();
    const err = (await closed) as (Error & { code?: string }) | null;
    assert.equal(err?.code, 'ECONNRESET');
  });
});
