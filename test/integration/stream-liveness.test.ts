/**
 * Liveness with v1 peers (issue 9, part 3) against the real broker: quiet for
 * the broker's log while idle, still quick when a busy peer dies, and a peer
 * that dies after our end is noticed. The peer is the raw amqplib v1 peer
 * that follows seed-protocol.md (v1peer.ts).
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import * as amqp from 'amqplib';
import { connect, type Connection } from '../../src/stream';
import { v1Listen, type V1Stream } from './v1peer';
import { AMQP_URL, errorOf, readAll, uniqueQueue } from './support';

const BROKER_LOG = process.env.RABBITMQ_LOG ?? '/var/log/rabbitmq/rabbit@localhost.log';

/** Lines of the broker's log that mention `queue` (each 405 answer to a passive declare is one). */
async function brokerLogLines(queue: string): Promise<number> {
  const text = await readFile(BROKER_LOG, 'utf8');
  return text.split('\n').filter((l) => l.includes(`'${queue}'`)).length;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing happened within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

describe('v1 liveness (real broker, raw v1 peer)', function () {
  this.timeout(60_000);
  let conn: Connection;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  before(async () => {
    conn = await connect(AMQP_URL);
  });
  after(() => conn.close());
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  /** A v1 listener on its own broker connection; `peer()` resolves with its first stream. */
  async function v1Listener(): Promise<{ queue: string; raw: amqp.ChannelModel; peer: Promise<V1Stream> }> {
    const queue = uniqueQueue('v1-live');
    const raw = await amqp.connect(AMQP_URL);
    raw.on('error', () => undefined);
    cleanups.push(() => raw.close().catch(() => undefined));
    let got!: (s: V1Stream) => void;
    const peer = new Promise<V1Stream>((r) => (got = r));
    await v1Listen(raw, queue, (s) => got(s));
    return { queue, raw, peer };
  }

  it("costs the broker's log only a few lines while a v1 stream stays idle (probes back off)", async function () {
    this.timeout(40_000);
    const { queue, peer } = await v1Listener();
    const sock = conn.connect(queue);
    cleanups.push(() => sock.destroy());
    await once(sock, 'connect');
    sock.resume();
    const p = await peer;
    // The probe asks for the peer's data queue; the broker logs each "exists" (405) answer.
    const before = await brokerLogLines(p.localQueue);
    await new Promise((r) => setTimeout(r, 16_000));
    const lines = (await brokerLogLines(p.localQueue)) - before;
    // Backing off from 0.5 s (probes at 0.5, 1.5, 3.5, 7.5 and 15.5 s): 5; every 0.5 s it was about 32.
    assert.ok(lines <= 6, `${lines} broker log lines in 16 s for one idle v1 stream`);
    assert.ok(lines >= 1, 'no probe at all: the idle stream is not watched');
  });

  it("notices within 2 s that a busy v1 peer's connection died", async () => {
    const { queue, raw, peer } = await v1Listener();
    const sock = conn.connect(queue);
    await once(sock, 'connect');
    sock.resume();
    const p = await peer;
    // Busy: the peer writes every 200 ms for 3 s (long enough for an idle backoff to have grown).
    for (let i = 0; i < 15; i++) {
      p.write(`tick ${i}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const failed = errorOf(sock);
    const diedAt = Date.now();
    await raw.close();
    const err = await within(failed, 5000, 'the stream after its v1 peer died');
    assert.equal(err.code, 'ECONNRESET');
    assert.ok(Date.now() - diedAt <= 2000, `noticed after ${Date.now() - diedAt} ms`);
  });

  it('notices a v1 listener that dies after our end, before sending its own', async () => {
    const { queue, raw, peer } = await v1Listener();
    const sock = conn.connect(queue, { allowHalfOpen: true });
    await once(sock, 'connect');
    sock.resume();
    sock.end('request');
    const p = await peer;
    await p.ended; // it read our end (and, as seed-protocol.md says, closed its data queue)
    const failed = errorOf(sock);
    const diedAt = Date.now();
    await raw.close();
    const err = await within(failed, 5000, 'the stream after its v1 peer died after our end');
    assert.equal(err.code, 'ECONNRESET');
    assert.match(err.message, /went away without closing the stream/);
    assert.ok(Date.now() - diedAt <= 2000, `noticed after ${Date.now() - diedAt} ms`);
  });

  it('does not reset a v1 listener that answers long after our end (it deleted its queue on reading it)', async () => {
    const { queue, peer } = await v1Listener();
    const sock = conn.connect(queue, { allowHalfOpen: true });
    const errors: Error[] = [];
    sock.on('error', (e) => errors.push(e));
    await once(sock, 'connect');
    const got = readAll(sock);
    sock.end('question');
    const p = await peer;
    await p.ended;
    await new Promise((r) => setTimeout(r, 2500)); // several probe rounds, its data queue gone
    p.write('late answer');
    await p.end();
    assert.equal((await got).toString(), 'late answer');
    assert.deepEqual(errors, []);
  });
});
