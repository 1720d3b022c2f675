/**
 * The `amqp-tunnel` command: argv -> config -> tunnels -> wait for a signal.
 * The only place that prints or exits. Exit codes: 0 clean stop, 1 runtime
 * failure, 2 usage error. Every failure is one line, never a stack trace.
 */
import * as fs from 'node:fs';
import { describeError } from '../common/errors';
import { VERSION } from '../common/version';
import {
  PublishTunnel,
  brokerTransport,
  formatHostPort,
  forward,
  parseTunnelEntry,
  publish,
  webForward,
  type Transport,
  type Tunnel,
} from '../tunnel';
import { parseStreamUrl } from '../stream';
import { parseCommand, UsageError, type Command, type Common } from './args';
import { runCheck } from './check';
import { runList } from './list';
import { Output } from './output';

async function main(argv: string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseCommand(argv);
  } catch (err) {
    const json = argv.includes('--json');
    const out = new Output(json, false);
    if (err instanceof UsageError) {
      out.fatal(err.message, `see amqp-tunnel ${err.command ? `${err.command} ` : ''}--help`);
      return 2;
    }
    out.fatal(describeError(err));
    return 2;
  }
  if (cmd.kind === 'help') {
    process.stdout.write(`${cmd.text}\n`);
    return 0;
  }
  if (cmd.kind === 'version') {
    process.stdout.write(`amqp-tunnel ${VERSION}\n`);
    return 0;
  }
  const out = new Output(cmd.json, cmd.verbose);
  if (cmd.kind === 'check') return runCheck(cmd, out);
  if (cmd.kind === 'list') return runList(cmd, out);

  let tunnels: Tunnel[];
  let shared: Transport | undefined;
  try {
    ({ tunnels, shared } = buildTunnels(cmd, out));
  } catch (err) {
    out.fatal(describeError(err).replace(/ \((ERR_INVALID_ARG|ERR_INVALID_URL)\)$/, ''), cmd.kind === 'run' ? `see amqp-tunnel run --help` : undefined);
    return 2;
  }
  return runTunnels(tunnels, shared, cmd, out);
}

interface RunFile {
  broker?: unknown;
  tunnels?: unknown;
}

function buildTunnels(cmd: Exclude<Command, { kind: 'help' | 'version' | 'check' | 'list' }>, out: Output): { tunnels: Tunnel[]; shared?: Transport } {
  const logger = out.logger();
  const base = { broker: cmd.broker, connectOptions: { ...cmd.connectOptions, logger }, logger, secret: cmd.secret };
  switch (cmd.kind) {
    case 'publish':
      return { tunnels: [publish({ ...base, target: cmd.target, queue: cmd.queue, listed: cmd.listed })] };
    case 'forward':
      return { tunnels: [forward({ ...base, bind: cmd.bind, queue: cmd.queue })] };
    case 'webclient':
      return { tunnels: [webForward({ ...base, bind: cmd.bind })] };
    case 'run': {
      let spec: RunFile;
      try {
        spec = JSON.parse(fs.readFileSync(cmd.file, 'utf8')) as RunFile;
      } catch (err) {
        throw new UsageError(`cannot read ${cmd.file}: ${describeError(err)}`, 'run');
      }
      let broker = cmd.broker;
      let brokerSafe = cmd.brokerSafe;
      if (typeof spec.broker === 'string') {
        const p = parseStreamUrl(spec.broker);
        broker = p.brokerUrl;
        brokerSafe = p.safeUrl;
      }
      if (!Array.isArray(spec.tunnels) || spec.tunnels.length === 0) {
        throw new UsageError(`${cmd.file} has no "tunnels" list`, 'run');
      }
      cmd.brokerSafe = brokerSafe;
      const transport = brokerTransport(broker, { ...cmd.connectOptions, logger }, brokerSafe);
      const tunnels = spec.tunnels.map((t: unknown, i: number): Tunnel => {
        const entry = (t ?? {}) as Record<string, unknown>;
        const where = `${cmd.file}: tunnels[${i}]`;
        try {
          const e = parseTunnelEntry(entry);
          return e.kind === 'publish'
            ? publish({ transport, logger, secret: cmd.secret, target: e.target, queue: e.queue, listed: cmd.listed })
            : forward({ transport, logger, secret: cmd.secret, queue: e.queue, bind: e.bind });
        } catch (err) {
          throw new UsageError(`${where}: ${describeError(err).replace(/ \(ERR_INVALID_ARG\)$/, '')}`, 'run');
        }
      });
      return { tunnels, shared: transport };
    }
  }
}

/** The one sentence on the risk of a publish without a secret, and what to do. */
function unprotectedWarning(t: Tunnel): string {
  const target = t instanceof PublishTunnel ? formatHostPort(t.target) : 'the published port';
  return `no tunnel secret is set, so anyone who can use this broker and knows the queue name '${t.queue}' can connect to ${target} (for a debug port: run code on this machine) — set the same secret on both sides with --secret-file FILE or AMQP_TUNNEL_SECRET (see docs/security.md)`;
}

async function runTunnels(tunnels: Tunnel[], shared: Transport | undefined, cfg: Common, out: Output): Promise<number> {
  for (const t of tunnels) out.watch(t, cfg.brokerSafe);
  let signals = 0;
  let stopRequested!: () => void;
  const stopSignal = new Promise<void>((resolve) => (stopRequested = resolve));
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      out.fatal(`second ${sig}: exiting without closing streams`);
      process.exit(1);
    }
    out.line('info', `${sig}: closing streams (send it again to exit at once)`);
    stopRequested();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const stopAll = async (): Promise<void> => {
    out.stopStatus();
    await Promise.all(tunnels.map((t) => t.stop()));
    await shared?.close().catch(() => undefined);
  };

  try {
    await Promise.race([Promise.all(tunnels.map((t) => t.ready)), stopSignal]);
  } catch (err) {
    out.fatal(describeError(err));
    await stopAll();
    return 1;
  }
  out.starting = false;
  out.event('ready', { tunnels: tunnels.map((t) => t.stats()) });
  if (!cfg.secret) {
    for (const t of tunnels) if (t.kind === 'publish') out.line('warn', unprotectedWarning(t));
  }
  out.startStatus(() => tunnels.map((t) => t.stats()));
  await stopSignal;
  await stopAll();
  out.event('stopped', {});
  return 0;
}

process.on('uncaughtException', (err) => {
  process.stderr.write(`amqp-tunnel: internal error: ${describeError(err)}\n`);
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`amqp-tunnel: internal error: ${describeError(err)}\n`);
  process.exit(1);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Give stdout a moment to drain, then leave even if a handle lingers.
    setTimeout(() => process.exit(code), 50).unref();
  },
  (err: unknown) => {
    process.stderr.write(`amqp-tunnel: ${describeError(err)}\n`);
    process.exit(1);
  },
);
