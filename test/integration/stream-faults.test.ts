/**
 * The stream core's failure cases (issue 8, cases 1-4, 7, 8, 12) against the
 * real broker at AMQP_URL, with the TCP fault proxy where the broker
 * connection itself must misbehave. Each test failed before its fix.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as amqp from 'amqplib';
import type { Channel } from 'amqplib';
import { connect, type Connection, type StreamServer, type StreamSocket } from '../../src/stream';
import type { Logger } from '../../src/common/logger';
import { FaultProxy } from './faultproxy';
import { AMQP_URL, brokerView, closeBrokerConnection, errorOf, readAll, uniqueQueue } from './support';

const brokerPort = Number(new URL(AMQP_URL).port || 5672);

/** `p`, or a failure naming `what` after `ms` (a missed bound fails fast with a clear message). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing happened within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, error: (m) => warnings.push(m), warn: (m) => warnings.push(m) };
}

describe('stream core failure cases (real broker, fault proxy)', function () {
  this.timeout(60_000);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function open(options: Parameters<typeof connect>[1] = {}, url = AMQP_URL): Promise<Connection> {
    // Without resumption: a lost broker connection resets streams (with it they are held: stream-resume.test.ts).
    const c = await connect(url, { resumeGrace: 0, ...options });
    cleanups.push(() => c.close());
    return c;
  }

  async function proxy(): Promise<FaultProxy> {
    const p = await new FaultProxy(brokerPort).start();
    cleanups.push(() => p.close());
    return p;
  }

  async function echoOn(c: Connection, queue: string): Promise<StreamServer> {
    const accepted: StreamSocket[] = [];
    const server = c.createServer({}, (s) => {
      accepted.push(s);
      s.on('error', () => undefined);
      s.pipe(s);
    });
    server.on('error', () => undefined); // some tests take the broker connection away
    server.listen(queue);
    await once(server, 'listening');
    cleanups.push(async () => {
      for (const s of accepted) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });
    return server;
  }

  // ---- case 1 ---------------------------------------------------------------

  it('refuses five concurrent connects to an unpublished queue, each with ECONNREFUSED at once (returns routed per stream)', async () => {
    const c = await open();
    const q = uniqueQueue('nobody-5');
    const started = Date.now();
    const errors = await within(
      Promise.all(Array.from({ length: 5 }, () => errorOf(c.connect(q)))),
      3000,
      'five concurrent connects to an unpublished queue',
    );
    assert.deepEqual(
      errors.map((e) => e.code),
      ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED'],
    );
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  });

  // ---- case 2 ---------------------------------------------------------------

  it('never leaves a write waiting for a drain that already happened (drain state per connection)', async () => {
    // 2,046 one-frame messages fill amqplib's channel buffer to its brink; the
    // 500-byte remainder is flushed on nextTick, after the write has called back,
    // and that publish is the one that reports backpressure.
    const c = await open({ maxMessageSize: 1000 });
    const q = uniqueQueue('drain');
    let received = 0;
    const serverGot = new Promise<number>((resolve) => {
      const server = c.createServer({}, (s) => {
        s.on('data', (b: Buffer) => (received += b.length));
        s.on('end', () => resolve(received));
        s.on('error', () => undefined);
      });
      server.listen(q);
      cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    });
    const sock = c.connect(q, { allowHalfOpen: true });
    sock.on('error', () => undefined);
    cleanups.push(() => sock.destroy());
    await once(sock, 'connect');
    const big = Buffer.alloc(2046 * 1000 + 500, 1);
    await new Promise<void>((r) => sock.write(big, () => r()));
    // The broker has taken the first write, so amqplib's 'drain' has come and gone.
    while (received < big.length) await new Promise((r) => setTimeout(r, 20));
    const written = new Promise<void>((r) => sock.write('x', () => r()));
    await within(written, 5000, 'the write after a drain');
    sock.end();
    assert.equal(await within(serverGot, 5000, 'the end of the stream'), big.length + 1);
  });

  // ---- case 3 ---------------------------------------------------------------

  it("keeps the other streams of the connection alive when a 'connect' listener or a queued write callback throws", async () => {
    const c = await open();
    const q = uniqueQueue('throwing');
    await echoOn(c, q);
    const bystander = c.connect(q);
    await once(bystander, 'connect');
    const bystanderErrors: Error[] = [];
    bystander.on('error', (e) => bystanderErrors.push(e));

    const thrower = c.connect(q);
    thrower.once('connect', () => {
      throw new Error('a bug in the connect listener');
    });
    const err = await errorOf(thrower);
    assert.equal(err.message, 'a bug in the connect listener');

    const writer = c.connect(q);
    writer.write('queued before connect', () => {
      throw new Error('a bug in the write callback');
    });
    assert.equal((await errorOf(writer)).message, 'a bug in the write callback');

    // The bystander, on the same consumer channel pool, still works.
    const got = readAll(bystander);
    bystander.end('still alive');
    assert.equal((await got).toString(), 'still alive');
    assert.deepEqual(bystanderErrors, []);
  });

  // ---- case 4 ---------------------------------------------------------------

  it('closes and rebuilds its channels as one unit after a consumer channel fails', async () => {
    const name = uniqueQueue('channels-conn');
    const log = recordingLogger();
    const c = await open({ connectionName: name, logger: log });
    const q = uniqueQueue('channels');
    await echoOn(c, q);
    const first = c.connect(q);
    await once(first, 'connect');
    const before = await brokerView(name);
    // A channel error on the stream's consumer channel (an ack the broker does not know).
    const failed = errorOf(first);
    const ch = (first as unknown as { consumer: { channel: Channel } }).consumer.channel;
    ch.ack({ fields: { deliveryTag: 999_999 } } as amqp.Message);
    assert.equal((await failed).code, 'ECONNRESET');
    // A new stream works, on a new set of channels, and the old set is gone.
    const second = c.connect(q);
    const got = readAll(second);
    second.end('after the failure');
    assert.equal((await got.catch((e: Error) => `${e.message}; log: ${log.warnings.join(' | ')}`)).toString(), 'after the failure');
    const after = await brokerView(name);
    assert.equal(after.channels, before.channels, `channels before ${before.channels}, after ${after.channels}`);
  });

  // ---- case 7 ---------------------------------------------------------------

  it('times out a connect whose queue setup never completes (broker not answering) with ETIMEDOUT', async () => {
    const fp = await proxy();
    const c = await open({ handshakeTimeout: 500 }, fp.url(AMQP_URL));
    fp.stall();
    const started = Date.now();
    const err = await within(errorOf(c.connect(uniqueQueue('stalled'))), 3000, 'a connect through a stalled broker link');
    assert.equal(err.code, 'ETIMEDOUT');
    assert.match(err.message, /did not answer within 500 ms/);
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
  });

  it('gives up accepting a stream whose queue setup never completes, and logs why', async () => {
    const fp = await proxy();
    const log = recordingLogger();
    // No warm queues: the listener must set up the stream's queue at the broker (a warm
    // queue, declared before the stall, would let it answer without any broker round trip).
    const listener = await open({ handshakeTimeout: 500, logger: log, warmQueues: 0 }, fp.url(AMQP_URL));
    const q = uniqueQueue('accept-stalled');
    const server = listener.createServer();
    server.listen(q);
    await once(server, 'listening');
    cleanups.push(() => server.close());
    // Requests still reach the listener, but nothing it sends reaches the broker.
    fp.stallUpstream();
    const client = await open({ handshakeTimeout: 5000 });
    const sock = client.connect(q);
    sock.on('error', () => undefined);
    const accepting = (): string | undefined => log.warnings.find((w) => w.includes('could not accept a stream'));
    const deadline = Date.now() + 3000;
    while (!accepting() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    assert.match(accepting() ?? 'nothing logged', /could not accept a stream on queue .*within 500 ms/);
    assert.equal(server.connectionCount, 0);
  });

  // ---- case 8 ---------------------------------------------------------------

  it('says the broker connection was lost because the TCP connection was reset', async () => {
    const fp = await proxy();
    const c = await connect(fp.url(AMQP_URL), { resumeGrace: 0 });
    cleanups.push(() => c.close());
    const q = uniqueQueue('lost-reset');
    const server = await open();
    await echoOn(server, q);
    const sock = c.connect(q);
    await once(sock, 'connect');
    const failed = errorOf(sock);
    fp.cutAll();
    const err = await within(failed, 5000, 'the stream after a cut');
    assert.equal(err.code, 'ECONNRESET');
    assert.match(err.message, /lost the connection to the broker at amqp:\/\/guest@127\.0\.0\.1:\d+.*: the network connection was reset/);
    assert.doesNotMatch(err.message, /channel/);
  });

  it('says the broker closed the connection (CONNECTION_FORCED) and gives its reason', async () => {
    const name = uniqueQueue('forced-conn');
    const c = await open({ connectionName: name });
    const q = uniqueQueue('lost-forced');
    await echoOn(c, q);
    const sock = c.connect(q);
    await once(sock, 'connect');
    const failed = errorOf(sock);
    await closeBrokerConnection(name, 'maintenance window');
    const err = await within(failed, 5000, 'the stream after close_connection');
    assert.equal(err.code, 'ECONNRESET');
    assert.match(err.message, /the broker closed the connection \(CONNECTION_FORCED\): .*maintenance window/);
  });

  it('says the broker stopped answering heartbeats', async function () {
    this.timeout(30_000);
    const fp = await proxy();
    const c = await connect(fp.url(AMQP_URL), { heartbeat: 1, resumeGrace: 0 });
    cleanups.push(() => c.close());
    const q = uniqueQueue('lost-heartbeat');
    const server = await open();
    await echoOn(server, q);
    const sock = c.connect(q);
    await once(sock, 'connect');
    const failed = errorOf(sock);
    // Only the broker's side goes quiet: the broker keeps hearing our heartbeats (it does not
    // close first), while we hear nothing from it.
    fp.stallDownstream();
    const err = await within(failed, 10_000, 'the stream after the link stalled');
    assert.equal(err.code, 'ECONNRESET');
    assert.match(err.message, /no heartbeat from the broker for \d+ s/);
  });

  // ---- case 12 --------------------------------------------------------------

  it('does not keep the process alive with its idle timer, as net does', async () => {
    const c = await open();
    const q = uniqueQueue('unref');
    await echoOn(c, q);
    const sock = c.connect(q);
    await once(sock, 'connect');
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    sock.setTimeout(60_000);
    assert.equal(timers(), before, 'setTimeout() added a ref\'d timer');
    sock.destroy();
  });

  it('calls the setTimeout() callback once however often it is set, without stacking listeners', async () => {
    const c = await open();
    const q = uniqueQueue('timeout-cb');
    await echoOn(c, q);
    const sock = c.connect(q);
    await once(sock, 'connect');
    let calls = 0;
    const onTimeout = (): void => {
      calls++;
    };
    for (let i = 0; i < 20; i++) sock.setTimeout(300, onTimeout);
    assert.equal(sock.listenerCount('timeout'), 1);
    await once(sock, 'timeout');
    await new Promise((r) => setImmediate(r));
    assert.equal(calls, 1);
    sock.setTimeout(0, onTimeout);
    assert.equal(sock.listenerCount('timeout'), 0);
    sock.destroy();
  });

  it("fails the stream instead of reporting 'finish' when the broker rejects (nacks) a data message", async () => {
    // A v1 listener whose data queue takes at most 1,000 bytes and rejects the
    // rest (x-overflow reject-publish): our 5,000-byte message is nacked, the
    // empty end-of-stream after it still fits and is acked.
    const raw = await amqp.connect(AMQP_URL);
    cleanups.push(() => raw.close().catch(() => undefined));
    const q = uniqueQueue('nack');
    const ch = await raw.createChannel();
    await ch.assertQueue(q, { exclusive: true, autoDelete: true });
    await ch.consume(
      q,
      (msg) => {
        if (!msg) return;
        void (async () => {
          const own = await ch.assertQueue('', {
            exclusive: true,
            autoDelete: true,
            arguments: { 'x-max-length-bytes': 1000, 'x-overflow': 'reject-publish' },
          });
          ch.sendToQueue(msg.properties.replyTo as string, Buffer.alloc(0), { replyTo: own.queue });
        })();
      },
      { noAck: true },
    );
    const c = await open();
    const sock = c.connect(q);
    let finished = false;
    sock.on('finish', () => (finished = true));
    sock.write(Buffer.alloc(5000, 1));
    sock.end();
    const err = await within(errorOf(sock), 5000, 'the stream after a nack');
    assert.equal(err.code, 'ECONNRESET');
    assert.match(err.message, /the broker did not take/);
    assert.equal(finished, false, "'finish' reported a transfer the broker dropped");
  });
});
