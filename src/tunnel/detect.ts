/**
 * Protocol detection: what listens on a publish target, found without
 * opening a connection the debuggee could take for its debugger client
 * (debugpy serves the first client that connects and no other; a JDWP agent
 * logs every connection that fails its handshake).
 *
 * The steps, on the publishing machine:
 *
 * 1. Linux /proc (no connection at all): the socket listening on the
 *    target's port (/proc/net/tcp and tcp6: state 0A, its inode), the process
 *    holding that inode (/proc/PID/fd/N -> "socket:[INODE]"), its command
 *    line (and NODE_OPTIONS, JAVA_TOOL_OPTIONS, JDK_JAVA_OPTIONS from its
 *    environment when readable):
 *
 *        -agentlib:jdwp=..., -Xrunjdwp:...     java    (JDWP)
 *        debugpy (module, script or path)      python  (debugpy)
 *        dlv                                   go      (Delve)
 *        --inspect, --inspect-brk, ...,        node, if step 2 confirms that the
 *        or just a node executable             port is the inspector's
 *
 * 2. Only for a Node.js process whose --inspect flag names the target's
 *    port (or a random port, and the process listens on no other port), or
 *    a node without the flag on port 9229 (an inspector started by
 *    SIGUSR1): the inspector's HTTP endpoints GET /json/version (the runtime, "node.js/v22.3.0") and
 *    GET /json/list (the script's title). Plain HTTP requests: the
 *    inspector serves them without a debugger session ("Debugger attached"
 *    is never printed).
 *
 * 3. Otherwise "unknown". In particular nothing is probed when the target
 *    is on another machine, when /proc is missing (not Linux) or when the
 *    listening process belongs to another user (its fds are unreadable):
 *    a probe there could be the debuggee's one debugger connection.
 */
import { promises as fsp } from 'node:fs';
import * as dns from 'node:dns';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { HostPort } from './spec';

export type DebugProtocol = 'node' | 'python' | 'java' | 'go' | 'unknown';

export const DEBUG_PROTOCOLS: readonly DebugProtocol[] = ['node', 'python', 'java', 'go', 'unknown'];

export interface Detection {
  protocol: DebugProtocol;
  /** What speaks it: "node.js/v22.3.0", "debugpy", "JDWP", "Delve". */
  runtime?: string;
  /** Node: the script's title from /json/list; others: the program (script, main class, jar). */
  title?: string;
  /** The process listening on the target, when found. */
  pid?: number;
}

export interface ListeningSocket {
  /** Textual IP address ("127.0.0.1", "::", "::ffff:127.0.0.1"). */
  address: string;
  port: number;
  inode: number;
  uid: number;
}

const TCP_LISTEN = '0A';

/** One 8-hex-digit word of /proc/net/tcp as the 4 bytes it stands for (the kernel prints host order). */
function wordBytes(hex: string, littleEndian: boolean): number[] {
  const b = [0, 2, 4, 6].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return littleEndian ? b.reverse() : b;
}

/** "0100007F" -> "127.0.0.1"; a 32-digit tcp6 address -> its IPv6 text. */
export function decodeProcAddress(hex: string, littleEndian = os.endianness() === 'LE'): string {
  if (hex.length === 8) return wordBytes(hex, littleEndian).join('.');
  if (hex.length !== 32) throw new Error(`not a /proc/net address: ${hex}`);
  const bytes: number[] = [];
  for (let i = 0; i < 32; i += 8) bytes.push(...wordBytes(hex.slice(i, i + 8), littleEndian));
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // Let node:net's URL-style normalisation compress it ("0:0:0:0:0:0:0:1" -> "::1").
  return new URL(`http://[${groups.join(':')}]/`).hostname.replace(/^\[|\]$/g, '');
}

/** The listening sockets in the text of /proc/net/tcp or /proc/net/tcp6. */
export function parseProcNetTcp(text: string, littleEndian = os.endianness() === 'LE'): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== TCP_LISTEN) continue;
    const [addr, port] = f[1]!.split(':');
    if (!addr || !port) continue;
    out.push({ address: decodeProcAddress(addr, littleEndian), port: parseInt(port, 16), inode: Number(f[9]), uid: Number(f[7]) });
  }
  return out;
}

/** /proc/PID/cmdline (NUL-separated) as argv. */
export function parseCmdline(raw: Buffer | string): string[] {
  const s = typeof raw === 'string' ? raw : raw.toString('utf8');
  return s.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
}

/** /proc/PID/environ as a map (only the variables detection looks at). */
export function parseEnviron(raw: Buffer | string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of (typeof raw === 'string' ? raw : raw.toString('utf8')).split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) {
      const k = kv.slice(0, i);
      if (k === 'NODE_OPTIONS' || k === 'JAVA_TOOL_OPTIONS' || k === 'JDK_JAVA_OPTIONS') env[k] = kv.slice(i + 1);
    }
  }
  return env;
}

/** What a command line says about the debugger in the process; `nodeCandidate` asks for the HTTP check. */
export interface CmdlineVerdict {
  protocol: DebugProtocol;
  runtime?: string;
  title?: string;
  /** A node executable without an inspector flag: it may have called inspector.open(); only the HTTP check can tell. */
  nodeCandidate?: boolean;
  /** The port of `--inspect[=[host:]port]` (9229 when it names none; 0 = a random one). */
  inspectPort?: number;
  /**
   * debugpy's adapter: the process that listens for the client, started
   * detached from the debuggee; the program is on the debuggee's command
   * line (`debugpy --listen [host:]PORT ...`).
   */
  debugpyAdapter?: boolean;
}

const JDWP = /^-(agentlib:jdwp(=|$)|Xrunjdwp:)/;
const DEBUGPY = /(^|[\\/])debugpy([\\/.]|$)/;
const ADAPTER = /(^|[\\/])debugpy[\\/]adapter([\\/]|$)/;
const INSPECT = /^--inspect(-brk|-wait|-port)?(=|$)/;
const NODE_EXE = /^(node|nodejs)(\.exe)?$/i;
/** Where `--inspect` and a SIGUSR1-started inspector listen when no port is named. */
const DEFAULT_INSPECTOR_PORT = 9229;

function after(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Classify a process by its argv (and a few environment variables). */
export function classifyCommandLine(argv: string[], env: Record<string, string> = {}): CmdlineVerdict {
  const exe = path.basename(argv[0] ?? '');
  const envArgs = (k: string): string[] => (env[k] ?? '').split(/\s+/).filter(Boolean);
  const javaFlags = [...argv, ...envArgs('JAVA_TOOL_OPTIONS'), ...envArgs('JDK_JAVA_OPTIONS')];
  if (javaFlags.some((a) => JDWP.test(a))) {
    // The program: -jar X, else the first argument after the JVM options that is not an option.
    const program = after(argv, '-jar') ?? argv.slice(1).find((a, i, rest) => !a.startsWith('-') && !['-cp', '-classpath', '--class-path', '-p', '--module-path'].includes(rest[i - 1] ?? ''));
    return { protocol: 'java', runtime: 'JDWP', title: program };
  }
  if (argv.some((a) => DEBUGPY.test(a))) {
    const i = argv.findIndex((a) => DEBUGPY.test(a));
    // debugpy's adapter (a child process of the debuggee, listening for the client) knows no program.
    if (ADAPTER.test(argv[i]!)) return { protocol: 'python', runtime: 'debugpy', debugpyAdapter: true };
    const rest = argv.slice(i + 1);
    const program =
      after(rest, '-m') !== undefined
        ? `-m ${after(rest, '-m')}`
        : after(rest, '-c') !== undefined
          ? '-c …'
          : rest.find((a, j) => !a.startsWith('-') && !['--listen', '--connect', '--log-to', '--configure-subProcess', '--port', '--host', '--pid'].includes(rest[j - 1] ?? ''));
    return { protocol: 'python', runtime: 'debugpy', title: program };
  }
  if (exe === 'dlv' || exe === 'dlv.exe') {
    return { protocol: 'go', runtime: 'Delve', title: argv.slice(1).find((a) => !a.startsWith('-') && !['debug', 'exec', 'attach', 'test', 'run'].includes(a)) };
  }
  const nodeOptions = envArgs('NODE_OPTIONS');
  const script = argv.slice(1).find((a) => !a.startsWith('-'));
  const flag = [...argv.slice(1), ...nodeOptions].find((a) => INSPECT.test(a));
  if (flag) {
    const value = flag.includes('=') ? flag.slice(flag.indexOf('=') + 1) : '';
    const port = value === '' ? DEFAULT_INSPECTOR_PORT : Number(value.split(':').pop());
    return { protocol: 'node', runtime: 'node.js', title: script, ...(Number.isInteger(port) ? { inspectPort: port } : {}) };
  }
  if (NODE_EXE.test(exe)) return { protocol: 'unknown', title: script, nodeCandidate: true };
  return { protocol: 'unknown' };
}

/** /json/version's body -> "node.js/v22.3.0", or undefined when it is not a Node inspector's answer. */
export function parseInspectorVersion(body: unknown): string | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const b = body as Record<string, unknown>;
  if (typeof b.Browser !== 'string' || typeof b['Protocol-Version'] !== 'string') return undefined;
  return b.Browser;
}

/** /json/list's body -> the first target's title (the script), if any. */
export function parseInspectorList(body: unknown): string | undefined {
  if (!Array.isArray(body)) return undefined;
  const t = body.find((x) => x && typeof x === 'object' && typeof (x as Record<string, unknown>).title === 'string') as { title: string } | undefined;
  return t?.title;
}

async function getJson(host: string, port: number, p: string, timeoutMs: number): Promise<unknown> {
  const h = net.isIPv6(host) ? `[${host}]` : host;
  const res = await fetch(`http://${h}:${port}${p}`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

/**
 * Ask a Node inspector for its runtime and script title: 'not-inspector'
 * when the port answered something else, undefined when it did not answer.
 */
export async function probeNodeInspector(target: HostPort, timeoutMs = 1000): Promise<{ runtime: string; title?: string } | 'not-inspector' | undefined> {
  let version: unknown;
  try {
    version = await getJson(target.host, target.port, '/json/version', timeoutMs);
  } catch (err) {
    return (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError' ? undefined : 'not-inspector';
  }
  const runtime = parseInspectorVersion(version);
  if (!runtime) return 'not-inspector';
  const title = parseInspectorList(await getJson(target.host, target.port, '/json/list', timeoutMs).catch(() => undefined));
  return { runtime, title };
}

const WILDCARDS = new Set(['0.0.0.0', '::']);

function localAddresses(): Set<string> {
  const set = new Set<string>(['127.0.0.1', '::1']);
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) set.add(a.address);
  return set;
}

/** The IP addresses `host` stands for, if they are all on this machine; undefined for a remote host. */
async function localIps(host: string): Promise<string[] | undefined> {
  let ips: string[];
  if (net.isIP(host)) ips = [host];
  else {
    try {
      ips = (await dns.promises.lookup(host, { all: true })).map((a) => a.address);
    } catch {
      return undefined;
    }
  }
  const local = localAddresses();
  const loopback = (ip: string): boolean => ip.startsWith('127.') || ip === '::1';
  return ips.length > 0 && ips.every((ip) => loopback(ip) || local.has(ip) || WILDCARDS.has(ip)) ? ips : undefined;
}

/** Of the listening sockets, those a connection to one of `ips` on `port` would reach. */
export function socketsFor(sockets: ListeningSocket[], ips: string[], port: number): ListeningSocket[] {
  const norm = (a: string): string => a.replace(/^::ffff:/, '');
  const want = new Set(ips.map(norm));
  const all = want.has('0.0.0.0') || want.has('::');
  return sockets.filter((s) => s.port === port && (all || WILDCARDS.has(s.address) || want.has(norm(s.address))));
}

async function readText(file: string): Promise<string | undefined> {
  return fsp.readFile(file, 'utf8').catch(() => undefined);
}

/** The socket inodes a process holds. */
async function socketInodes(pid: number, procRoot: string): Promise<number[]> {
  const dir = path.join(procRoot, String(pid), 'fd');
  const fds = await fsp.readdir(dir).catch(() => [] as string[]);
  const out: number[] = [];
  for (const fd of fds) {
    const m = /^socket:\[(\d+)\]$/.exec(await fsp.readlink(path.join(dir, fd)).catch(() => ''));
    if (m) out.push(Number(m[1]));
  }
  return out;
}

/** The processes of `uid`. */
async function pidsOf(uid: number, procRoot: string): Promise<number[]> {
  const pids = (await fsp.readdir(procRoot).catch(() => [] as string[])).filter((d) => /^\d+$/.test(d));
  const mine: number[] = [];
  for (const pid of pids) {
    const st = await fsp.stat(path.join(procRoot, pid)).catch(() => undefined);
    if (st?.uid === uid) mine.push(Number(pid));
  }
  return mine;
}

/** The pid of the process (of `uid`) holding socket `inode`, searched in /proc. */
async function pidOfSocket(inode: number, uid: number, procRoot: string): Promise<number | undefined> {
  const needle = `socket:[${inode}]`;
  for (const pid of await pidsOf(uid, procRoot)) {
    const dir = path.join(procRoot, String(pid));
    const fds = await fsp.readdir(path.join(dir, 'fd')).catch(() => [] as string[]);
    for (const fd of fds) {
      const link = await fsp.readlink(path.join(dir, 'fd', fd)).catch(() => '');
      if (link === needle) return pid;
    }
  }
  return undefined;
}

/** The process (of `uid`) started as `... debugpy --listen [host:]PORT ...`, and its program. */
async function debugpyDebuggee(port: number, uid: number, procRoot: string): Promise<{ pid: number; title?: string } | undefined> {
  for (const pid of await pidsOf(uid, procRoot)) {
    const argv = await readCmdline(pid, procRoot);
    if (!argv) continue;
    const listen = after(argv, '--listen');
    if (!listen || Number(listen.split(':').pop()) !== port) continue;
    const v = classifyCommandLine(argv);
    if (v.protocol === 'python' && !v.debugpyAdapter) return { pid, title: v.title };
  }
  return undefined;
}

async function readCmdline(pid: number, procRoot: string): Promise<string[] | undefined> {
  const raw = await fsp.readFile(path.join(procRoot, String(pid), 'cmdline')).catch(() => undefined);
  return raw ? parseCmdline(raw) : undefined;
}


export interface DetectOptions {
  /** Where /proc is (tests). */
  procRoot?: string;
  /** Ms to wait for each inspector HTTP answer (default 1000). */
  httpTimeoutMs?: number;
}

/** What listens on `target`, without a connection the debuggee could mistake for its debugger. */
export async function detectProtocol(target: HostPort, options: DetectOptions = {}): Promise<Detection> {
  const procRoot = options.procRoot ?? '/proc';
  const ips = await localIps(target.host);
  if (!ips) return { protocol: 'unknown' };
  const tables = await Promise.all(['tcp', 'tcp6'].map((f) => readText(path.join(procRoot, 'net', f))));
  if (tables.every((t) => t === undefined)) return { protocol: 'unknown' };
  const all = tables.flatMap((t) => (t ? parseProcNetTcp(t) : []));
  for (const s of socketsFor(all, ips, target.port)) {
    const pid = await pidOfSocket(s.inode, s.uid, procRoot);
    if (pid === undefined) continue;
    const cmdline = await fsp.readFile(path.join(procRoot, String(pid), 'cmdline')).catch(() => undefined);
    if (!cmdline) continue;
    const environ = await fsp.readFile(path.join(procRoot, String(pid), 'environ')).catch(() => undefined);
    const verdict = classifyCommandLine(parseCmdline(cmdline), environ ? parseEnviron(environ) : {});
    if (verdict.debugpyAdapter) {
      const debuggee = await debugpyDebuggee(target.port, s.uid, procRoot);
      return { protocol: 'python', runtime: 'debugpy', title: debuggee?.title, pid: debuggee?.pid ?? pid };
    }
    if (verdict.protocol === 'node' || verdict.nodeCandidate) {
      // Ask over HTTP only a port that should be the inspector's: never the program's own server.
      // A random inspector port (--inspect=0) is this one only if the process listens on no other.
      const p = verdict.inspectPort;
      const only = async (): Promise<boolean> => (await socketInodes(pid, procRoot)).filter((i) => all.some((l) => l.inode === i)).length === 1;
      const inspectorPort = verdict.protocol === 'node' ? p === undefined || p === target.port || (p === 0 && (await only())) : target.port === DEFAULT_INSPECTOR_PORT;
      if (!inspectorPort) return { protocol: 'unknown', title: verdict.title, pid };
      const http = await probeNodeInspector(target, options.httpTimeoutMs);
      if (http === 'not-inspector') return { protocol: 'unknown', title: verdict.title, pid }; // its own HTTP server, say
      if (http) return { protocol: 'node', runtime: http.runtime, title: http.title ?? verdict.title, pid };
      // No answer in time (a loaded machine): trust the --inspect flag.
      return verdict.protocol === 'node' ? { protocol: 'node', runtime: 'node.js', title: verdict.title, pid } : { protocol: 'unknown', title: verdict.title, pid };
    }
    return { protocol: verdict.protocol, runtime: verdict.runtime, title: verdict.title, pid };
  }
  return { protocol: 'unknown' };
}
