/**
 * The tunnel spec grammar: what a user types to name a port, an address or a queue.
 *
 *     port      = 0..65535 in decimal, no sign, no spaces ("9229")
 *     host      = a host name ("localhost", "db.internal"), an IPv4 address
 *                 ("10.0.0.5") or an IPv6 address in brackets ("[::1]")
 *     bind      = [host:]port       where to listen locally (forward);
 *                                   host defaults to 127.0.0.1, port 0 picks a free port
 *     target    = [host:]port       where to connect on the publishing machine (publish);
 *                                   host defaults to 127.0.0.1, port must be 1..65535
 *     queue     = 1..255 bytes, no control characters, not starting with "amq."
 *
 * Go bridge addresses (`server :9229`, `client :9229`) write an empty host
 * before the colon; as in Go's `net.Listen`/`net.Dial`, an empty host means
 * every interface when listening (0.0.0.0) and the local machine when dialing.
 * Pass `emptyHost` to choose what an empty host means; without it, it is an error.
 */
import * as net from 'node:net';
import { TunnelError } from '../common/errors';
import { queueNameProblem } from '../stream';

export interface HostPort {
  host: string;
  port: number;
}

export const DEFAULT_HOST = '127.0.0.1';

export interface AddressOptions {
  /** What a spec like ":9229" means; when unset, an empty host is rejected. */
  emptyHost?: string;
  /** Host when the spec is only a port (default 127.0.0.1). */
  defaultHost?: string;
}

function invalid(message: string): TunnelError {
  return new TunnelError('ERR_INVALID_ARG', message);
}

/** Parse a decimal port; `allowZero` for listening ("pick a free port"). */
export function parsePort(text: string, what = 'port', allowZero = false): number {
  const t = text.trim();
  if (!/^\d{1,5}$/.test(t)) {
    throw invalid(`'${text}' is not a valid ${what}: give a number from ${allowZero ? 0 : 1} to 65535, for example 9229`);
  }
  const port = Number(t);
  if (port > 65535 || (!allowZero && port === 0)) {
    throw invalid(`${what} ${port} is out of range (give a number from ${allowZero ? 0 : 1} to 65535)`);
  }
  return port;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;

function parseHost(text: string, spec: string, what: string): string {
  if (text.startsWith('[')) {
    if (!text.endsWith(']') || text.length < 3) throw invalid(`'${spec}' is not a valid ${what}: an IPv6 address goes in brackets, as in [::1]:9229`);
    const inner = text.slice(1, -1);
    if (!/^[0-9A-Fa-f:.%a-zA-Z0-9]+$/.test(inner) || !inner.includes(':')) {
      throw invalid(`'${spec}' is not a valid ${what}: '${inner}' is not an IPv6 address`);
    }
    return inner;
  }
  if (!HOSTNAME.test(text)) {
    throw invalid(`'${spec}' is not a valid ${what}: '${text}' is not a host name or IP address (write [host:]port, for example 127.0.0.1:9229)`);
  }
  return text;
}

function parseAddress(spec: string, what: string, allowZero: boolean, options: AddressOptions): HostPort {
  const s = spec.trim();
  if (s === '') throw invalid(`the ${what} is empty: write [host:]port, for example 9229 or 127.0.0.1:9229`);
  const colon = s.lastIndexOf(':');
  // A bare IPv6 address without brackets has several colons: insist on brackets.
  if (colon >= 0 && !s.startsWith('[') && s.indexOf(':') !== colon) {
    throw invalid(`'${spec}' is not a valid ${what}: put an IPv6 address in brackets, as in [::1]:9229`);
  }
  if (colon < 0) {
    if (s.startsWith('[')) throw invalid(`'${spec}' is not a valid ${what}: add the port after the address, as in [::1]:9229`);
    return { host: options.defaultHost ?? DEFAULT_HOST, port: portOf(s, spec, what, allowZero) };
  }
  const hostText = s.slice(0, colon);
  const portText = s.slice(colon + 1);
  if (portText === '') throw invalid(`'${spec}' is not a valid ${what}: the port after ':' is missing`);
  const port = portOf(portText, spec, what, allowZero);
  if (hostText === '') {
    if (options.emptyHost === undefined) {
      throw invalid(`'${spec}' is not a valid ${what}: the host before ':' is missing (write ${port} or 127.0.0.1:${port})`);
    }
    return { host: options.emptyHost, port };
  }
  return { host: parseHost(hostText, spec, what), port };
}

function portOf(text: string, spec: string, what: string, allowZero: boolean): number {
  try {
    return parsePort(text, 'port', allowZero);
  } catch (err) {
    throw invalid(`'${spec.trim()}' is not a valid ${what}: ${(err as Error).message}`);
  }
}

/** `[bind:]port` — a local address to listen on; port 0 picks a free one. */
export function parseBind(spec: string, options: AddressOptions = {}): HostPort {
  return parseAddress(spec, 'listen address', true, options);
}

/** `[host:]port` — the TCP service a publisher connects to; port 1..65535. */
export function parseTarget(spec: string, options: AddressOptions = {}): HostPort {
  return parseAddress(spec, 'target address', false, options);
}

/** A queue name a user typed, checked (returned unchanged when fine). */
export function parseQueue(name: string): string {
  const problem = queueNameProblem(name);
  if (problem) throw invalid(problem);
  return name;
}

/** "127.0.0.1:9229", "[::1]:9229". */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A TCP port that is free on `host` right now (the OS picks it; another process may take it later). */
export function freePort(host = DEFAULT_HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
