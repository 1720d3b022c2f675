/**
 * Closing and destroying while things are still opening (issue 8, cases 5
 * and 6): nothing may outlive its owner on the broker.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, dial, type Connection, type StreamSocket } from '../../src/stream';
import { FaultProxy } from './faultproxy';
import { AMQP_URL, readAll, uniqueQueue } from './support';

const brokerPort = Number(new URL(AMQP_URL).port || 5672);

/** Poll `cond` (nothing emits an event for it) until it holds; false after `ms`. */
async function eventually(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (cond()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('stream lifecycle: close and destroy while opening (real broker)', function () {
  this.timeout(30_000);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });
  const open = async (): Promise<Connection> => {
    const c = await connect(AMQP_URL);
    cleanups.push(() => c.close());
    return c;
  };

  it('StreamServer.close() right after listen() leaves no consumer: the queue is free for the next listener', async () => {
    const conn = await open();
    const q = uniqueQueue('close-opening');
    const server = conn.createServer();
    let listening = false;
    server.on('listening', () => (listening = true));
    server.listen(q);
    await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    assert.equal(server.listening, false);
    assert.equal(listening, false, "a closed server emitted 'listening'");
    // Another process (another connection) can listen on the queue at once: no exclusive consumer was left behind.
    const other = await open();
    const next = other.createServer();
    next.listen(q);
    await once(next, 'listening');
    // And a client reaches the new listener, not a leftover that rejects requests.
    next.on('connection', (s: StreamSocket) => s.resume().end('new listener'));
    const client = conn.connect(q);
    assert.equal((await readAll(client)).toString(), 'new listener');
    await new Promise((r) => next.close(r));
  });

  it('dial() closes its broker connection when the socket is destroyed before the connection opened', async () => {
    // The broker is reached through a proxy that counts its connections.
    const fp = await new FaultProxy(brokerPort).start();
    cleanups.push(() => fp.close());
    const url = `${fp.url(AMQP_URL).replace(/\/$/, '')}/?server_queue=${uniqueQueue('nobody')}`;
    const socket = dial(url);
    socket.on('error', () => undefined);
    socket.destroy();
    await once(socket, 'close');
    // A Connection is two AMQP connections (publish and consume; docs/protocol.md, "Broker alarms").
    // (Counted as accepted: both may open and close between two looks at the live count.)
    assert.ok(await eventually(() => fp.acceptedCount === 2), 'dial() never reached the broker');
    // The connection opened after the destroy; it must close again on its own.
    assert.ok(await eventually(() => fp.connectionCount === 0), 'the broker connection of a destroyed dial() socket stays open');
  });
});
