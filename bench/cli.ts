/**
 * npm run bench (the default mode): what users run, against its limits, on
 * loopback against the broker at AMQP_URL.
 *
 * Systems, each measured in every round, in a rotating order:
 * - direct TCP: the benchmark's client straight to the target service (the limit);
 * - raw amqplib: two processes, each with its own broker connection (noDelay
 *   on): publisher -> consumer for bulk (128 KiB and 1 MiB bodies), and a
 *   request/echo round trip;
 * - the CLI pair: `node dist/cli.js publish` + `node dist/cli.js forward`, two
 *   processes with a broker connection each, around the same target service;
 *   `--pair-args "..."` adds another pair with extra CLI arguments (each its own row).
 *
 * Metrics: upload and download (SHA-256 checked), round trips of 1 B and
 * 1 KiB (p50/p99), connect + first echoed byte (p50/p99), 100 connections x
 * 1 MiB echoed at once, fairness (a 1-byte round trip while another stream
 * of the same pair runs a bulk transfer), a slow reader (largest broker queue
 * depth, peak RSS of each process) and peak RSS during bulk. The table gives
 * medians over rounds, min-max, same-round ratios and the targets of issue 10.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as amqp from 'amqplib';
import * as client from './client';
import { MiB, PeakRss, QueueDepth, median, quantile } from './measure';
import { patternDigest } from './pattern';
import { CLI, CliPair, Helper, ROOT } from './procs';

const URL_ = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

interface Config {
  rounds: number;
  bulk: number;
  rttN: number;
  rttWarm: number;
  connectN: number;
  connectWarm: number;
  concK: number;
  concSize: number;
  slowBytes: number;
  slowRate: number;
  fairN: number;
  fairWarm: number;
}
const FULL: Config = {
  rounds: 5,
  bulk: 256 * MiB,
  rttN: 2000,
  rttWarm: 200,
  connectN: 200,
  connectWarm: 10,
  concK: 100,
  concSize: MiB,
  slowBytes: 32 * MiB,
  slowRate: 1_000_000,
  fairN: 300,
  fairWarm: 30,
};
const QUICK: Config = {
  rounds: 2,
  bulk: 16 * MiB,
  rttN: 200,
  rttWarm: 50,
  connectN: 20,
  connectWarm: 3,
  concK: 25,
  concSize: MiB,
  slowBytes: 6 * MiB,
  slowRate: 1_000_000,
  fairN: 100,
  fairWarm: 20,
};

const GROUPS = ['bulk', 'rtt', 'connect', 'conc', 'fair', 'slow'] as const;
type Group = (typeof GROUPS)[number];

interface Args {
  config: Config;
  quick: boolean;
  json?: string;
  pairArgs: string[][];
  pairClis: string[];
  only: Set<Group>;
  systems: Set<string>;
  cpuProf?: string;
  noDefaultPair: boolean;
  noSecretPair: boolean;
}

export const USAGE = `npm run bench [-- OPTIONS]
  --quick               a short run (under a minute): smaller transfers, fewer samples, 2 rounds
  --rounds N            rounds (default 5, quick 2)
  --json FILE           write every sample, the table and the machine to FILE
  --pair-args "ARGS"    add a CLI pair started with these extra arguments (repeatable),
                        e.g. --pair-args "--secret-file key.txt"
  --pair-cli FILE       add a CLI pair run from another build of the CLI (repeatable),
                        e.g. a copy of dist/cli.js from main, for a before/after in the same rounds
  --no-default-pair     measure only the pairs given with --pair-args / --pair-cli
  --no-secret-pair      skip the pair with a tunnel secret (measured by default: the cost of encryption)
  --only G,G            only these groups: ${GROUPS.join(', ')}
  --systems S,S         only these systems: tcp, raw, pair (default all)
  --cpu-prof DIR        run the CLI processes with node --cpu-prof, profiles into DIR
  --lib                 the older in-process benchmark of the stream library`;

function parseArgs(argv: string[]): Args {
  const a: Args = { config: FULL, quick: false, pairArgs: [], pairClis: [], only: new Set(GROUPS), systems: new Set(['tcp', 'raw', 'pair']), noDefaultPair: false, noSecretPair: false };
  let rounds: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value\n${USAGE}`);
      return x;
    };
    if (k === '--quick') a.quick = true;
    else if (k === '--rounds') rounds = Number(v());
    else if (k === '--json') a.json = v();
    else if (k === '--pair-args') a.pairArgs.push(v().split(/\s+/).filter(Boolean));
    else if (k === '--pair-cli') a.pairClis.push(path.resolve(v()));
    else if (k === '--no-default-pair') a.noDefaultPair = true;
    else if (k === '--no-secret-pair') a.noSecretPair = true;
    else if (k === '--only') a.only = new Set(v().split(',') as Group[]);
    else if (k === '--systems') a.systems = new Set(v().split(','));
    else if (k === '--cpu-prof') a.cpuProf = path.resolve(v());
    else throw new Error(`unknown option ${k}\n${USAGE}`);
  }
  for (const g of a.only) if (!GROUPS.includes(g)) throw new Error(`unknown group ${g}; groups: ${GROUPS.join(', ')}`);
  a.config = { ...(a.quick ? QUICK : FULL) };
  if (rounds !== undefined) {
    if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error('--rounds needs a positive integer');
    a.config.rounds = rounds;
  }
  return a;
}

/** dist/cli.js, rebuilt (esbuild only) when missing or older than a source file. */
function ensureBuilt(): void {
  const newest = (dir: string): number =>
    fs.readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
      const p = path.join(dir, e.name);
      return Math.max(m, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
    }, 0);
  const built = fs.existsSync(CLI) ? fs.statSync(CLI).mtimeMs : 0;
  if (built < newest(path.join(ROOT, 'src'))) {
    console.error('bench: building dist/cli.js (node esbuild.js)');
    execFileSync(process.execPath, ['esbuild.js'], { cwd: ROOT, stdio: 'inherit' });
  }
}

interface System {
  key: string;
  label: string;
  kind: 'tcp' | 'raw' | 'pair';
  pair?: CliPair;
  port: number;
}

/** data[metric][system] = one value per round (NaN when not measured in that round). */
type Data = Record<string, Record<string, number[]>>;

async function machine(): Promise<Record<string, string>> {
  const cpus = os.cpus();
  let rabbit = '?';
  try {
    const c = await amqp.connect(URL_);
    const props = (c as unknown as { connection: { serverProperties?: { version?: string } } }).connection.serverProperties;
    rabbit = props?.version ?? '?';
    await c.close();
  } catch (err) {
    throw new Error(`cannot reach the broker at AMQP_URL (${URL_.replace(/\/\/[^@/]*@/, '//')}): ${String(err)}`);
  }
  return {
    cpu: `${cpus.length} x ${cpus[0]?.model ?? '?'}`,
    memory: `${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    rabbitmq: rabbit,
    amqplib: (JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve('amqplib')), 'package.json'), 'utf8')) as { version: string }).version,
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    date: new Date().toISOString(),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2).filter((x) => x !== '--'));
  const cfg = args.config;
  ensureBuilt();
  const info = await machine();
  console.error(`bench: ${info.cpu}, ${info.memory}, ${info.os}, Node ${info.node}, RabbitMQ ${info.rabbitmq}, load ${info.loadavg}`);
  const t0 = Date.now();
  const env = { ...process.env, AMQP_URL: URL_ };
  if (args.cpuProf) fs.mkdirSync(args.cpuProf, { recursive: true });
  const nodeArgs = args.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', args.cpuProf] : [];

  // The target service, the raw peers, the pairs.
  const { helper: target, first } = await Helper.start('target.ts', env);
  const targetPort = first.port as number;
  const systems: System[] = [];
  if (args.systems.has('tcp')) systems.push({ key: 'tcp', label: 'direct TCP', kind: 'tcp', port: targetPort });
  let rawA: Helper | undefined;
  let rawB: Helper | undefined;
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  const rawReq = `bench-raw-req-${tag}`;
  const rawRep = `bench-raw-rep-${tag}`;
  if (args.systems.has('raw')) {
    [rawA, rawB] = await Promise.all([Helper.start('rawpeer.ts', env).then((h) => h.helper), Helper.start('rawpeer.ts', env).then((h) => h.helper)]);
    await rawB.call({ cmd: 'echo', queue: rawReq, replyQueue: rawRep });
    systems.push({ key: 'raw', label: 'raw amqplib', kind: 'raw', port: 0 });
  }
  const pairs: Array<[string, string[], string | undefined]> = [];
  let secretFile: string | undefined;
  if (args.systems.has('pair')) {
    if (!args.noDefaultPair) pairs.push(['pair', [], undefined]);
    if (!args.noDefaultPair && !args.noSecretPair) {
      // The same pair with a tunnel secret (auth + end-to-end encryption): a throw-away key, deleted at the end.
      secretFile = path.join(os.tmpdir(), `amqp-tunnel-bench-${process.pid}.key`);
      fs.writeFileSync(secretFile, randomBytes(32).toString('base64'), { mode: 0o600 });
      pairs.push(['secret', ['--secret-file', secretFile], undefined]);
    }
    args.pairArgs.forEach((extra, i) => pairs.push([`pair${i + 1}`, extra, undefined]));
    args.pairClis.forEach((cli, i) => pairs.push([`paircli${i + 1}`, [], cli]));
  }
  for (const [key, extra, cli] of pairs) {
    const pair = new CliPair(`bench-${key}-${tag}`, targetPort, extra, nodeArgs, env, cli);
    const label = cli
      ? `CLI pair (${path.relative(process.cwd(), cli)})`
      : key === 'secret'
        ? 'CLI pair with a tunnel secret'
        : extra.length
          ? `CLI pair ${extra.join(' ')}`
          : 'CLI pair';
    systems.push({ key, label, kind: 'pair', pair, port: 0 });
  }
  const stopAll = async (): Promise<void> => {
    await Promise.all([...systems.map((s) => s.pair?.stop()), rawA?.call({ cmd: 'stop' }).catch(() => undefined), rawB?.call({ cmd: 'stop' }).catch(() => undefined)]);
    await target.stop();
    if (secretFile) fs.rmSync(secretFile, { force: true });
  };
  try {
    for (const s of systems) {
      if (s.pair) {
        await s.pair.ready();
        s.port = s.pair.port;
      }
    }
    // The expected digests are computed once, outside every measurement.
    patternDigest(cfg.bulk);
    patternDigest(cfg.concSize);
    patternDigest(cfg.slowBytes);

    const data: Data = {};
    const put = (metric: string, system: string, round: number, value: number): void => {
      const row = ((data[metric] ??= {})[system] ??= Array.from({ length: cfg.rounds }, () => NaN));
      row[round] = value;
    };
    const log = (msg: string): void => console.error(`bench: ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s ${msg}`);

    for (let round = 0; round < cfg.rounds; round++) {
      const order = systems.map((_, i) => systems[(i + round) % systems.length]!);
      for (const group of GROUPS) {
        if (!args.only.has(group)) continue;
        if (group === 'slow' && round !== 0) continue;
        for (const s of order) {
          if (s.kind === 'raw' && group !== 'bulk' && group !== 'rtt') continue;
          if (s.kind === 'tcp' && group === 'slow') continue;
          log(`round ${round + 1}/${cfg.rounds} ${group} ${s.label}`);
          await watchdog(measure(group, s, round), args.quick ? 120 : 600, `${group} ${s.label}`);
        }
      }
    }

    async function measure(group: Group, s: System, round: number): Promise<void> {
      const mibs = (ms: number): number => cfg.bulk / MiB / (ms / 1000);
      const p = (xs: number[], name: string): void => {
        put(`${name}_p50`, s.key, round, quantile(xs, 0.5));
        put(`${name}_p99`, s.key, round, quantile(xs, 0.99));
      };
      if (s.kind === 'raw') {
        if (group === 'bulk') {
          for (const body of [128 * 1024, MiB]) {
            const q = `bench-raw-bulk-${tag}-${round}-${body}`;
            await rawB!.call({ cmd: 'sink', queue: q, total: cfg.bulk, prefetch: 64 });
            const rss = new PeakRss([rawA!.pid, rawB!.pid]);
            const t = process.hrtime.bigint();
            const done = rawB!.next<{ sha: string }>();
            await rawA!.call({ cmd: 'publish', queue: q, total: cfg.bulk, body });
            const { sha } = await done;
            const ms = Number(process.hrtime.bigint() - t) / 1e6;
            const [ra, rb] = rss.stop();
            if (sha !== patternDigest(cfg.bulk)) throw new Error('raw amqplib bulk arrived corrupted');
            const k = body === MiB ? '1m' : '128k';
            put(`raw_${k}_mibs`, s.key, round, mibs(ms));
            put('rss_bulk_a', s.key, round, Math.max(ra!, data.rss_bulk_a?.[s.key]?.[round] || 0));
            put('rss_bulk_b', s.key, round, Math.max(rb!, data.rss_bulk_b?.[s.key]?.[round] || 0));
          }
        } else if (group === 'rtt') {
          for (const [size, name] of [[1, 'rtt1'], [1024, 'rtt1k']] as const) {
            const r = await rawA!.call<{ samples: number[] }>({ cmd: 'rtt', queue: rawReq, replyQueue: rawRep, size, n: cfg.rttN, warmup: cfg.rttWarm });
            p(r.samples, name);
          }
        }
        return;
      }
      const pids = s.pair?.pids ?? [];
      switch (group) {
        case 'bulk': {
          for (const dir of ['up', 'down'] as const) {
            const rss = new PeakRss(pids);
            const ms = dir === 'up' ? await client.upload(s.port, cfg.bulk) : await client.download(s.port, cfg.bulk);
            const peaks = rss.stop();
            put(`${dir}_mibs`, s.key, round, mibs(ms));
            if (s.pair) {
              put('rss_bulk_a', s.key, round, Math.max(peaks[0]!, data.rss_bulk_a?.[s.key]?.[round] || 0));
              put('rss_bulk_b', s.key, round, Math.max(peaks[1]!, data.rss_bulk_b?.[s.key]?.[round] || 0));
            }
          }
          return;
        }
        case 'rtt':
          p(await client.roundTrips(s.port, 1, cfg.rttN, cfg.rttWarm), 'rtt1');
          p(await client.roundTrips(s.port, 1024, cfg.rttN, cfg.rttWarm), 'rtt1k');
          p(await client.splitRoundTrips(s.port, Math.ceil(cfg.rttN / 10), 5), 'rttsplit');
          return;
        case 'connect': {
          await client.connectEcho(s.port, cfg.connectWarm);
          p(await client.connectEcho(s.port, cfg.connectN), 'connect');
          return;
        }
        case 'conc':
          put('conc_s', s.key, round, (await client.concurrentEcho(s.port, cfg.concK, cfg.concSize)) / 1000);
          return;
        case 'fair': {
          for (const dir of ['down', 'up'] as const) {
            let stop!: () => void;
            const stopped = new Promise<void>((r) => (stop = r));
            const bgStart = process.hrtime.bigint();
            const bg = dir === 'down' ? client.backgroundDownloads(s.port, cfg.bulk, stopped) : client.backgroundUploads(s.port, cfg.bulk, stopped);
            const samples = await client.roundTrips(s.port, 1, cfg.fairN, cfg.fairWarm);
            stop();
            const bgSeconds = Number(process.hrtime.bigint() - bgStart) / 1e9;
            const bytes = await bg;
            put(`fair_${dir}_p50`, s.key, round, quantile(samples, 0.5));
            put(`fair_${dir}_bulk_mibs`, s.key, round, bytes / MiB / bgSeconds);
          }
          return;
        }
        case 'slow': {
          if (!s.pair) return;
          const depth = new QueueDepth(pids);
          await depth.ready;
          const rss = new PeakRss(pids);
          await client.slowDownload(s.port, cfg.slowBytes, cfg.slowRate);
          const peaks = rss.stop();
          const bytes = await depth.stop();
          if (depth.error) log(`queue depth not measured: ${depth.error}`);
          put('slow_queue_mib', s.key, round, bytes / MiB);
          put('slow_rss_a', s.key, round, peaks[0]!);
          put('slow_rss_b', s.key, round, peaks[1]!);
          return;
        }
      }
    }

    const rows = table(data, systems, cfg);
    const md = render(rows, info, cfg, args, (Date.now() - t0) / 1000);
    console.log(md);
    if (args.json) {
      fs.writeFileSync(args.json, `${JSON.stringify({ machine: info, config: cfg, quick: args.quick, systems: systems.map((s) => ({ key: s.key, label: s.label })), data, rows }, null, 2)}\n`);
      console.error(`bench: wrote ${args.json}`);
    }
  } finally {
    await stopAll();
  }
}

/** A step that hangs must not keep the pair (and its queues at the shared broker) alive: fail the run. */
async function watchdog<T>(p: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took longer than ${seconds} s; stopped`)), seconds * 1000))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

interface Row {
  metric: string;
  system: string;
  median: number;
  min: number;
  max: number;
  unit: string;
  ratio?: { median: number; min: number; max: number; of: string };
  target?: string;
  pass?: boolean;
}

function summary(xs: number[]): { median: number; min: number; max: number } {
  const v = xs.filter((x) => !Number.isNaN(x));
  return { median: median(v), min: Math.min(...v), max: Math.max(...v) };
}

function table(data: Data, systems: System[], cfg: Config): Row[] {
  const rows: Row[] = [];
  const bulk = `${cfg.bulk / MiB} MiB`;
  const get = (metric: string, sys: string): number[] | undefined => data[metric]?.[sys];
  const perRound = (a: number[], b: number[], f: (x: number, y: number) => number): number[] => a.map((x, i) => f(x, b[i]!));
  const bestRaw = (): number[] | undefined => {
    const a = get('raw_128k_mibs', 'raw');
    const b = get('raw_1m_mibs', 'raw');
    return a && b ? perRound(a, b, Math.max) : (a ?? b);
  };
  interface Spec {
    metric: string;
    label: string;
    unit: string;
    systems?: Array<'tcp' | 'raw' | 'pair'>;
    /** Same-round reference for pair rows, and the target on the ratio. */
    ref?: { values: (sys: string) => number[] | undefined; of: string; target?: string; ok?: (r: number) => boolean };
  }
  const specs: Spec[] = [
    { metric: 'raw_128k_mibs', label: `bulk ${bulk}, publisher -> consumer, 128 KiB bodies`, unit: 'MiB/s', systems: ['raw'] },
    { metric: 'raw_1m_mibs', label: `bulk ${bulk}, publisher -> consumer, 1 MiB bodies`, unit: 'MiB/s', systems: ['raw'] },
    ...(['up', 'down'] as const).map((d) => ({
      metric: `${d}_mibs`,
      label: `${d === 'up' ? 'upload' : 'download'} ${bulk} (SHA-256 checked)`,
      unit: 'MiB/s',
      ref: { values: () => bestRaw(), of: 'best raw', target: '>= 0.85x raw', ok: (r: number) => r >= 0.85 },
    })),
    { metric: 'rss_bulk_a', label: 'peak RSS during bulk: publish / raw publisher', unit: 'MiB', systems: ['raw', 'pair'] },
    { metric: 'rss_bulk_b', label: 'peak RSS during bulk: forward / raw consumer', unit: 'MiB', systems: ['raw', 'pair'] },
    {
      metric: 'rtt1_p50',
      label: 'round trip 1 B, p50',
      unit: 'ms',
      ref: { values: () => get('rtt1_p50', 'raw'), of: 'raw', target: '<= 1.2x raw', ok: (r) => r <= 1.2 },
    },
    { metric: 'rtt1_p99', label: 'round trip 1 B, p99', unit: 'ms', ref: { values: () => get('rtt1_p99', 'raw'), of: 'raw' } },
    { metric: 'rtt1k_p50', label: 'round trip 1 KiB, p50', unit: 'ms', ref: { values: () => get('rtt1k_p50', 'raw'), of: 'raw' } },
    { metric: 'rtt1k_p99', label: 'round trip 1 KiB, p99', unit: 'ms', ref: { values: () => get('rtt1k_p99', 'raw'), of: 'raw' } },
    {
      metric: 'rttsplit_p50',
      label: 'round trip 1 KiB written in two pieces each way (header + body), p50',
      unit: 'ms',
      systems: ['tcp', 'pair'],
      ref: { values: () => get('rtt1k_p50', 'raw'), of: 'raw 1 KiB' },
    },
    {
      metric: 'connect_p50',
      label: `connect + first echoed byte, p50 (${cfg.connectN} connections)`,
      unit: 'ms',
      ref: { values: () => get('rtt1_p50', 'raw'), of: 'raw 1 B round trip', target: '<= 2x raw round trip', ok: (r) => r <= 2 },
    },
    { metric: 'connect_p99', label: 'connect + first echoed byte, p99', unit: 'ms', ref: { values: () => get('rtt1_p99', 'raw'), of: 'raw 1 B round trip p99' } },
    {
      metric: 'conc_s',
      label: `${cfg.concK} connections x ${cfg.concSize / MiB} MiB echoed at once`,
      unit: 's',
      ref: { values: () => get('conc_s', 'tcp'), of: 'direct TCP', target: '<= 3x direct TCP', ok: (r) => r <= 3 },
    },
    ...(['down', 'up'] as const).map((d) => ({
      metric: `fair_${d}_p50`,
      label: `round trip 1 B, p50, while another stream ${d === 'down' ? 'downloads' : 'uploads'}`,
      unit: 'ms',
      systems: ['tcp', 'pair'] as Array<'tcp' | 'pair'>,
      ref: { values: (sys: string) => get('rtt1_p50', sys), of: 'unloaded', target: '<= 3x unloaded', ok: (r: number) => r <= 3 },
    })),
    ...(['down', 'up'] as const).map((d) => ({
      metric: `fair_${d}_bulk_mibs`,
      label: `  ... the bulk stream meanwhile (${d})`,
      unit: 'MiB/s',
      systems: ['tcp', 'pair'] as Array<'tcp' | 'pair'>,
    })),
    {
      metric: 'slow_queue_mib',
      label: `slow reader (${cfg.slowBytes / MiB} MiB at ${cfg.slowRate / 1e6} MB/s): largest broker queue depth`,
      unit: 'MiB',
      systems: ['pair'],
    },
    { metric: 'slow_rss_a', label: 'slow reader: peak RSS of publish', unit: 'MiB', systems: ['pair'] },
    { metric: 'slow_rss_b', label: 'slow reader: peak RSS of forward', unit: 'MiB', systems: ['pair'] },
  ];
  for (const spec of specs) {
    for (const s of systems) {
      if (spec.systems && !spec.systems.includes(s.kind)) continue;
      const v = get(spec.metric, s.key);
      if (!v || v.every(Number.isNaN)) continue;
      const row: Row = { metric: spec.label, system: s.label, unit: spec.unit, ...summary(v) };
      const refSystems = spec.metric.startsWith('fair_') ? ['tcp', 'pair'] : ['pair'];
      if (spec.ref && refSystems.includes(s.kind)) {
        const ref = spec.ref.values(s.key);
        if (ref) {
          const r = summary(perRound(v, ref, (x, y) => x / y));
          if (!Number.isNaN(r.median)) {
            row.ratio = { ...r, of: spec.ref.of };
            if (spec.ref.target && spec.ref.ok && s.kind === 'pair') {
              row.target = spec.ref.target;
              row.pass = spec.ref.ok(r.median);
            }
          }
        }
      }
      rows.push(row);
    }
  }
  return rows;
}

function fmt(x: number): string {
  if (Number.isNaN(x)) return '-';
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
}

function render(rows: Row[], info: Record<string, string>, cfg: Config, args: Args, seconds: number): string {
  const lines = [
    `Machine: ${info.cpu}, ${info.memory} RAM, ${info.os}; Node ${info.node}, amqplib ${info.amqplib}, RabbitMQ ${info.rabbitmq} on loopback; load average at start ${info.loadavg}.`,
    `${args.quick ? 'Quick run' : 'Full run'}: ${cfg.rounds} interleaved round${cfg.rounds === 1 ? '' : 's'}, ${seconds.toFixed(0)} s, ${info.date}. Values: median over rounds [min-max]; ratios from the same round.`,
    '',
    '| metric | system | median | min-max | ratio (same round) | target | result |',
    '|---|---|---:|---:|---|---|---|',
  ];
  let last = '';
  for (const r of rows) {
    const ratio = r.ratio ? `${fmt(r.ratio.median)}x ${r.ratio.of} [${fmt(r.ratio.min)}-${fmt(r.ratio.max)}]` : '';
    lines.push(
      `| ${r.metric === last ? '' : r.metric} | ${r.system} | ${fmt(r.median)} ${r.unit} | ${fmt(r.min)}-${fmt(r.max)} | ${ratio} | ${r.target ?? ''} | ${r.pass === undefined ? '' : r.pass ? 'PASS' : 'MISS'} |`,
    );
    last = r.metric;
  }
  return lines.join('\n');
}

export function runCliBench(): void {
  main().catch((err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
}
