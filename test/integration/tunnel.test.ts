import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { forward, publish, type Tunnel } from '../../src/tunnel';
import { TunnelError } from '../../src/common/errors';
import type { Logger } from '../../src/common/logger';

const BROKER = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
let n = 0;
const uniqueQueue = (): string => `t-${process.pid}-${Date.now()}-${n++}`;

function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const put = (m: string): void => void lines.push(m);
  return { lines, debug: put, info: put, warn: put, error: put };
}

async function echoServer(): Promise<[net.Server, number]> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return [server, (server.address() as net.AddressInfo).port];
}

async function roundTrip(port: number, text: string): Promise<string> {
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let got = '';
  c.on('data', (d: Buffer) => (got += d.toString()));
  c.end(text);
  await once(c, 'end');
  c.destroy();
  return got;
}

describe('publish and forward tunnels over a real broker', function () {
  this.timeout(30_000);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  function track<T extends Tunnel>(t: T): T {
    cleanup.push(() => t.stop());
    return t;
  }

  it('carries a TCP connection both ways, passes half-close, and counts bytes', async () => {
    const [echo, echoPort] = await echoServer();
    cleanup.push(() => void echo.close());
    const queue = uniqueQueue();
    const pub = track(publish({ target: String(echoPort), queue, broker: BROKER }));
    await pub.ready;
    const fwd = track(forward({ queue, bind: '0', broker: BROKER }));
    const states: string[] = [];
    fwd.on('state', (c: { state: string }) => states.push(c.state));
    await fwd.ready;
    assert.equal(fwd.state, 'ready');
    assert.deepEqual(states, ['ready']);
    const closed = once(fwd, 'connectionClosed');
    assert.equal(await roundTrip(fwd.address!.port, 'ping through the broker'), 'ping through the broker');
    await closed;
    const s = fwd.stats();
    assert.equal(s.totalConnections, 1);
    assert.equal(s.activeConnections, 0);
    assert.equal(s.tcpToStream, 23);
    assert.equal(s.streamToTcp, 23);
  });

  it('resets the forwarded connection and logs the reason when nothing listens on the target', async () => {
    const free = net.createServer().listen(0, '127.0.0.1');
    await once(free, 'listening');
    const deadPort = (free.address() as net.AddressInfo).port;
    free.close();
    const queue = uniqueQueue();
    const pub = track(publish({ target: `127.0.0.1:${deadPort}`, queue, broker: BROKER }));
    await pub.ready;
    const log = memoryLogger();
    const fwd = track(forward({ queue, broker: BROKER, logger: log }));
    await fwd.ready;
    const closed = once(fwd, 'connectionClosed');
    const c = net.connect({ port: fwd.address!.port, host: '127.0.0.1' });
    let ended = false;
    c.on('end', () => (ended = true));
    const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(ended, false);
    await closed;
    assert.ok(
      log.lines.some((l) => l.includes(`nothing listens on 127.0.0.1:${deadPort} on the publishing machine`)),
      log.lines.join('\n'),
    );
    assert.match(pub.stats().lastError ?? '', /nothing listens/);
  });

  it('fails to start, with EADDRINUSE, when the queue is already published elsewhere', async () => {
    const queue = uniqueQueue();
    const first = track(publish({ target: '1', queue, broker: BROKER }));
    await first.ready;
    const second = track(publish({ target: '1', queue, broker: BROKER }));
    await assert.rejects(second.ready, (e: unknown) => e instanceof TunnelError && e.code === 'EADDRINUSE');
    assert.equal(second.state, 'failed');
  });

  it('fails to start with ERR_AMQP_AUTH on a wrong password and releases its local port', async () => {
    const fwd = track(forward({ queue: uniqueQueue(), broker: BROKER.replace(/:[^:@/]*@/, ':wrong-password@') }));
    await assert.rejects(fwd.ready, (e: unknown) => e instanceof TunnelError && e.code === 'ERR_AMQP_AUTH');
    assert.equal(fwd.state, 'failed');
    const probe = net.createServer().listen(fwd.address!.port, '127.0.0.1');
    await once(probe, 'listening');
    probe.close();
  });

  it('ends open connections cleanly with EOF on stop()', async () => {
    const [echo, echoPort] = await echoServer();
    cleanup.push(() => void echo.close());
    const queue = uniqueQueue();
    const pub = track(publish({ target: String(echoPort), queue, broker: BROKER }));
    await pub.ready;
    const fwd = forward({ queue, broker: BROKER });
    await fwd.ready;
    const c = net.connect({ port: fwd.address!.port, host: '127.0.0.1' });
    c.write('x');
    await once(c, 'data');
    const ended = once(c, 'end');
    await fwd.stop();
    await ended;
    assert.equal(fwd.state, 'stopped');
    c.destroy();
  });
});
