/**
 * Start (or reuse) the forward a debugger attaches to, after checking that
 * something is published on the queue, so every way in (task, `amqpTunnel`
 * property, command variable, tree action) fails the same way, at once, with
 * a message that names the queue and the broker.
 */
import { redactUrl } from '../../stream/url';
import type { Services } from '../services';
import type { TunnelEntry } from '../manager';
import { scrub } from '../model';
import { formatHostPort, parseBind } from '../../tunnel/spec';
import { nothingPublishedMessage } from './fields';
import { isPublished } from './probe';

export interface ForwardRequest {
  queue: string;
  /** A broker name; default: the first configured broker. */
  broker?: string;
  /** Local port; undefined reuses any running forward of the queue, else picks a free port. */
  localPort?: number;
}

export interface ForwardResult {
  entry: TunnelEntry;
  /** True when this call started the forward (it was not running before). */
  started: boolean;
  /** True when the forward was listed already, stopped or failed, and this call restarted it. */
  restarted?: boolean;
  host: string;
  port: number;
}

/** A failure to show as it is: the message names the queue, the broker and what to do. */
export class DebugTunnelError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'DebugTunnelError';
  }
}

/** The broker name a request means, or a DebugTunnelError when there is none. */
export function brokerFor(s: Services, name: string | undefined): { name: string; address: string } {
  const brokers = s.brokers.list();
  const b = name === undefined ? brokers[0] : brokers.find((x) => x.name === name);
  if (!b) {
    throw new DebugTunnelError(
      name === undefined
        ? 'no broker is configured — add one with "AMQP Tunnel: Add Broker" (the setting amqpTunnel.brokers)'
        : `no broker named '${name}' is configured — add it with "AMQP Tunnel: Add Broker" or fix the name (known: ${brokers.map((x) => `'${x.name}'`).join(', ') || 'none'})`,
    );
  }
  return { name: b.name, address: redactUrl(b.url) };
}

/** Check that `queue` has a publisher on the broker; throws a DebugTunnelError saying why not. */
export async function checkPublished(s: Services, queue: string, brokerName: string, brokerAddress: string): Promise<void> {
  let published: boolean;
  try {
    published = await isPublished(await s.brokers.connectUrl(brokerName), queue);
  } catch (err) {
    const text = scrub((err as Error).message ?? String(err), s.brokers.knownSecrets);
    throw new DebugTunnelError(`broker '${brokerName}' (${brokerAddress}): ${text}`, (err as { code?: string }).code);
  }
  if (!published) throw new DebugTunnelError(nothingPublishedMessage(queue, brokerName, brokerAddress), 'ECONNREFUSED');
}

/** Check the queue, then start or reuse a forward of it; resolves once the forward listens. */
export async function ensureForward(s: Services, req: ForwardRequest): Promise<ForwardResult> {
  const broker = brokerFor(s, req.broker);
  await checkPublished(s, req.queue, broker.name, broker.address);
  const running = s.manager
    .list()
    .filter((e) => e.spec.kind === 'forward' && e.spec.broker === broker.name && e.spec.queue === req.queue && e.state === 'ready')
    .find((e) => req.localPort === undefined || req.localPort === 0 || parseBind(e.localAddress).port === req.localPort);
  if (running) return { entry: running, started: false, ...parseBind(running.localAddress) };
  // A stopped or failed forward of the queue (on the port asked for, if any) is restarted, not duplicated.
  const idle = s.manager
    .forwardsOf(broker.name, req.queue)
    .find((e) => !e.running && (req.localPort === undefined || req.localPort === 0 || parseBind(e.localAddress).port === req.localPort));
  const spec = idle?.spec ?? { kind: 'forward' as const, broker: broker.name, queue: req.queue, address: formatHostPort({ host: '127.0.0.1', port: req.localPort ?? 0 }) };
  const before = s.manager.find(spec);
  const wasRunning = before?.running ?? false;
  let entry: TunnelEntry;
  try {
    entry = await s.manager.start(spec);
  } catch (err) {
    throw new DebugTunnelError(`could not forward queue '${req.queue}' (broker '${broker.name}', ${broker.address}): ${(err as Error).message}`, (err as { code?: string }).code);
  }
  return { entry, started: !wasRunning, restarted: before !== undefined && !wasRunning, ...parseBind(entry.localAddress) };
}

/**
 * Stop a forward this extension started for a debug session or task, and
 * take it out of the view; one the user had listed (restarted for the
 * session) is only stopped again, as it was.
 */
export async function releaseForward(s: Services, entry: TunnelEntry, why: string, keepListed = false): Promise<void> {
  if (!s.manager.get(entry.id)) return;
  s.log.info(`forward ${entry.spec.queue} (${entry.localAddress}): stopping, ${why}`);
  if (keepListed) await s.manager.stop(entry);
  else await s.manager.remove(entry);
}
