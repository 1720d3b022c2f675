/**
 * Broker alarms (issue 9, part 2) on a RabbitMQ node of the test's own (never
 * the shared broker): the CLI pair (publish + forward, separate processes)
 * carries an echo transfer; mid-transfer the node's memory high watermark is
 * set so low that it raises its memory alarm and blocks every publishing
 * connection, then it is cleared. Both CLIs show the state ("blocked by the
 * broker: <reason>", as a --json event and a human line) and clear it by
 * themselves; nothing is lost (SHA-256 equal at the far end).
 */
import * as assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { CLI, Cli } from './clirunner';
import { connect } from '../../src/stream';
import { listPublished } from '../../src/tunnel/discovery';
import { echoServer } from './support';
import { startTestNode, type TestNode } from './testnode';

describe('broker alarms (own RabbitMQ node, CLI pair)', function () {
  this.timeout(180_000);
  let node: TestNode;
  const cleanup: Array<() => Promise<unknown> | void> = [];

  before(async function () {
    this.timeout(180_000);
    assert.ok(fs.existsSync(CLI), `${CLI} is missing: run npm run build first`);
    node = await startTestNode({ label: 'alarm' });
  });
  after(async () => {
    await node?.stop();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  /** Resolves once the CLI's stderr (its human lines) matches `re`; rejects when it exits first. */
  function inStderr(c: Cli, re: RegExp): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (re.test(c.stderr)) resolve();
      };
      c.proc.stderr!.on('data', check);
      void c.exited.then(() => reject(new Error(`the CLI exited; stderr:\n${c.stderr}`)));
      check();
    });
  }

  function cli(args: string[]): Cli {
    const c = new Cli(args);
    cleanup.push(async () => {
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
      await c.exited;
    });
    return c;
  }

  it('shows "blocked by the broker" (human line and --json event) while a memory alarm blocks publishing, clears it by itself, and loses nothing', async () => {
    const echo = await echoServer();
    cleanup.push(() => echo.close());
    const broker = node.url('guest', 'guest');
    const queue = `alarm-${process.pid}-${Date.now()}`;
    // The publisher prints human lines, the forwarder --json events: both forms are checked.
    const pub = cli(['publish', String(echo.port), '--queue', queue, '--broker', broker]);
    await inStderr(pub, /ready: publishing/);
    const fwd = cli(['forward', queue, '0', '--broker', broker, '--json']);
    const port = await fwd.forwardPort();

    // 24 MiB through the echo, written as fast as the tunnel takes it and read back.
    const total = 24 * 1024 * 1024;
    const block = randomBytes(256 * 1024);
    const sent = createHash('sha256');
    for (let i = 0; i < total / block.length; i++) sent.update(block);
    const c = net.connect({ port, host: '127.0.0.1' });
    cleanup.push(() => void c.destroy());
    const got = createHash('sha256');
    let received = 0;
    const ended = new Promise<void>((resolve, reject) => {
      c.on('data', (d: Buffer) => {
        got.update(d);
        received += d.length;
      });
      c.once('end', resolve);
      c.once('error', reject);
    });
    // Paced (about 4 MB/s) so that the alarm, which rabbitmqctl takes seconds to raise, lands mid-transfer.
    void (async () => {
      for (let i = 0; i < total / block.length; i++) {
        if (!c.write(block)) await once(c, 'drain');
        await new Promise((r) => setTimeout(r, 60));
      }
      c.end();
    })();

    // Mid-transfer: the alarm.
    while (received < 2 * 1024 * 1024) await new Promise((r) => setTimeout(r, 20));
    const receivedAtAlarm = received;
    await node.ctl('set_vm_memory_high_watermark', '0.0001');
    await inStderr(pub, /blocked by the broker: [^\n]*memory/i);
    const fwdBlocked = await fwd.waitFor((e) => e.event === 'blocked', 30_000);
    assert.match(String(fwdBlocked.reason), /memory/i);
    assert.ok(received < total, 'the transfer finished before the alarm: nothing was tested');

    // Cleared: both sides say so by themselves, and the transfer completes intact.
    await node.ctl('set_vm_memory_high_watermark', '0.4');
    await Promise.all([inStderr(pub, /no longer blocked by the broker/), fwd.waitFor((e) => e.event === 'unblocked', 30_000)]);
    await ended;
    assert.equal(received, total);
    assert.equal(got.digest('hex'), sent.digest('hex'));
    assert.ok(receivedAtAlarm < total);
    assert.equal(await pub.stop(), 0);
    assert.equal(await fwd.stop(), 0);
  });

  it('blocks only the publishing connection when a discovery list runs during an alarm: the consuming one, which carries the acks that let the alarm clear, keeps running', async () => {
    const name = `alarm-list-${process.pid}-${Date.now()}`;
    const conn = await connect(node.url('guest', 'guest'), { connectionName: name, warmQueues: 0 });
    cleanup.push(() => conn.close());
    await node.ctl('set_vm_memory_high_watermark', '0.0001');
    cleanup.push(() => node.ctl('set_vm_memory_high_watermark', '0.4'));
    // State by the name our connections give themselves (in their client properties).
    const states = async (): Promise<Map<string, string>> => {
      const found = new Map<string, string>();
      for (const line of (await node.ctl('list_connections', 'client_properties', 'state', '--no-table-headers', '--quiet')).split('\n')) {
        for (const role of ['publish', 'consume']) {
          if (line.includes(`${name} (${role})`)) found.set(`${name} (${role})`, line.trim().split('\t').pop()!);
        }
      }
      return found;
    };
    // The alarm is in effect once the node flags our connections.
    for (let i = 0; i < 100 && (await states()).get(`${name} (consume)`) !== 'blocking'; i++) await new Promise((r) => setTimeout(r, 100));
    await listPublished(conn, { waitMs: 300 });
    await new Promise((r) => setTimeout(r, 500));
    const after = await states();
    // The query was published during the alarm (so this test can fail), on the publishing connection only.
    assert.equal(after.get(`${name} (publish)`), 'blocked', `connection states: ${JSON.stringify([...after])}`);
    assert.notEqual(after.get(`${name} (consume)`), 'blocked', `connection states: ${JSON.stringify([...after])}`);
  });
});
