/**
 * The extension's plain data: tunnel specs as kept in settings, broker
 * entries, input checks for the prompts, and the words the tree and status
 * bar show. No vscode import, so all of it is unit-tested without an editor.
 *
 * `amqpTunnel.tunnels` uses the same shape as the CLI's tunnels.json, plus
 * the broker's name:
 *
 *     { "forward": "my-app", "bind": "127.0.0.1:9229", "broker": "local" }
 *     { "publish": "127.0.0.1:9229", "queue": "my-app", "broker": "local" }
 */
import { parseBind, parseTarget, formatHostPort, type HostPort } from '../tunnel/spec';
import { parseTunnelEntry } from '../tunnel/entry';
import { parseStreamUrl, queueNameProblem, redactUrl } from '../stream/url';

export type TunnelKind = 'forward' | 'publish';

/** What it takes to start a tunnel again: the kind, the broker's name, the queue and the local address. */
export interface TunnelSpec {
  kind: TunnelKind;
  broker: string;
  queue: string;
  /** forward: where to listen; publish: what to connect to. "host:port". */
  address: string;
}

export interface BrokerEntry {
  name: string;
  /** amqp[s]://user@host[:port][/vhost], no password. */
  url: string;
}

export type KeptTunnel =
  | { forward: string; bind?: string; broker?: string }
  | { publish: string; queue: string; broker?: string };

export const DEFAULT_BROKER_URL = 'amqp://localhost:5672';

/** A stable key: two specs with the same key are the same tunnel. */
export function specKey(s: TunnelSpec): string {
  return JSON.stringify([s.kind, s.broker, s.queue, s.address]);
}

/**
 * One `amqpTunnel.tunnels` entry as a spec, or a sentence saying what is
 * wrong with it. The entry itself is read by the CLI's parser (src/tunnel/entry.ts),
 * so a tunnels.json entry means the same in both; only "broker" is ours.
 */
export function specFromKept(entry: unknown, defaultBroker: string | undefined): TunnelSpec | string {
  if (!entry || typeof entry !== 'object') return 'an entry is not an object';
  const e = entry as Record<string, unknown>;
  const broker = typeof e.broker === 'string' ? e.broker : defaultBroker;
  if (!broker) return 'an entry names no broker and no broker is configured';
  try {
    const t = parseTunnelEntry(entry);
    return t.kind === 'forward'
      ? { kind: 'forward', broker, queue: t.queue, address: formatHostPort(t.bind) }
      : { kind: 'publish', broker, queue: t.queue, address: formatHostPort(t.target) };
  } catch (err) {
    return (err as Error).message;
  }
}

/** The settings entry for a spec (what "Keep Tunnel" writes). */
export function keptFromSpec(s: TunnelSpec): KeptTunnel {
  return s.kind === 'forward' ? { forward: s.queue, bind: s.address, broker: s.broker } : { publish: s.address, queue: s.queue, broker: s.broker };
}

/** The settings `amqpTunnel.brokers` as entries; bad ones are reported, not thrown. */
export function parseBrokers(value: unknown): { brokers: BrokerEntry[]; problems: string[] } {
  const brokers: BrokerEntry[] = [];
  const problems: string[] = [];
  if (!Array.isArray(value)) return { brokers, problems: value === undefined ? [] : ['amqpTunnel.brokers is not a list'] };
  for (const b of value) {
    const name = (b as BrokerEntry)?.name;
    const url = (b as BrokerEntry)?.url;
    if (typeof name !== 'string' || typeof url !== 'string' || !name.trim()) {
      problems.push('a broker entry needs a "name" and a "url"');
      continue;
    }
    if (brokers.some((x) => x.name === name)) {
      problems.push(`the broker name '${name}' appears twice; the first entry is used`);
      continue;
    }
    brokers.push({ name, url });
  }
  return { brokers, problems };
}

// ---- input checks: undefined when fine, else a sentence for the input box ----

export function queueInputProblem(value: string): string | undefined {
  if (value.trim() !== value) return 'remove the spaces at the start or end of the queue name';
  return queueNameProblem(value);
}

export function bindInputProblem(value: string): string | undefined {
  try {
    parseBind(value);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export function targetInputProblem(value: string): string | undefined {
  try {
    parseTarget(value);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export function brokerNameProblem(value: string, existing: readonly string[]): string | undefined {
  const v = value.trim();
  if (!v) return 'give the broker a name, such as "local" or "staging"';
  if (existing.includes(v)) return `a broker named '${v}' exists already; choose another name`;
  return undefined;
}

export function brokerUrlProblem(value: string): string | undefined {
  try {
    const u = parseStreamUrl(value.trim());
    if (u.serverQueue) return 'leave out ?server_queue=: the queue is asked for when you start a tunnel';
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Split a URL a user typed into the URL kept in settings (no password) and the password, if any. */
export function splitBrokerUrl(value: string): { url: string; password?: string } {
  const u = new URL(value.trim());
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  u.password = '';
  return { url: u.toString().replace(/\/$/, ''), password };
}

/**
 * The URL to connect with: the settings URL with the stored password (if
 * any) put in. Without a stored password, RabbitMQ's default user guest logs
 * in with its default password guest (as a URL without a user does).
 */
export function brokerConnectUrl(url: string, password: string | undefined): string {
  if (password === undefined) {
    const plain = new URL(url);
    if (decodeURIComponent(plain.username) !== 'guest' || plain.password) return url;
    password = 'guest';
  }
  const u = new URL(url);
  if (!u.username) u.username = 'guest';
  u.password = encodeURIComponent(password);
  return u.toString();
}

/**
 * The default queue for publishing a port: "<hostname>-<port>", made a valid
 * queue name, plus a random `suffix` when given ("devbox-9229-3fa2c1"), so
 * that a broker user who knows the host name cannot guess it (a secret is
 * still the protection; this only keeps a port without one from being found
 * by guessing).
 */
export function defaultPublishQueue(hostname: string, target: HostPort | string, suffix?: string): string {
  const port = typeof target === 'string' ? parseTarget(target).port : target.port;
  const host = hostname.toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^amq\./, 'amq-') || 'host';
  return suffix ? `${host}-${port}-${suffix}` : `${host}-${port}`;
}

// ---- words for the tree and the status bar ----

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Known secrets at least this long are masked wherever they appear (a tunnel secret has 16 bytes or more). */
export const SCRUB_ANYWHERE_MIN = 16;

/**
 * Scrub a message before it is shown or logged: passwords where they stand,
 * not every matching substring. That is the password of a URL's userinfo
 * (`amqp://user:PASSWORD@host`, also without a scheme for a known secret,
 * raw or percent-encoded) and the value of a `password=`/`password:` field.
 * A short password that is also a user name or part of a queue name
 * (RabbitMQ's default guest/guest) leaves those alone: masking every
 * occurrence showed "refused the login of user '***'" and `amqp://***@localhost`.
 * Long known secrets (tunnel secrets, at least 16 bytes, random) cannot be
 * mistaken for a name and are masked wherever they appear.
 */
export function scrub(text: string, secrets: Iterable<string> = []): string {
  let out = redactUrl(text).replace(/\b(password|passwd|pwd)(["']?\s*[:=]\s*["']?)([^\s"'`,;&}]+)/gi, '$1$2***');
  for (const secret of secrets) {
    if (!secret) continue;
    for (const form of new Set([secret, encodeURIComponent(secret)])) {
      out = out.split(`:${form}@`).join('@');
      if (secret.length >= SCRUB_ANYWHERE_MIN) out = out.split(form).join('***');
    }
  }
  return out;
}
