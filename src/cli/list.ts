/**
 * `amqp-tunnel list`: what is published on the broker, asked over AMQP
 * (src/tunnel/discovery.ts): a table on stdout, or with --json one
 * publisher per line. Only live publishers answer, so nothing that stopped
 * or died is listed; publishers started with --unlisted never answer.
 */
import * as os from 'node:os';
import { connect, type Connection } from '../stream';
import { describeError } from '../common/errors';
import { age, listPublished, type PublisherInfo } from '../tunnel/discovery';

export { age };
import type { Common } from './args';
import type { Output } from './output';

/** The human table: a header and one row per publisher, columns padded. */
export function formatTable(list: PublisherInfo[], now = Date.now()): string {
  const rows = [
    ['QUEUE', 'PROTOCOL', 'TARGET', 'HOST', 'PID', 'UP', 'SECRET', 'DETAILS'],
    ...list.map((p) => [
      p.queue,
      p.protocol,
      p.target,
      p.host,
      String(p.pid),
      age(p.startedAt, now),
      p.secretRequired ? 'yes' : 'no',
      [p.runtime, p.title].filter(Boolean).join(' ') || '-',
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export async function runList(cfg: Common & { waitMs: number }, out: Output): Promise<number> {
  let conn: Connection | undefined;
  try {
    // A lister opens no streams: no data queues declared ahead of need (each would be declared and, with
    // resume, deleted again at exit) and no liveness probes.
    conn = await connect(cfg.broker, {
      ...cfg.connectOptions,
      connectionName: `amqp-tunnel list on ${os.hostname()} (pid ${process.pid})`,
      warmQueues: 0,
      livenessInterval: 0,
    });
    const list = await listPublished(conn, { waitMs: cfg.waitMs });
    if (out.json) {
      for (const p of list) process.stdout.write(`${JSON.stringify(p)}\n`);
    } else if (list.length === 0) {
      process.stdout.write(`nothing is published on ${cfg.brokerSafe} (publishers started with --unlisted are not shown)\n`);
    } else {
      process.stdout.write(`${formatTable(list)}\n`);
    }
    return 0;
  } catch (err) {
    out.fatal(`cannot list what is published on ${cfg.brokerSafe}: ${describeError(err)}`);
    return 1;
  } finally {
    await conn?.close().catch(() => undefined);
  }
}
