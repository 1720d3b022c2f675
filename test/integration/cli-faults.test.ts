/**
 * Faults a user meets, with the CLI as processes: the broker link cut or
 * stalled (a TCP fault proxy between a CLI and RabbitMQ), and either end of
 * a tunnel killed with SIGKILL. The bounds are the ones promised in issue 3:
 * RST (never a clean FIN) for cut connections, ready again within 2 s after
 * the broker is back, and peers noticing a dead process within 2 s.
 * These are the bounds without stream resumption (`--resume-grace 0`, as
 * with a v1 peer); with it (the default) a cut is survived and a dead peer
 * is reset after the grace period: cli-resume.test.ts.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { FaultProxy } from './faultproxy';
import { Cli, spawnCli } from './clirunner';
import { echoServer } from './support';

const BROKER = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
let n = 0;
const uniqueQueue = (): string => `t-${process.pid}-${Date.now()}-${n++}`;
const brokerPort = Number(new URL(BROKER).port || 5672);


/** Connect, send one byte, wait for its echo: a live connection through the tunnel. */
async function liveConnection(port: number): Promise<net.Socket> {
  const c = net.connect({ port, host: '127.0.0.1' });
  c.write('a');
  await once(c, 'data');
  return c;
}

/** How a connection ended: 'reset' (ECONNRESET), 'end' (clean FIN) or another error code, and when. */
function outcome(c: net.Socket): Promise<{ how: string; at: number }> {
  return new Promise((resolve) => {
    c.once('error', (err: NodeJS.ErrnoException) => resolve({ how: err.code === 'ECONNRESET' ? 'reset' : String(err.code), at: Date.now() }));
    c.once('end', () => resolve({ how: 'end', at: Date.now() }));
  });
}

/** `p`, or a failure naming `what` after `ms` (so a missed bound fails fast with a clear message). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing happened within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

describe('amqp-tunnel under faults (processes, fault proxy, kill -9)', function () {
  this.timeout(60_000);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  const cli = (args: string[]): Cli => spawnCli(cleanup, [...args, '--json', '--resume-grace', '0']);
  const proxy = async (): Promise<FaultProxy> => {
    const p = await new FaultProxy(brokerPort).start();
    cleanup.push(() => p.close());
    return p;
  };
  const echo = async (): Promise<[number, net.Socket[]]> => {
    const e = await echoServer();
    cleanup.push(() => e.close());
    return [e.port, e.accepted];
  };

  it('resets forwarded connections (RST, not FIN) when the forwarder loses the broker, refuses new ones meanwhile, and is ready within 2 s after the broker is back', async () => {
    const [port] = await echo();
    const fp = await proxy();
    const queue = uniqueQueue();
    const pub = cli(['publish', String(port), '--queue', queue]);
    await pub.state('ready');
    const fwd = cli(['forward', queue, '0', '--broker', fp.url(BROKER)]);
    const fport = await fwd.forwardPort();
    const c = await liveConnection(fport);
    const ended = outcome(c);
    const mark = fwd.events.length;
    fp.cutAll();
    assert.equal((await ended).how, 'reset');
    await fwd.state('reconnecting', mark);
    // While reconnecting the port stays bound and a new connection is refused at once.
    const early = net.connect({ port: fport, host: '127.0.0.1' });
    assert.equal((await outcome(early)).how, 'reset');
    const resumed = Date.now();
    const back = fwd.events.length;
    fp.resume();
    await fwd.state('ready', back, 5000);
    const took = Date.now() - resumed;
    assert.ok(took <= 2000, `ready ${took} ms after the broker came back`);
    const again = await liveConnection(fport);
    again.destroy();
  });

  it('re-publishes within 2 s after the publisher gets its broker back, and resets streams that were cut', async () => {
    const [port] = await echo();
    const fp = await proxy();
    const queue = uniqueQueue();
    const pub = cli(['publish', String(port), '--queue', queue, '--broker', fp.url(BROKER)]);
    await pub.state('ready');
    const fwd = cli(['forward', queue, '0']);
    const fport = await fwd.forwardPort();
    const c = await liveConnection(fport);
    const ended = outcome(c);
    const mark = pub.events.length;
    fp.cutAll();
    await pub.state('reconnecting', mark);
    const cutAt = Date.now();
    c.write('b'); // a busy stream: the broker returns the message to its dead peer
    const r = await ended;
    assert.equal(r.how, 'reset');
    assert.ok(r.at - cutAt <= 2000, `reset ${r.at - cutAt} ms after the cut`);
    const resumed = Date.now();
    const back = pub.events.length;
    fp.resume();
    await pub.state('ready', back, 5000);
    const took = Date.now() - resumed;
    assert.ok(took <= 2000, `publisher ready ${took} ms after the broker came back`);
    const again = await liveConnection(fport);
    again.destroy();
  });

  it('goes to reconnecting when the broker link stalls (heartbeat 1 s) and is ready within 2 s after it flows again', async () => {
    const fp = await proxy();
    const queue = uniqueQueue();
    const fwd = cli(['forward', queue, '0', '--broker', fp.url(BROKER), '--heartbeat', '1']);
    await fwd.forwardPort();
    const mark = fwd.events.length;
    fp.stall();
    await fwd.state('reconnecting', mark, 15_000);
    const resumed = Date.now();
    const back = fwd.events.length;
    fp.resume();
    await fwd.state('ready', back, 5000);
    const took = Date.now() - resumed;
    assert.ok(took <= 2000, `ready ${took} ms after the link flowed again`);
  });

  it('resets idle forwarded connections within 2 s when the publisher process is killed (kill -9)', async () => {
    const [port] = await echo();
    const queue = uniqueQueue();
    const pub = cli(['publish', String(port), '--queue', queue]);
    await pub.state('ready');
    const fwd = cli(['forward', queue, '0']);
    const fport = await fwd.forwardPort();
    const c = await liveConnection(fport);
    const ended = outcome(c);
    const killedAt = Date.now();
    pub.proc.kill('SIGKILL');
    const r = await within(ended, 5000, 'forwarded connection after kill -9 of the publisher');
    assert.equal(r.how, 'reset');
    assert.ok(r.at - killedAt <= 2000, `reset ${r.at - killedAt} ms after kill -9`);
  });

  it('closes the target connection within 2 s when the forwarding process is killed (kill -9)', async () => {
    const [port, accepted] = await echo();
    const queue = uniqueQueue();
    const pub = cli(['publish', String(port), '--queue', queue]);
    await pub.state('ready');
    const fwd = cli(['forward', queue, '0']);
    const fport = await fwd.forwardPort();
    const c = await liveConnection(fport);
    c.on('error', () => undefined);
    assert.equal(accepted.length, 1);
    const target = accepted[0]!;
    // Closed or reset, either is fine ('once' would reject on the reset's 'error').
    const closed = new Promise<number>((resolve) => target.once('close', () => resolve(Date.now())));
    const killedAt = Date.now();
    fwd.proc.kill('SIGKILL');
    const at = await within(closed, 5000, 'target connection after kill -9 of the forwarder');
    assert.ok(at - killedAt <= 2000, `target connection closed ${at - killedAt} ms after kill -9`);
    c.destroy();
  });
});
