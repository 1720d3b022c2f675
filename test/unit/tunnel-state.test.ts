import * as assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import * as net from 'node:net';
import { TunnelError } from '../../src/common/errors';
import type { Logger } from '../../src/common/logger';
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

/** A transport whose next acquire() results are scripted; `at` records when each acquire() was made. */
function fakeTransport(script: Array<FakeLink | Error>): Transport & { calls: number; at: number[] } {
  const t = {
    address: 'amqp://fake',
    calls: 0,
    at: [] as number[],
    acquire(): Promise<BrokerLink> {
      t.calls++;
      t.at.push(performance.now());
      const next = script.shift();
      if (!next) return Promise.reject(new TunnelError('ECONNREFUSED', 'broker down'));
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next as unknown as BrokerLink);
    },
    close: async () => undefined,
  };
  return t;
}

function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const put = (m: string): void => void lines.push(m);
  return { lines, debug: put, info: put, warn: put, error: put };
}

describe('tunnel state machine (injected transport, no broker)', () => {
  // A failed assertion must not leave a tunnel listening (mocha would never exit).
  const started: Array<{ stop(): Promise<void> }> = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((t) => t.stop()));
  });
  it('goes starting -> ready -> reconnecting -> ready, retrying failed attempts after doubling, capped delays', async () => {
    const first = new FakeLink();
    const second = new FakeLink();
    const down = (): Error => new TunnelError('ECONNREFUSED', 'broker down');
    // After the loss: four failed attempts, then a link.
    const transport = fakeTransport([first, down(), down(), down(), down(), second]);
    const log = memoryLogger();
    // No jitter (random() = 0): the delays are exactly 40, 80, then capped at 100 ms.
    const fwd = forward({ queue: 'q', transport, logger: log, backoff: { initialMs: 40, maxMs: 100, random: () => 0 } });
    started.push(fwd);
    const states: string[] = [];
    fwd.on('state', (c: StateChange) => states.push(c.state));
    await fwd.ready;
    const lostAt = performance.now();
    first.lose();
    assert.equal(fwd.state, 'reconnecting');
    await once(fwd, 'state');
    assert.deepEqual(states, ['ready', 'reconnecting', 'ready']);
    assert.equal(transport.calls, 6, 'the first connect, four failed attempts, the successful one');
    assert.equal(log.lines.filter((l) => /reconnect attempt \d+ failed: broker down/.test(l)).length, 4, log.lines.join('\n'));
    // The wait before each attempt: at least its delay (timers never fire early; 1 ms for rounding),
    // and well under the next step, so a missing doubling or cap shows.
    const waits = [lostAt, ...transport.at.slice(1)].slice(0, -1).map((t, i) => Math.round(transport.at[i + 1]! - t));
    const nominal = [40, 80, 100, 100, 100];
    for (const [i, w] of waits.entries()) {
      assert.ok(w >= nominal[i]! - 1, `wait ${i + 1} was ${w} ms, expected ${nominal[i]} (all: ${waits.join(', ')})`);
      assert.ok(w < nominal[i]! + 60, `wait ${i + 1} was ${w} ms, expected ${nominal[i]} (all: ${waits.join(', ')})`);
    }
    assert.match(fwd.stats().lastError ?? '', /broker down/);
    await fwd.stop();
    assert.deepEqual(states, ['ready', 'reconnecting', 'ready', 'stopped']);
  });

  it('starts over at the first delay after a successful reconnect', async () => {
    const links = [new FakeLink(), new FakeLink(), new FakeLink()];
    const down = (): Error => new TunnelError('ECONNREFUSED', 'broker down');
    const transport = fakeTransport([links[0]!, down(), down(), links[1]!, links[2]!]);
    const fwd = forward({ queue: 'q', transport, backoff: { initialMs: 40, maxMs: 1000, random: () => 0 } });
    started.push(fwd);
    await fwd.ready;
    links[0]!.lose();
    await once(fwd, 'state'); // ready again after 40 + 80 + 160 ms
    const lostAgain = performance.now();
    links[1]!.lose();
    await once(fwd, 'state');
    const wait = Math.round(transport.at[4]! - lostAgain);
    // Without the reset the next delay would be 320 ms.
    assert.ok(wait >= 39 && wait < 200, `first wait after the second loss was ${wait} ms, expected 40`);
    await fwd.stop();
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
