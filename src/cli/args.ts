/**
 * argv -> a command config. Everything a user can get wrong on the command
 * line becomes a UsageError (exit 2) with one line that names the problem.
 */
import * as fs from 'node:fs';
import type * as tls from 'node:tls';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { ConnectOptions } from '../stream';
import { MAX_RESUME_GRACE, parseStreamUrl, redactUrl } from '../stream';
import { describeError } from '../common/errors';
import { parseBind, parseQueue, parseTarget, type HostPort } from '../tunnel';
import { HELP } from './help';
import { MIN_SECRET_BYTES } from '../stream/secure';

export const DEFAULT_BROKER = 'amqp://guest:guest@localhost:5672';

export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Common {
  /** Broker URL with credentials: never print it; print `brokerSafe`. */
  broker: string;
  brokerSafe: string;
  connectOptions: ConnectOptions;
  json: boolean;
  verbose: boolean;
  /** The tunnel secret (--secret-file, else $AMQP_TUNNEL_SECRET): never print it. */
  secret?: Buffer;
}

export type Command =
  | { kind: 'help'; text: string }
  | { kind: 'version' }
  | ({ kind: 'publish'; target: HostPort; queue: string; listed: boolean } & Common)
  | ({ kind: 'forward'; queue: string; bind: HostPort } & Common)
  | ({ kind: 'webclient'; bind: HostPort } & Common)
  | ({ kind: 'check' } & Common)
  | ({ kind: 'list'; waitMs: number } & Common)
  | ({ kind: 'run'; file: string; listed: boolean } & Common);

const COMMON_OPTIONS = {
  broker: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'tls-min': { type: 'string' },
  'external-auth': { type: 'boolean' },
  heartbeat: { type: 'string' },
  'resume-grace': { type: 'string' },
  'secret-file': { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

const COMMANDS = ['publish', 'forward', 'check', 'list', 'server', 'client', 'webclient', 'run'] as const;
type CommandName = (typeof COMMANDS)[number];

type Values = Record<string, string | boolean | undefined>;

function parse(command: CommandName, args: string[], extra: ParseArgsConfig['options'] = {}): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args, options: { ...COMMON_OPTIONS, ...extra }, allowPositionals: true, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    const code = (err as { code?: string }).code;
    const msg = describeError(err).replace(/\. To specify a positional argument.*$/, '').replace(/ \(ERR_PARSE_ARGS_[A-Z_]+\)$/, '');
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`${msg.replace(/^Unknown option/, 'unknown option')}`, command);
    throw new UsageError(msg, command);
  }
}

function positionalCount(command: CommandName, positionals: string[], min: number, max: number): void {
  if (positionals.length < min) throw new UsageError(`'${command}' needs ${min === max ? min : `at least ${min}`} argument${min === 1 ? '' : 's'}`, command);
  if (positionals.length > max) throw new UsageError(`unexpected argument '${positionals[max]}'`, command);
}

/** Turn spec-parser errors (TunnelError ERR_INVALID_ARG) into usage errors. */
function usage<T>(command: CommandName, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(describeError(err).replace(/ \((ERR_INVALID_ARG|ERR_INVALID_URL)\)$/, ''), command);
  }
}

function readPem(command: CommandName, flag: string, file: string | undefined): Buffer | undefined {
  if (file === undefined) return undefined;
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read the ${flag} file '${file}': ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`, command);
  }
}

/**
 * The tunnel secret: the file's bytes (one trailing line break dropped, as
 * `echo ... > FILE` adds one), else $AMQP_TUNNEL_SECRET. Errors name the
 * file or variable, never the content.
 */
export function readSecret(command: CommandName | undefined, file: string | undefined, env: NodeJS.ProcessEnv): Buffer | undefined {
  let secret: Buffer;
  let from: string;
  if (file !== undefined) {
    from = `the --secret-file '${file}'`;
    try {
      secret = fs.readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'it does not exist' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : describeError(err);
      throw new UsageError(`cannot read the --secret-file '${file}': ${why}`, command);
    }
  } else if (env.AMQP_TUNNEL_SECRET !== undefined) {
    from = 'AMQP_TUNNEL_SECRET';
    secret = Buffer.from(env.AMQP_TUNNEL_SECRET, 'utf8');
  } else {
    return undefined;
  }
  let end = secret.length;
  if (end > 0 && secret[end - 1] === 0x0a) end--;
  if (end > 0 && secret[end - 1] === 0x0d) end--;
  secret = secret.subarray(0, end);
  if (secret.length === 0) {
    throw new UsageError(`${from} is empty; put the tunnel secret in it (for example: openssl rand -base64 32)`, command);
  }
  if (secret.length < MIN_SECRET_BYTES) {
    throw new UsageError(
      `${from} holds ${secret.length} bytes; a tunnel secret needs at least ${MIN_SECRET_BYTES} (for example: openssl rand -base64 32)`,
      command,
    );
  }
  return secret;
}

function common(command: CommandName, values: Values, env: NodeJS.ProcessEnv, brokerFromUrl?: string): Common {
  const broker = brokerFromUrl ?? (values.broker as string | undefined) ?? env.AMQP_URL ?? DEFAULT_BROKER;
  const parsed = usage(command, () => parseStreamUrl(broker));
  const connectOptions: ConnectOptions = {};
  const ca = readPem(command, '--ca', values.ca as string | undefined);
  const cert = readPem(command, '--cert', values.cert as string | undefined);
  const key = readPem(command, '--key', values.key as string | undefined);
  if (ca) connectOptions.ca = ca;
  if (cert) connectOptions.cert = cert;
  if (key) connectOptions.key = key;
  const tlsMin = values['tls-min'] as string | undefined;
  if (tlsMin !== undefined) {
    const v = /^(?:TLSv)?(1\.[0-3])$/i.exec(tlsMin)?.[1];
    if (!v) throw new UsageError(`--tls-min '${tlsMin}' is not a TLS version; use 1.2 or 1.3`, command);
    connectOptions.minVersion = `TLSv${v}` as tls.SecureVersion;
  }
  if (values['external-auth']) {
    if (!cert || !key) throw new UsageError('--external-auth needs a client certificate: give --cert and --key', command);
    connectOptions.externalAuth = true;
  }
  const hb = values.heartbeat as string | undefined;
  if (hb !== undefined) {
    if (!/^\d{1,4}$/.test(hb)) throw new UsageError(`--heartbeat '${hb}' is not a number of seconds`, command);
    connectOptions.heartbeat = Number(hb);
  }
  const grace = values['resume-grace'] as string | undefined;
  if (grace !== undefined) {
    if (!/^\d{1,5}$/.test(grace) || Number(grace) > MAX_RESUME_GRACE) {
      throw new UsageError(`--resume-grace '${grace}' is not a number of seconds from 0 (off) to ${MAX_RESUME_GRACE}`, command);
    }
    // 0 turns `resume` off: open connections are reset on a drop, and a dead peer is noticed at once.
    connectOptions.resumeGrace = Number(grace);
  }
  return {
    broker: parsed.brokerUrl,
    brokerSafe: parsed.safeUrl,
    connectOptions,
    json: Boolean(values.json),
    verbose: Boolean(values.verbose),
    secret: readSecret(command, values['secret-file'] as string | undefined, env),
  };
}

/** Parse a Go-style stream URL: the broker plus its required server_queue. */
function goUrl(command: CommandName, url: string): { broker: string; queue: string } {
  const parsed = usage(command, () => parseStreamUrl(url));
  if (!parsed.serverQueue) {
    throw new UsageError(`'${redactUrl(url)}' names no queue; add ?server_queue=NAME to the URL`, command);
  }
  return { broker: parsed.brokerUrl, queue: usage(command, () => parseQueue(parsed.serverQueue!)) };
}

export function parseCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): Command {
  const [first, ...rest] = argv;
  if (first === undefined) throw new UsageError('no command given; try amqp-tunnel --help');
  if (first === '--help' || first === '-h' || first === 'help') {
    const topic = rest[0] as CommandName | undefined;
    return { kind: 'help', text: topic && topic in HELP ? HELP[topic] : HELP.main };
  }
  if (first === '--version' || first === '-V') return { kind: 'version' };
  if (!(COMMANDS as readonly string[]).includes(first)) {
    throw new UsageError(
      first.startsWith('-') ? `unknown option '${first}' before the command` : `unknown command '${first}'; commands: ${COMMANDS.join(', ')}`,
    );
  }
  const command = first as CommandName;
  const unlisted = { unlisted: { type: 'boolean' } } as const;
  const extra: ParseArgsConfig['options'] =
    command === 'publish'
      ? { queue: { type: 'string', short: 'q' }, ...unlisted }
      : command === 'server' || command === 'run'
        ? unlisted
        : command === 'list'
          ? { wait: { type: 'string' } }
          : {};
  const { values, positionals } = parse(command, rest, extra);
  if (values.help) return { kind: 'help', text: HELP[command] };

  switch (command) {
    case 'publish': {
      positionalCount(command, positionals, 1, 1);
      const target = usage(command, () => parseTarget(positionals[0]!));
      const q = values.queue as string | undefined;
      if (q === undefined) throw new UsageError('publish needs --queue NAME (the name forwarders connect to)', command);
      const queue = usage(command, () => parseQueue(q));
      return { kind: 'publish', target, queue, listed: !values.unlisted, ...common(command, values, env) };
    }
    case 'forward': {
      positionalCount(command, positionals, 1, 2);
      const queue = usage(command, () => parseQueue(positionals[0]!));
      const bind = usage(command, () => parseBind(positionals[1] ?? '0'));
      return { kind: 'forward', queue, bind, ...common(command, values, env) };
    }
    case 'server': {
      positionalCount(command, positionals, 2, 2);
      const target = usage(command, () => parseTarget(positionals[0]!, { emptyHost: '127.0.0.1' }));
      const { broker, queue } = goUrl(command, positionals[1]!);
      return { kind: 'publish', target, queue, listed: !values.unlisted, ...common(command, values, env, broker) };
    }
    case 'client': {
      positionalCount(command, positionals, 2, 2);
      const bind = usage(command, () => parseBind(positionals[0]!, { emptyHost: '0.0.0.0' }));
      const { broker, queue } = goUrl(command, positionals[1]!);
      return { kind: 'forward', queue, bind, ...common(command, values, env, broker) };
    }
    case 'webclient': {
      positionalCount(command, positionals, 2, 2);
      const bind = usage(command, () => parseBind(positionals[0]!, { emptyHost: '0.0.0.0' }));
      const broker = usage(command, () => parseStreamUrl(positionals[1]!)).brokerUrl;
      return { kind: 'webclient', bind, ...common(command, values, env, broker) };
    }
    case 'check':
      positionalCount(command, positionals, 0, 0);
      return { kind: 'check', ...common(command, values, env) };
    case 'list': {
      positionalCount(command, positionals, 0, 0);
      const wait = (values.wait as string | undefined) ?? '500';
      if (!/^\d{1,5}$/.test(wait) || Number(wait) < 50) throw new UsageError(`--wait '${wait}' is not a number of milliseconds (50 or more)`, command);
      return { kind: 'list', waitMs: Number(wait), ...common(command, values, env) };
    }
    case 'run':
      positionalCount(command, positionals, 1, 1);
      return { kind: 'run', file: positionals[0]!, listed: !values.unlisted, ...common(command, values, env) };
  }
}
