/**
 * Flow control as a user meets it: the CLI pair (publish + forward, two
 * processes, real broker) in front of a fast source and a slow reader.
 * Run `npm run build` first.
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { promisify } from 'node:util';
import { CLI, Cli, spawnCli } from './clirunner';
import { uniqueQueue } from './support';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;
/** The library defaults the CLI runs with. */
const WINDOW = 1 * MiB;
const MAX_MESSAGE = 128 * 1024;

/** Peak resident set size of a process in bytes (VmHWM). */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(m[1]) * 1024;
}

async function rabbitmqctl<T>(args: string[]): Promise<T[]> {
  const { stdout } = await execFileP('rabbitmqctl', [...args, '-q', '--formatter', 'json'], { maxBuffer: 64 * MiB });
  return stdout.trim() ? (JSON.parse(stdout) as T[]) : [];
}

/** The broker's ids of the connections of processes `pids` (the CLI names its connections "... (pid N)"). */
async function connectionsOf(pids: number[]): Promise<Set<string>> {
  type Conn = { pid: string; client_properties: Array<[string, string, unknown]> };
  const conns = await rabbitmqctl<Conn>(['list_connections', 'pid', 'client_properties']);
  return new Set(
    conns
      .filter((c) => c.client_properties.some(([k, , v]) => k === 'connection_name' && pids.some((p) => String(v).includes(`(pid ${p})`))))
      .map((c) => c.pid),
  );
}

/** Bytes in each queue owned by one of the broker connections `owners` (ready and unacknowledged). */
async function queueBytesOf(owners: Set<string>): Promise<Map<string, number>> {
  type Q = { name: string; owner_pid: string; message_bytes: number };
  const queues = await rabbitmqctl<Q>(['list_queues', 'name', 'owner_pid', 'message_bytes']);
  return new Map(queues.filter((q) => owners.has(q.owner_pid)).map((q) => [q.name, q.message_bytes]));
}

describe('flow control through the CLI pair (processes, real broker)', function () {
  this.timeout(180_000);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  const cli = (args: string[]): Cli => spawnCli(cleanup, args);

  before(() => {
    assert.ok(fs.existsSync(CLI), `${CLI} is missing: run npm run build first`);
  });

  it('a slow reader (1 MB/s, 32 MiB) keeps at most one window in the broker and both processes under 150 MiB', async () => {
    const total = 32 * MiB;
    const block = Buffer.alloc(MiB);
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
    const expected = createHash('sha256');
    for (let i = 0; i < total / block.length; i++) expected.update(block);
    // The "download": a source that writes 32 MiB as fast as the tunnel takes it.
    const source = net.createServer((s) => {
      s.on('error', () => undefined);
      let sent = 0;
      const more = (): void => {
        while (sent < total) {
          sent += block.length;
          if (!s.write(block)) return void s.once('drain', more);
        }
        s.end();
      };
      more();
    });
    source.listen(0, '127.0.0.1');
    await once(source, 'listening');
    cleanup.push(() => void source.close());
    const queue = uniqueQueue('slow-reader');
    const pub = cli(['publish', String((source.address() as net.AddressInfo).port), '--queue', queue, '--json']);
    await pub.ready();
    const fwd = cli(['forward', queue, '0', '--json']);
    const port = await fwd.forwardPort();

    let largest = 0;
    let largestQueue = '';
    let samples = 0;
    let reading = true;
    const owners = await connectionsOf([pub.proc.pid!, fwd.proc.pid!]);
    assert.ok(owners.size >= 2, 'the broker lists the connections of both processes');
    const poll = (async () => {
      while (reading) {
        for (const [name, bytes] of await queueBytesOf(owners)) {
          if (bytes > largest) [largest, largestQueue] = [bytes, name];
        }
        samples++;
      }
    })();

    // The reader: 1 MB/s, pausing the socket whenever it is ahead of that rate.
    const rate = 1_000_000;
    const client = net.connect(port, '127.0.0.1');
    const sha = createHash('sha256');
    let got = 0;
    const started = Date.now();
    client.on('data', (chunk: Buffer) => {
      sha.update(chunk);
      got += chunk.length;
      const ahead = got / rate - (Date.now() - started) / 1000;
      if (ahead > 0) {
        client.pause();
        setTimeout(() => client.resume(), ahead * 1000);
      }
    });
    await once(client, 'end');
    reading = false;
    await poll;
    const rss = { publish: peakRss(pub.proc.pid!), forward: peakRss(fwd.proc.pid!) };
    client.destroy();

    assert.equal(got, total);
    assert.equal(sha.digest('hex'), expected.digest('hex'));
    assert.ok(
      largest <= WINDOW + MAX_MESSAGE,
      `a queue of the stream (${largestQueue}) held ${(largest / MiB).toFixed(1)} MiB at the broker; the window is ${WINDOW / MiB} MiB`,
    );
    assert.ok(samples >= 3, `only ${samples} samples of the broker's queues`);
    for (const [side, bytes] of Object.entries(rss)) assert.ok(bytes < 150 * MiB, `${side} peaked at ${(bytes / MiB).toFixed(0)} MiB RSS`);
    console.log(
      `      slow reader: largest queue ${(largest / 1024).toFixed(0)} KiB over ${samples} samples; peak RSS publish ${(rss.publish / MiB).toFixed(0)} MiB, forward ${(rss.forward / MiB).toFixed(0)} MiB; ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });
});
