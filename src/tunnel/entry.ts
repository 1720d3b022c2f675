/**
 * One entry of a tunnel list: the CLI's `tunnels.json` (`amqp-tunnel run`)
 * and the extension's `amqpTunnel.tunnels` setting share this shape, and
 * this one parser, so the two never read an entry differently:
 *
 *     { "forward": "QUEUE", "bind": "[host:]port" }   bind optional (default 0: a free port);
 *                                                     a number is a port ("bind": 9229)
 *     { "publish": "[host:]port", "queue": "QUEUE" }  publish may be a number too ("publish": 9229)
 *
 * Other keys (the extension's "broker") are left to the caller.
 */
import { TunnelError } from '../common/errors';
import { parseBind, parseQueue, parseTarget, type HostPort } from './spec';

export type TunnelListEntry = { kind: 'forward'; queue: string; bind: HostPort } | { kind: 'publish'; queue: string; target: HostPort };

/** An address given as a string or, for a bare port, a number. */
function addressText(value: unknown, key: string): string {
  if (typeof value === 'number' && Number.isInteger(value)) return String(value);
  if (typeof value === 'string') return value;
  throw new TunnelError('ERR_INVALID_ARG', `"${key}" must be "[host:]port" or a port number, not ${JSON.stringify(value)}`);
}

/** Parse one entry; throws an ERR_INVALID_ARG TunnelError whose message says what is wrong. */
export function parseTunnelEntry(value: unknown): TunnelListEntry {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new TunnelError('ERR_INVALID_ARG', 'an entry must be an object such as { "forward": "my-app", "bind": "9229" }');
  const e = value as Record<string, unknown>;
  if (e.forward !== undefined && e.publish !== undefined) throw new TunnelError('ERR_INVALID_ARG', 'an entry has both "forward" and "publish"; give one');
  if (typeof e.forward === 'string') {
    return { kind: 'forward', queue: parseQueue(e.forward), bind: parseBind(e.bind === undefined ? '0' : addressText(e.bind, 'bind')) };
  }
  if (e.publish !== undefined) {
    if (typeof e.queue !== 'string') throw new TunnelError('ERR_INVALID_ARG', `the entry publishing ${String(e.publish)} needs "queue"`);
    return { kind: 'publish', queue: parseQueue(e.queue), target: parseTarget(addressText(e.publish, 'publish')) };
  }
  if (e.forward !== undefined) throw new TunnelError('ERR_INVALID_ARG', `"forward" must be a queue name, not ${JSON.stringify(e.forward)}`);
  throw new TunnelError('ERR_INVALID_ARG', 'each entry needs "publish": "[host:]port" with "queue", or "forward": "QUEUE" with optional "bind"');
}
