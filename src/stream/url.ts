/**
 * Stream addresses, in the Go library's form:
 *
 *     amqp[s]://user:password@host[:port][/vhost]?server_queue=NAME
 *
 * `server_queue` names the listener's control queue. Any other query
 * parameter (heartbeat, frameMax, ...) is passed on to amqplib. Printed
 * addresses never contain the password: `safeUrl` drops it, and the socket's
 * address strings add `local_queue=` / `remote_queue=` as the Go library does.
 */
import { TunnelError } from '../common/errors';

export interface StreamUrl {
  /** The broker URL handed to amqplib: credentials kept, `server_queue` removed. */
  brokerUrl: string;
  /** The broker URL for messages and logs: no password, no `server_queue`. */
  safeUrl: string;
  protocol: 'amqp:' | 'amqps:';
  host: string;
  port: number;
  vhost: string;
  username: string;
  /** The password, if the URL had one; callers must never print it. */
  password: string;
  serverQueue?: string;
}

/** Parse an AMQP URL, optionally with `server_queue`; a clear error for anything else. */
export function parseStreamUrl(input: string): StreamUrl {
  let u: URL;
  try {
    u = new URL(input);
  } catch (cause) {
    throw new TunnelError(
      'ERR_INVALID_URL',
      `'${redactUrl(input)}' is not a broker URL; expected amqp[s]://user:password@host[:port][/vhost]`,
      { cause },
    );
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') {
    throw new TunnelError(
      'ERR_INVALID_URL',
      `'${redactUrl(input)}' uses ${u.protocol}//; a broker URL starts with amqp:// or amqps://`,
    );
  }
  if (!u.hostname) {
    throw new TunnelError('ERR_INVALID_URL', `'${redactUrl(input)}' names no broker host`);
  }
  const serverQueue = u.searchParams.get('server_queue') ?? undefined;
  u.searchParams.delete('server_queue');
  const protocol = u.protocol;
  const port = u.port ? Number(u.port) : protocol === 'amqps:' ? 5671 : 5672;
  const vhost = u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/';
  const username = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  const brokerUrl = u.toString();
  const safe = new URL(brokerUrl);
  safe.password = '';
  return {
    brokerUrl,
    safeUrl: safe.toString(),
    protocol,
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    vhost,
    username,
    password,
    serverQueue: serverQueue === '' ? undefined : serverQueue,
  };
}

/** Remove the password from every URL-looking credential in `text` (for errors and logs). */
export function redactUrl(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*):[^@/?#\s]*@/gi, '$1@');
}

/** The Go-style address of one end of a stream (no password). */
export function formatStreamAddress(safeUrl: string, serverQueue: string, local?: string, remote?: string): string {
  const u = new URL(safeUrl);
  u.searchParams.set('server_queue', serverQueue);
  if (local) u.searchParams.set('local_queue', local);
  if (remote) u.searchParams.set('remote_queue', remote);
  return u.toString();
}

/**
 * Check a queue name a user typed. AMQP names are at most 255 bytes, and
 * names starting with "amq." are reserved by the broker.
 * Returns undefined when fine, else a sentence explaining what to change.
 */
export function queueNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'the queue name is empty; give a name such as "my-app-debug"';
  if (Buffer.byteLength(name, 'utf8') > 255) return `the queue name is ${Buffer.byteLength(name)} bytes long; AMQP allows at most 255`;
  if (name.startsWith('amq.')) return `queue names starting with "amq." are reserved by the broker; choose another name than '${name}'`;
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'the queue name contains control characters';
  return undefined;
}

/** Throw ERR_INVALID_ARG when `name` is not a usable queue name. */
export function assertQueueName(name: string): void {
  const problem = queueNameProblem(name);
  if (problem) throw new TunnelError('ERR_INVALID_ARG', problem);
}
