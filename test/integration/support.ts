/**
 * Shared test support: the broker URL, unique queue names, waiting for
 * events, and a look at the broker's own bookkeeping through rabbitmqctl.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

let counter = 0;
/** A queue name no other test (or CI run on the same broker) uses. */
export function uniqueQueue(label: string): string {
  return `test-${label}-${process.pid}-${Date.now().toString(36)}-${++counter}-${randomBytes(3).toString('hex')}`;
}

/**
 * Feed every chunk to `onChunk` until 'end' (rejects on 'error'). Unlike
 * `for await`, this leaves the stream open after 'end', so the writable
 * side of a half-closed socket keeps working.
 */
function consume(stream: Readable, onChunk: (b: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let ended = false;
    stream.on('data', onChunk);
    stream.once('end', () => {
      ended = true;
      resolve();
    });
    stream.once('error', reject);
    stream.once('close', () => {
      if (!ended) reject(Object.assign(new Error('closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    });
    stream.resume(); // a 'data' listener alone does not resume an explicitly paused stream
  });
}

/** Everything a readable gives until 'end' (rejects on 'error'). */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await consume(stream, (c) => chunks.push(c));
  return Buffer.concat(chunks);
}

/** The SHA-256 and size of everything a readable gives until 'end'. */
export async function digestAll(stream: Readable): Promise<{ sha: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  await consume(stream, (c) => {
    h.update(c);
    bytes += c.length;
  });
  return { sha: h.digest('hex'), bytes };
}

/** Resolves with the error an emitter emits, rejects if it closes without one. */
export async function errorOf(emitter: NodeJS.EventEmitter): Promise<Error & { code?: string }> {
  const [err] = (await once(emitter, 'error')) as [Error & { code?: string }];
  return err;
}

/** Counts how often each named event fires on an emitter. */
export function countEvents(emitter: NodeJS.EventEmitter, names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of names) {
    counts[n] = 0;
    emitter.on(n, () => counts[n]!++);
  }
  return counts;
}

const execFileP = promisify(execFile);

export async function rabbitmqctl<T>(args: string[]): Promise<T[]> {
  const { stdout } = await execFileP('rabbitmqctl', [...args, '-q', '--formatter', 'json'], { maxBuffer: 64 * 1024 * 1024 });
  return stdout.trim() ? (JSON.parse(stdout) as T[]) : [];
}

export interface BrokerView {
  /** Channels the broker counts for the connection. */
  channels: number;
  /** Queues that connection owns (exclusive queues). */
  queues: number;
  /** Consumers on those queues. */
  consumers: number;
}

/**
 * The broker's own view of the Connection named `connectionName` (via
 * rabbitmqctl): its two AMQP connections, "NAME (publish)" and "NAME (consume)", summed.
 */
export async function brokerView(connectionName: string): Promise<BrokerView> {
  type Conn = { pid: string; channels: number; client_properties: Array<[string, string, unknown]> };
  const conns = (await rabbitmqctl<Conn>(['list_connections', 'pid', 'channels', 'client_properties'])).filter((c) =>
    c.client_properties.some(([k, , v]) => k === 'connection_name' && (v === connectionName || String(v).startsWith(`${connectionName} (`))),
  );
  if (conns.length === 0) throw new Error(`the broker lists no connection named ${connectionName}`);
  const pids = new Set(conns.map((c) => c.pid));
  type Q = { name: string; owner_pid: string; consumers: number };
  const queues = (await rabbitmqctl<Q>(['list_queues', 'name', 'owner_pid', 'consumers'])).filter((q) => pids.has(q.owner_pid));
  return {
    channels: conns.reduce((n, c) => n + c.channels, 0),
    queues: queues.length,
    consumers: queues.reduce((n, q) => n + q.consumers, 0),
  };
}

/** Whether a queue exists on the broker (passive look-up through rabbitmqctl). */
export async function queueExists(name: string): Promise<boolean> {
  type Q = { name: string };
  return (await rabbitmqctl<Q>(['list_queues', 'name'])).some((q) => q.name === name);
}

/** Messages in a queue, ready or delivered and not yet acknowledged (via rabbitmqctl). */
export async function queueMessages(name: string): Promise<number> {
  type Q = { name: string; messages: number };
  const q = (await rabbitmqctl<Q>(['list_queues', 'name', 'messages'])).find((x) => x.name === name);
  if (!q) throw new Error(`the broker lists no queue named ${name}`);
  return q.messages;
}

/** Have the broker close the connection named `connectionName` (rabbitmqctl close_connection: CONNECTION_FORCED). */
export async function closeBrokerConnection(connectionName: string, reason: string): Promise<void> {
  // The plain listing, unlike the JSON one, prints pids in the form close_connection takes.
  // A Connection is two AMQP connections, "NAME (publish)" and "NAME (consume)": close both.
  const { stdout } = await execFileP('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q'], { maxBuffer: 64 * 1024 * 1024 });
  const pids = stdout
    .split('\n')
    .filter((l) => l.includes(`"${connectionName}"`) || l.includes(`"${connectionName} (`))
    .map((l) => l.split('\t')[0]!);
  if (pids.length === 0) throw new Error(`the broker lists no connection named ${connectionName}`);
  for (const pid of pids) await execFileP('rabbitmqctl', ['close_connection', pid, reason]);
}

/** The names of all connections the broker has open (via rabbitmqctl). */
export async function brokerConnectionNames(): Promise<string[]> {
  type Conn = { client_properties: Array<[string, string, unknown]> };
  const conns = await rabbitmqctl<Conn>(['list_connections', 'client_properties']);
  return conns.map((c) => String(c.client_properties.find(([k]) => k === 'connection_name')?.[2] ?? ''));
}

/**
 * A TCP echo server on 127.0.0.1, port 0, that passes half-close on
 * (allowHalfOpen): `accepted` lists its connections, `close()` destroys
 * them and stops listening.
 */
export async function echoServer(): Promise<{ server: net.Server; port: number; accepted: net.Socket[]; close(): void }> {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as net.AddressInfo).port,
    accepted,
    close() {
      for (const s of accepted) s.destroy();
      server.close();
    },
  };
}

/** A queue's messages as the broker counts them: ready, and delivered but not yet acknowledged (via rabbitmqctl). */
export async function queueCounts(name: string): Promise<{ messages: number; unacknowledged: number }> {
  type Q = { name: string; messages: number; messages_unacknowledged: number };
  const q = (await rabbitmqctl<Q>(['list_queues', 'name', 'messages', 'messages_unacknowledged'])).find((x) => x.name === name);
  if (!q) throw new Error(`the broker lists no queue named ${name}`);
  return { messages: q.messages, unacknowledged: q.messages_unacknowledged };
}
