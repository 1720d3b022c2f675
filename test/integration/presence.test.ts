/**
 * The v2 `presence` feature (docs/protocol.md): one liveness ping per peer
 * broker connection per round instead of one per stream, and a peer
 * connection that dies resets every stream with it. Real broker; the peer's
 * broker connection is cut with the fault proxy.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Options } from 'amqplib';
import { connect, type Connection, type StreamSocket } from '../../src/stream';
import { PING_HEADER } from '../../src/stream/protocol';
import { FaultProxy } from './faultproxy';
import { AMQP_URL, errorOf, uniqueQueue } from './support';

const brokerPort = Number(new URL(AMQP_URL).port || 5672);

/** Counts the liveness pings a connection publishes, by the queue they go to. */
function countPings(conn: Connection): Map<string, number> {
  const counts = new Map<string, number>();
  const publish = conn.publish.bind(conn);
  conn.publish = (queue: string, body: Buffer, options: Options.Publish, confirmed?: (err: Error | null) => void): boolean => {
    if (options.headers?.[PING_HEADER] !== undefined) counts.set(queue, (counts.get(queue) ?? 0) + 1);
    return publish(queue, body, options, confirmed);
  };
  return counts;
}

describe('presence: liveness per peer connection (real broker)', function () {
  this.timeout(60_000);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function open(url = AMQP_URL, options: Parameters<typeof connect>[1] = {}): Promise<Connection> {
    // Without resumption (a peer's death is a reset at once; with it, after the grace: *-resume tests).
    const c = await connect(url, { resumeGrace: 0, ...options });
    cleanups.push(() => c.close());
    return c;
  }

  /** `n` idle streams from `client` to a listener on `listener`. */
  async function idleStreams(listener: Connection, client: Connection, n: number): Promise<StreamSocket[]> {
    const q = uniqueQueue('presence');
    const accepted: StreamSocket[] = [];
    const server = listener.createServer({}, (s) => {
      accepted.push(s);
      s.on('error', () => undefined);
      s.resume();
    });
    server.on('error', () => undefined);
    server.listen(q);
    await once(server, 'listening');
    cleanups.push(async () => {
      for (const s of accepted) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });
    const socks = Array.from({ length: n }, () => client.connect(q));
    for (const s of socks) cleanups.push(() => s.destroy());
    await Promise.all(socks.map((s) => once(s, 'connect')));
    for (const s of socks) s.resume();
    return socks;
  }

  it('pings each peer connection once per round, however many idle streams it has', async () => {
    const listener = await open();
    const client = await open();
    const socks = await idleStreams(listener, client, 20);
    for (const s of socks) assert.ok(s.features.has('presence'), 'presence was not negotiated');
    const pings = countPings(client);
    await new Promise((r) => setTimeout(r, 2200)); // about four liveness rounds of 500 ms
    const total = [...pings.values()].reduce((a, b) => a + b, 0);
    assert.equal(pings.size, 1, `pings went to ${pings.size} queues: ${[...pings.keys()].join(', ')}`);
    assert.ok(total >= 2 && total <= 6, `${total} pings in 2.2 s for 20 idle streams (one per stream per round would be about 80)`);
  });

  it('resets every stream with a peer connection that died, within 2 s', async () => {
    const fp = await new FaultProxy(brokerPort).start();
    cleanups.push(() => fp.close());
    const listener = await connect(fp.url(AMQP_URL), { resumeGrace: 0 });
    listener.on('close', () => undefined);
    cleanups.push(() => listener.close());
    const client = await open();
    const socks = await idleStreams(listener, client, 10);
    const failures = socks.map((s) => errorOf(s));
    const cutAt = Date.now();
    fp.cutAll();
    const errs = await Promise.all(failures);
    for (const e of errs) assert.equal(e.code, 'ECONNRESET');
    assert.ok(Date.now() - cutAt <= 2000, `noticed after ${Date.now() - cutAt} ms`);
  });

  it('keeps the per-stream ping with a peer that does not speak presence (0.1.0)', async () => {
    const listener = await open(AMQP_URL, { features: [] });
    const client = await open();
    // Counted from the start: a stream that connected well before the others may have had its
    // first ping already (and a v1 peer's next one waits twice as long) when the last one connects.
    const pings = countPings(client);
    const socks = await idleStreams(listener, client, 3);
    for (const s of socks) assert.equal(s.features.has('presence'), false);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(pings.size, 3, 'each stream to a 0.1.0 peer is pinged on its own');
  });
});
