/**
 * `amqp-tunnel check`: can this machine run tunnels through this broker?
 * Connects, declares and deletes a queue, times a round trip, pushes a short
 * stream through the broker and back, and says "ready for tunnels" or what
 * is wrong (the library's errors already name DNS, refused, TLS, credentials,
 * vhost and permission problems).
 */
import { once } from 'node:events';
import { connect, type Connection, type StreamSocket } from '../stream';
import { describeError } from '../common/errors';
import type { Common } from './args';
import type { Output } from './output';

const STREAM_BYTES = 4 * 1024 * 1024;

export async function runCheck(cfg: Common, out: Output): Promise<number> {
  const say = (m: string): void => (out.json ? undefined : void process.stdout.write(`${m}\n`));
  let conn: Connection | undefined;
  try {
    const t0 = performance.now();
    conn = await connect(cfg.broker, { ...cfg.connectOptions, connectionName: 'amqp-tunnel check' });
    const connectMs = performance.now() - t0;
    say(`connected to ${cfg.brokerSafe} in ${connectMs.toFixed(0)} ms`);

    const ch = await conn.openChannel();
    const name = `amqp-tunnel-check-${process.pid}-${Date.now()}`;
    const t1 = performance.now();
    await ch.assertQueue(name, { exclusive: true, autoDelete: true, durable: false });
    const rttMs = performance.now() - t1;
    await ch.deleteQueue(name);
    await ch.close();
    say(`declared and deleted a queue; broker round trip ${rttMs.toFixed(1)} ms`);

    const queue = `${name}-stream`;
    const server = conn.createServer({}, (s: StreamSocket) => {
      s.on('error', () => undefined);
      s.resume();
      s.on('end', () => s.end());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(queue, () => resolve());
    });
    const t2 = performance.now();
    const sock = conn.connect(queue);
    sock.resume();
    sock.end(Buffer.alloc(STREAM_BYTES, 1));
    await Promise.race([once(sock, 'end'), once(sock, 'error').then(([e]) => Promise.reject(e))]);
    const streamMs = performance.now() - t2;
    const mbps = STREAM_BYTES / 1024 / 1024 / (streamMs / 1000);
    server.close();
    say(`a ${STREAM_BYTES / 1024 / 1024} MiB stream took ${streamMs.toFixed(0)} ms (${mbps.toFixed(1)} MiB/s)`);
    out.event('check', { ok: true, broker: cfg.brokerSafe, connectMs, rttMs, streamMs, mibPerSecond: mbps });
    say('ready for tunnels');
    return 0;
  } catch (err) {
    out.event('check', { ok: false, broker: cfg.brokerSafe, error: describeError(err) });
    out.fatal(`not ready for tunnels: ${describeError(err)}`);
    return 1;
  } finally {
    await conn?.close().catch(() => undefined);
  }
}
