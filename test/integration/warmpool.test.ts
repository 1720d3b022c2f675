/**
 * The warm queue pool (docs/protocol.md, "Stream open in one broker round
 * trip") against the real broker: streams open on queues declared ahead of
 * need, the pool refills, and `warmQueues: 0` declares on demand.
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { connect, type Connection, type StreamSocket } from '../../src/stream';
import { AMQP_URL, readAll, uniqueQueue } from './support';

const execFileP = promisify(execFile);

async function rabbitmqctl<T>(args: string[]): Promise<T[]> {
  const { stdout } = await execFileP('rabbitmqctl', [...args, '-q', '--formatter', 'json'], { maxBuffer: 64 * 1024 * 1024 });
  return stdout.trim() ? (JSON.parse(stdout) as T[]) : [];
}

/**
 * Names of the queues the Connection named `connectionName` holds: those its
 * consuming AMQP connection ("NAME (consume)", which declares them all) owns
 * (exclusive: control and presence queues) or consumes (data queues, which are
 * resumable by default and so not exclusive).
 */
async function ownedQueues(connectionName: string): Promise<string[]> {
  type Conn = { pid: string; client_properties: Array<[string, string, unknown]> };
  const conns = await rabbitmqctl<Conn>(['list_connections', 'pid', 'client_properties']);
  const conn = conns.find((c) => c.client_properties.some(([k, , v]) => k === 'connection_name' && v === `${connectionName} (consume)`));
  if (!conn) throw new Error(`the broker lists no connection named ${connectionName}`);
  type Q = { name: string; owner_pid: string };
  const owned = (await rabbitmqctl<Q>(['list_queues', 'name', 'owner_pid'])).filter((q) => q.owner_pid === conn.pid).map((q) => q.name);
  type Ch = { pid: string; connection: string };
  const channels = new Set((await rabbitmqctl<Ch>(['list_channels', 'pid', 'connection'])).filter((c) => c.connection === conn.pid).map((c) => c.pid));
  type Consumer = { queue_name: string; channel_pid: string };
  const consumed = (await rabbitmqctl<Consumer>(['list_consumers', 'queue_name', 'channel_pid'])).filter((c) => channels.has(c.channel_pid)).map((c) => c.queue_name);
  return [...new Set([...owned, ...consumed])];
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const localQueue = (s: StreamSocket): string => new URL(s.localAddress!).searchParams.get('local_queue')!;

describe('warm data queue pool (real broker)', function () {
  this.timeout(60_000);
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const fn of closers.splice(0).reverse()) await fn();
  });
  async function open(name: string, warmQueues?: number): Promise<Connection> {
    const c = await connect(AMQP_URL, { connectionName: name, warmQueues });
    closers.push(() => c.close());
    return c;
  }

  it('opens both ends of a stream on queues declared before it was asked for, and refills the pool', async () => {
    const clientName = uniqueQueue('warm-client');
    const serverName = uniqueQueue('warm-server');
    const client = await open(clientName);
    const server = await open(serverName);
    const q = uniqueQueue('warm');
    let accepted!: StreamSocket;
    const listener = server.listen(q, (s) => {
      accepted = s;
      s.pipe(s);
    });
    closers.push(() => new Promise<void>((r) => listener.close(() => r())));
    await once(listener, 'listening');
    await until(() => client.warmQueueCount === 4 && server.warmQueueCount === 4);
    const [clientWarm, serverWarm] = await Promise.all([ownedQueues(clientName), ownedQueues(serverName)]);
    // Besides the warm queues, each connection owns its presence queue (feature presence).
    assert.equal(clientWarm.length, 4 + 1, '4 warm queues and the presence queue');
    assert.equal(serverWarm.length, 1 + 4 + 1, 'the control queue, 4 warm queues and the presence queue');

    const sock = client.connect(q);
    const got = readAll(sock);
    sock.end('warm');
    assert.equal((await got).toString(), 'warm');
    assert.ok(clientWarm.includes(localQueue(sock)), "the client's data queue was declared ahead of need");
    assert.ok(serverWarm.includes(localQueue(accepted)), "the listener's data queue was declared ahead of need");
    await until(() => client.warmQueueCount === 4 && server.warmQueueCount === 4);
  });

  it('a connection closed while its pool is still filling leaves no queue behind on the broker', async () => {
    // Warm queues are resumable (they outlive a dropped connection for the grace period), so one whose
    // declaration was still on its way when the connection closed would stay on the broker until it expired.
    const names = async (): Promise<Set<string>> => new Set((await rabbitmqctl<{ name: string }>(['list_queues', 'name'])).map((q) => q.name));
    const before = await names();
    for (let i = 0; i < 5; i++) {
      const c = await connect(AMQP_URL, { connectionName: uniqueQueue('warm-closed') });
      assert.ok(c.warmQueueCount < 4, 'closed before the pool was full (the case this test is about)');
      await c.close();
    }
    const left = [...(await names())].filter((n) => !before.has(n) && n.startsWith('amq.gen-'));
    assert.deepEqual(left, [], 'queues the closed connections declared and left behind');
  });

  it('with warmQueues: 0 declares nothing ahead and still opens streams', async () => {
    const name = uniqueQueue('cold');
    const c = await open(name, 0);
    const q = uniqueQueue('cold-listen');
    const listener = c.listen(q, (s) => s.pipe(s));
    closers.push(() => new Promise<void>((r) => listener.close(() => r())));
    await once(listener, 'listening');
    assert.deepEqual((await ownedQueues(name)).sort(), [q, c.presenceQueue!].sort(), 'the control queue and the presence queue only');
    const sock = c.connect(q);
    const got = readAll(sock);
    sock.end('cold');
    assert.equal((await got).toString(), 'cold');
    assert.equal(c.warmQueueCount, 0);
  });

  it('more streams at once than the pool holds all open, and the pool comes back to its size', async () => {
    const c = await open(uniqueQueue('burst'));
    const q = uniqueQueue('burst-listen');
    const listener = c.listen(q, (s) => s.pipe(s));
    closers.push(() => new Promise<void>((r) => listener.close(() => r())));
    await once(listener, 'listening');
    const results = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const s = c.connect(q);
        const got = readAll(s);
        s.end(`stream ${i}`);
        return (await got).toString();
      }),
    );
    assert.deepEqual(results, Array.from({ length: 30 }, (_, i) => `stream ${i}`));
    await until(() => c.warmQueueCount === 4 && c.socketCount === 0);
  });
});
