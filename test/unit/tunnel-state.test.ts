import * as assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import * as net from 'node:net';
import { TunnelError } from '../../src/common/errors';
import { Backoff, forward, type BrokerLink, type StateChange, type Transport } from '../../src/tunnel';

/** A broker link that is only an event emitter: enough for the forwarder's state machine. */
class FakeLink extends EventEmitter {
  isOpen = true;
  lose(): void {
    this.isOpen = false;
    this.emit('close', new TunnelError('ECONNRESET', 'lost the connection to the broker'));
  }
  async close(): Promise<void> {
    this.isOpen = false;
  }
  connect(): never {
    throw new TunnelError('ECONNREFUSED', 'no streams in this test');
  }
  createServer(): never {
    throw new Error('not used');
  }
}

/** A transport whose next acquire() results are scripted. */
function fakeTransport(script: Array<FakeLink | Error>): Transport & { calls: number } {
  const t = {
    address: 'amqp://fake',
    calls: 0,
    acquire(): Promise<BrokerLink> {
      t.calls++;
      const next = script.shift();
      if (!next) return Promise.reject(new TunnelError('ECONNREFUSED', 'broker down'));
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next as unknown as BrokerLink);
    },
    close: async () => undefined,
  };
  return t;
}

describe('tunnel state machine (injected transport, no broker)', () => {
  it('goes starting -> ready -> reconnecting -> ready, retrying failed attempts with backoff', async () => {
    const first = new FakeLink();
    const second = new FakeLink();
    const transport = fakeTransport([first]);
    const fwd = forward({ queue: 'q', transport, backoff: { initialMs: 5, maxMs: 20 } });
    const states: string[] = [];
    fwd.on('state', (c: StateChange) => states.push(c.state));
    await fwd.ready;
    first.lose();
    assert.equal(fwd.state, 'reconnecting');
    // Two failed attempts (the transport has nothing scripted), then a link.
    await new Promise((r) => setTimeout(r, 15));
    transport.acquire = (() => {
      transport.calls++;
      return Promise.resolve(second as unknown as BrokerLink);
    }) as Transport['acquire'];
    await once(fwd, 'state');
    assert.deepEqual(states, ['ready', 'reconnecting', 'ready']);
    assert.ok(transport.calls >= 2);
    assert.match(fwd.stats().lastError ?? '', /lost the connection|broker down/);
    await fwd.stop();
    assert.deepEqual(states, ['ready', 'reconnecting', 'ready', 'stopped']);
  });

  it('fails (and releases its local port) when the first attempt fails', async () => {
    const fwd = forward({ queue: 'q', transport: fakeTransport([new TunnelError('ERR_AMQP_AUTH', 'bad password')]) });
    await assert.rejects(fwd.ready, /bad password/);
    assert.equal(fwd.state, 'failed');
    const port = fwd.address!.port;
    const probe = net.createServer().listen(port, '127.0.0.1');
    await once(probe, 'listening');
    probe.close();
  });

  it('keeps the local port bound while reconnecting and resets new local connections at once', async () => {
    const link = new FakeLink();
    const fwd = forward({ queue: 'q', transport: fakeTransport([link]), backoff: { initialMs: 1000, maxMs: 1000 } });
    await fwd.ready;
    link.lose();
    const c = net.connect({ port: fwd.address!.port, host: '127.0.0.1' });
    const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    await fwd.stop();
  });

  it('rejects a bad bind address before touching the broker', () => {
    const transport = fakeTransport([]);
    assert.throws(() => forward({ queue: 'q', bind: '99999', transport }), /out of range/);
    assert.equal(transport.calls, 0);
  });
});

describe('backoff', () => {
  it('doubles from the initial delay up to the cap, with jitter taking at most half', () => {
    const max = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => max.next()), [100, 200, 400, 800, 1000, 1000]);
    const min = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
    assert.deepEqual([1, 2, 3].map(() => min.next()), [50, 100, 200]);
  });

  it('starts over after reset()', () => {
    const b = new Backoff({ random: () => 0 });
    b.next();
    b.next();
    b.reset();
    assert.equal(b.next(), 100);
  });
});
