import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { forward, publish, type BrokerLink, type Transport, type Tunnel } from '../../src/tunnel';
import { connect, type Connection } from '../../src/stream';
import { TunnelError } from '../../src/common/errors';
import type { Logger } from '../../src/common/logger';
import { brokerView, echoServer, uniqueQueue as uniqueName } from './support';

const BROKER = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
let n = 0;
const uniqueQueue = (): string => `t-${process.pid}-${Date.now()}-${n++}`;

function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const put = (m: string): void => void lines.push(m);
  return { lines, debug: put, info: put, warn: put, error: put };
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
    const { port: echoPort, close } = await echoServer();
    cleanup.push(close);
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
    const { port: echoPort, close } = await echoServer();
    cleanup.push(close);
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

  it('stop() in the middle of a download: the client reads all the data before its clean end', async () => {
    const total = 8 * 1024 * 1024;
    // The target sends a bulk reply and ends: data is still in the broker when the forwarder stops.
    const target = net.createServer((s) => {
      s.on('error', () => undefined);
      s.end(Buffer.alloc(total, 7));
    });
    target.listen(0, '127.0.0.1');
    await once(target, 'listening');
    cleanup.push(() => void target.close());
    const queue = uniqueQueue();
    const pub = track(publish({ target: String((target.address() as net.AddressInfo).port), queue, broker: BROKER }));
    await pub.ready;
    // A generous bound: this is about order, not speed.
    const fwd = forward({ queue, broker: BROKER, stopTimeoutMs: 30_000 });
    await fwd.ready;
    const c = net.connect({ port: fwd.address!.port, host: '127.0.0.1' });
    let got = 0;
    let stopped: Promise<void> | undefined;
    c.on('data', (d: Buffer) => {
      got += d.length;
      stopped ??= fwd.stop();
    });
    const how = await new Promise<string>((resolve) => {
      c.once('end', () => resolve('end'));
      c.once('error', (err: NodeJS.ErrnoException) => resolve(String(err.code)));
    });
    assert.equal(`${how} after ${got} bytes`, `end after ${total} bytes`);
    await stopped;
    c.destroy();
  });

  it('stop() during a reconnect attempt leaves no listener behind on a shared broker connection', async () => {
    const queue = uniqueQueue();
    const conns: Connection[] = [];
    let stopping: Promise<void> | undefined;
    // A shared transport (as in `amqp-tunnel run`): stop() does not close its connections.
    const transport: Transport = {
      address: 'the test broker',
      async acquire(): Promise<BrokerLink> {
        const c = await connect(BROKER);
        cleanup.push(() => c.close());
        conns.push(c);
        if (conns.length === 2) {
          // The reconnect attempt: stop the tunnel while its listener is still opening.
          const createServer = c.createServer.bind(c);
          c.createServer = (...args: Parameters<Connection['createServer']>) => {
            const server = createServer(...args);
            const listen = server.listen.bind(server);
            server.listen = (q: string, cb?: () => void) => {
              listen(q, cb);
              stopping = tunnel.stop();
              return server;
            };
            return server;
          };
        }
        return c;
      },
      close: async () => undefined,
    };
    // acquire() runs from the next tick on, after `tunnel` is set.
    const tunnel = publish({ target: '1', queue, transport, backoff: { initialMs: 10, maxMs: 10 } });
    await tunnel.ready;
    const reconnecting = once(tunnel, 'state');
    await conns[0]!.close(); // the broker connection is lost
    await reconnecting;
    await waitUntil(() => stopping !== undefined);
    await stopping;
    assert.equal(tunnel.state, 'stopped');
    // The queue is free: another publisher (another connection) can take it at once.
    const other = track(publish({ target: '1', queue, broker: BROKER }));
    await other.ready;
  });

  it('leaves no sockets, queues, channels or listeners behind after 2,000 connect/close cycles, either side closing first', async function () {
    this.timeout(300_000);
    // The target answers "C..." by echoing until the client ends (client closes first)
    // and "S" with "bye" and its own end at once (target closes first).
    const open = new Set<net.Socket>();
    const target = net.createServer({ allowHalfOpen: true }, (s) => {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => undefined);
      s.once('data', (d: Buffer) => {
        if (d.toString() === 'S') s.end('bye');
        else {
          s.write(d);
          s.pipe(s);
        }
      });
    });
    target.listen(0, '127.0.0.1');
    await once(target, 'listening');
    cleanup.push(() => void target.close());
    const queue = uniqueQueue();
    const pubName = uniqueName('leak-pub');
    const fwdName = uniqueName('leak-fwd');
    const pub = track(publish({ target: String((target.address() as net.AddressInfo).port), queue, broker: BROKER, connectOptions: { connectionName: pubName } }));
    await pub.ready;
    const fwd = track(forward({ queue, bind: '0', broker: BROKER, connectOptions: { connectionName: fwdName } }));
    await fwd.ready;
    const port = fwd.address!.port;
    const before = { pub: await brokerView(pubName), fwd: await brokerView(fwdName) };
    const handlesBefore = activeHandles();

    async function cycle(targetFirst: boolean): Promise<void> {
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      let got = '';
      c.on('data', (d: Buffer) => (got += d.toString()));
      const ended = once(c, 'end');
      if (targetFirst) {
        c.write('S');
        await ended;
        assert.equal(got, 'bye');
        c.end();
      } else {
        c.end('C-x');
        await ended;
        assert.equal(got, 'C-x');
      }
      if (!c.destroyed) await once(c, 'close');
    }
    for (let i = 0; i < 2000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => cycle((i + j) % 2 === 1)));
    }
    await waitUntil(() => fwd.stats().activeConnections === 0 && pub.stats().activeConnections === 0 && open.size === 0);
    assert.equal(fwd.stats().totalConnections, 2000);
    assert.equal(pub.stats().totalConnections, 2000);
    for (let tries = 0; ; tries++) {
      const after = { pub: await brokerView(pubName), fwd: await brokerView(fwdName) };
      try {
        assert.deepEqual(after, before, 'queues, consumers and channels on the broker');
        break;
      } catch (err) {
        if (tries >= 20) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const handlesAfter = activeHandles();
    assert.ok(handlesAfter <= handlesBefore, `open handles before ${handlesBefore}, after ${handlesAfter}`);
  });
});

function activeHandles(): number {
  return (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
}

async function waitUntil(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met within ' + ms + ' ms');
    await new Promise((r) => setTimeout(r, 25));
  }
}
