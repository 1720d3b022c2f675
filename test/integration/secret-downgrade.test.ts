/**
 * Nobody on the way (a broker administrator, the network without TLS) may
 * strip `aead` from a handshake and so turn a secret tunnel into a
 * plaintext one (found in review): the proofs bind both feature lists.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Options } from 'amqplib';
import { connect, type Connection, type StreamSocket } from '../../src/stream';
import { AMQP_URL, uniqueQueue } from './support';

const secret = 'downgrade-test-secret-0123456789';
type Publish = Connection['publish'];

describe('stream: a handshake whose features were altered in transit (real broker)', function () {
  this.timeout(30_000);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  /** Make `conn`'s messages to `queue` lose the `aead` token on the way to the broker. */
  function stripAead(conn: Connection, queue: string | (() => string | undefined), anyQueue = false): void {
    const publish: Publish = conn.publish.bind(conn);
    conn.publish = ((q: string, body: Buffer, options: Options.Publish, cb?: (err: Error | null) => void) => {
      const target = typeof queue === 'string' ? queue : queue();
      const h = options?.headers as Record<string, unknown> | undefined;
      if ((anyQueue || q === target) && typeof h?.['x-amqp-stream-features'] === 'string') {
        h['x-amqp-stream-features'] = (h['x-amqp-stream-features'] as string).replace(/,?aead/, '');
      }
      return publish(q, body, options, cb);
    }) as Publish;
  }

  async function pair(tamper: (l: Connection, c: Connection, q: string) => void): Promise<{ client: StreamSocket; accepted: StreamSocket[] }> {
    const l = await connect(AMQP_URL, { secret });
    cleanups.push(() => l.close());
    const c = await connect(AMQP_URL, { secret });
    cleanups.push(() => c.close());
    const q = uniqueQueue('downgrade');
    const accepted: StreamSocket[] = [];
    const server = l.listen(q, (s) => {
      s.on('error', () => undefined);
      accepted.push(s);
    });
    await once(server, 'listening');
    tamper(l, c, q);
    const client = c.connect(q);
    return { client, accepted };
  }

  it('untouched, both ends use aead', async () => {
    const { client } = await pair(() => undefined);
    await once(client, 'connect');
    assert.ok(client.features.has('aead'), `features in use: ${[...client.features].join(',')}`);
  });

  it('fails the stream (no plaintext stream) when aead was stripped from the request', async () => {
    const { client, accepted } = await pair((_l, c, q) => stripAead(c, q));
    const [err] = (await once(client, 'error')) as [Error & { code?: string }];
    assert.equal(err.code, 'ERR_AMQP_SECRET');
    assert.equal(accepted.length, 0, 'the listener handed on a stream without encryption');
  });

  it('fails the stream when aead was stripped from the reply', async () => {
    // Every handshake reply of this listener loses aead (only handshakes carry a features header).
    const { client, accepted } = await pair((l) => stripAead(l, () => undefined, true));
    const [err] = (await once(client, 'error')) as [Error & { code?: string }];
    assert.equal(err.code, 'ERR_AMQP_SECRET');
    assert.equal(accepted.length, 0);
  });
});
