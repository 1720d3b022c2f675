/**
 * A peer that goes wrong AFTER sending its own end (found in review): the
 * other side has read a clean end and is still sending (a debugger client
 * sent its request and FIN, the target is answering). The transfer is then
 * broken and must be reported as broken, not left open for ever.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Connection, type StreamSocket } from '../../src/stream';
import { FaultProxy } from './faultproxy';
import { AMQP_URL, uniqueQueue } from './support';

const brokerPort = Number(new URL(AMQP_URL).port || 5672);

describe('stream: a peer that aborts or dies after its own end (real broker)', function () {
  this.timeout(30_000);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  /** A listener stream that has read its client's clean end; `c` is the client's connection. */
  async function endedPair(clientUrl = AMQP_URL): Promise<{ server: StreamSocket; client: StreamSocket; c: Connection }> {
    // Without resumption: a dead peer is noticed at once (with it, after the grace: stream-resume.test.ts).
    const l = await connect(AMQP_URL, { resumeGrace: 0 });
    cleanups.push(() => l.close());
    const c = await connect(clientUrl, { resumeGrace: 0 });
    cleanups.push(() => c.close().catch(() => undefined));
    const q = uniqueQueue('afterend');
    let accept!: (s: StreamSocket) => void;
    const accepted = new Promise<StreamSocket>((resolve) => (accept = resolve));
    const srv = l.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      accept(s);
    });
    srv.listen(q);
    await once(srv, 'listening');
    const client = c.connect(q, { allowHalfOpen: true });
    client.on('error', () => undefined);
    await once(client, 'connect');
    const server = await accepted;
    server.resume();
    const ended = once(server, 'end');
    client.end();
    await ended;
    return { server, client, c };
  }

  function closedWith(s: StreamSocket, ms: number): Promise<Error | undefined> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the stream was still open after ${ms} ms (it would hang for ever)`)), ms);
      s.once('close', () => {
        clearTimeout(timer);
        resolve((s.errored as Error | null) ?? undefined);
      });
    });
  }

  it('tells the other side at once when the peer is destroyed with an error after its end (a reset, not silence)', async () => {
    const { server, client } = await endedPair();
    const closed = closedWith(server, 3000);
    client.destroy(new Error('the TCP client reset the connection'));
    const err = (await closed) as (Error & { code?: string }) | undefined;
    assert.equal(err?.code, 'ECONNRESET');
    assert.match(err!.message, /reset the connection/);
  });

  it('notices within about a second a peer whose broker connection died after its end', async () => {
    const fp = await new FaultProxy(brokerPort).start();
    cleanups.push(() => fp.close());
    const { server } = await endedPair(fp.url(AMQP_URL));
    const closed = closedWith(server, 4000);
    fp.cutAll();
    const err = (await closed) as (Error & { code?: string }) | undefined;
    assert.equal(err?.code, 'ECONNRESET');
    assert.match(err!.message, /went away after its end/);
  });

  it('still treats a plain destroy() after both ends as a close: the other side sees no error', async () => {
    const { server, client } = await endedPair();
    const closed = closedWith(server, 5000);
    client.resume();
    server.end();
    await once(client, 'end');
    client.destroy();
    assert.equal(await closed, undefined);
  });
});
