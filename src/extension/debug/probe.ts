/**
 * Is anything published on a queue? Asked before a debugger is pointed at a
 * forward, so a launch fails at once with the cause instead of leaving the
 * debugger retrying a port that leads nowhere.
 *
 * A publisher holds the queue as an exclusive, auto-delete queue for as long
 * as its broker connection lives (docs/protocol.md), so a passive declare
 * answers the question: RESOURCE_LOCKED (exclusive to someone else) or OK
 * means a publisher is there, NOT_FOUND means nobody publishes. Unlike a
 * test stream, this never opens a TCP connection to the debuggee on the far
 * side: a JDWP agent, for one, logs a failed handshake for every connection
 * that closes without speaking its protocol.
 */
import { connect, queueExists } from '../../stream';
import { TunnelError } from '../../common/errors';

/**
 * Resolves true when a publisher holds `queue`, false when nothing is
 * published there. Rejects with the connection's TunnelError when the broker
 * cannot be reached or refuses the login.
 */
export async function isPublished(url: string, queue: string, connectionName = 'VS Code amqp-tunnel probe'): Promise<boolean> {
  return (await publishedQueues(url, [queue], connectionName)).get(queue) ?? false;
}

/**
 * The same check for several queues over one broker connection (a channel
 * per queue: a failed passive declare closes its channel).
 */
export async function publishedQueues(url: string, queues: readonly string[], connectionName = 'VS Code amqp-tunnel probe'): Promise<Map<string, boolean>> {
  // A check, not a tunnel: no queues declared ahead of need.
  const conn = await connect(url, { connectionName, livenessInterval: 0, warmQueues: 0 });
  const out = new Map<string, boolean>();
  try {
    for (const queue of queues) {
      const ch = await conn.openChannel();
      let published: boolean;
      try {
        published = await queueExists(ch, queue);
      } catch (err) {
        throw new TunnelError('ERR_AMQP_BROKER', `could not check queue '${queue}': ${(err as Error).message}`, { cause: err });
      }
      await ch.close().catch(() => undefined);
      out.set(queue, published);
    }
    return out;
  } finally {
    await conn.close().catch(() => undefined);
  }
}
