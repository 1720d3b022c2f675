/**
 * The UI test: Playwright drives the VS Code page as a user would. Open the
 * AMQP Tunnel view, run "Publish port over AMQP" (with no broker configured
 * yet, so it offers to add one) and "Forward port over AMQP" from the
 * command palette, answer the prompts (seeing bad input explained while
 * typing), and see both tunnels in the view as ready; then data goes
 * from a TCP client through the forwarded port to an echo server. Saves a
 * screenshot to .test-output/extension/ (and to media/screenshot.png with
 * UPDATE_SCREENSHOT=1). Prints mocha-style lines, so CI counts them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { once } from 'node:events';
import type { Page } from 'playwright-core';
import type { VsCode } from './runner';

const STEP_MS = 60_000;

async function echoServer(): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

async function roundTrip(port: number, text: string): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await once(socket, 'connect');
  socket.end(text);
  await once(socket, 'end');
  socket.destroy();
  return Buffer.concat(chunks).toString();
}

/** Run a command from the palette, picking the row by its exact label (typing + Enter may pick a higher-ranked entry). */
async function runCommand(page: Page, title: string): Promise<void> {
  const input = page.locator('.quick-input-widget input');
  await page.keyboard.press('F1');
  await input.waitFor({ state: 'visible', timeout: STEP_MS });
  await input.fill(`>${title}`);
  const rows = page.locator('.quick-input-list .monaco-list-row');
  const end = Date.now() + STEP_MS;
  while (Date.now() < end) {
    const labels = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label') ?? ''));
    const i = labels.findIndex((l) => l === title || l.startsWith(`${title},`) || l.startsWith(`${title} `));
    if (i >= 0) {
      await rows.nth(i).click();
      return;
    }
    await page.waitForTimeout(200);
  }
  throw new Error(`the palette has no "${title}"`);
}

/** The open input box: wait for its prompt, then return its text field. */
async function inputBox(page: Page, promptText: string): Promise<ReturnType<Page['locator']>> {
  await page.locator('.quick-input-widget', { hasText: promptText }).waitFor({ state: 'visible', timeout: STEP_MS });
  return page.locator('.quick-input-widget input');
}

async function expectMessage(page: Page, text: string): Promise<void> {
  await page.locator('.quick-input-widget .quick-input-message', { hasText: text }).waitFor({ state: 'visible', timeout: STEP_MS });
}

export async function uiTest(vs: VsCode, outputDir: string, say: (...a: unknown[]) => void, what: string): Promise<{ code: number; passed: number }> {
  const { page } = vs;
  const echo = await echoServer();
  const echoPort = (echo.address() as net.AddressInfo).port;
  const queue = `ui-${Date.now().toString(36)}${process.pid % 1000}`;
  const passed: string[] = [];
  const check = async (name: string, fn: () => Promise<void>): Promise<void> => {
    await fn();
    passed.push(name);
    console.log(`    ✔ ${name}`);
  };
  console.log(`\n  ${what} as a user drives it (Playwright)`);
  try {
    await page.locator('.monaco-workbench .part.statusbar').waitFor({ state: 'visible', timeout: STEP_MS });

    await check('the AMQP Tunnel activity-bar view shows its welcome content', async () => {
      await page.locator('.part.activitybar [aria-label^="AMQP Tunnel"]').first().click({ timeout: STEP_MS });
      await page.locator('.part.sidebar', { hasText: 'No tunnels yet' }).waitFor({ state: 'visible', timeout: STEP_MS });
    });

    await check('Publish port over AMQP with no broker configured offers to add one first (localhost by default)', async () => {
      await runCommand(page, 'AMQP Tunnel: Publish port over AMQP');
      const url = await inputBox(page, 'Broker URL');
      if ((await url.inputValue()) !== 'amqp://localhost:5672') throw new Error(`the default broker URL is '${await url.inputValue()}'`);
      await url.fill('http://127.0.0.1:5672');
      await expectMessage(page, 'amqp://');
      await url.fill('amqp://127.0.0.1:5672');
      await url.press('Enter');
      // The user name is asked for (not typed into the URL), RabbitMQ's guest by default.
      const user = await inputBox(page, 'User name for the broker');
      if ((await user.inputValue()) !== 'guest') throw new Error(`the suggested user name is '${await user.inputValue()}'`);
      await user.press('Enter');
      const name = await inputBox(page, 'A name for this broker');
      if ((await name.inputValue()) !== 'local') throw new Error(`the suggested broker name is '${await name.inputValue()}'`);
      await name.press('Enter');
      const password = await inputBox(page, "Password for 'local'");
      if ((await password.getAttribute('type')) !== 'password') throw new Error('the password box shows what is typed');
      await password.press('Enter');
    });

    await check('Publish port over AMQP then explains bad input as it is typed and publishes the port', async () => {
      const target = await inputBox(page, 'The local port to publish');
      await target.fill('70000');
      await expectMessage(page, 'out of range');
      await target.fill(String(echoPort));
      await target.press('Enter');
      const q = await inputBox(page, 'The queue to publish on');
      const suggested = await q.inputValue();
      // <hostname>-<port>-<random>: the host name alone does not give the queue away.
      if (!new RegExp(`^${os.hostname().toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/\./g, '\\.')}-${echoPort}-[0-9a-f]{6}$`).test(suggested)) throw new Error(`suggested queue '${suggested}'`);
      await q.fill('amq.nope');
      await expectMessage(page, 'reserved');
      await q.fill(queue);
      await q.press('Enter');
      await page.locator('.part.sidebar .monaco-list-row', { hasText: queue }).filter({ hasText: `publish · 127.0.0.1:${echoPort} · ready` }).waitFor({ timeout: STEP_MS });
    });

    let localPort = 0;
    await check('Forward port over AMQP from the palette shows a ready tunnel in the view', async () => {
      await runCommand(page, 'AMQP Tunnel: Forward port over AMQP');
      const pick = page.locator('.quick-input-widget input');
      await pick.waitFor({ state: 'visible', timeout: STEP_MS });
      await pick.fill(queue);
      await page.locator('.quick-input-list .monaco-list-row', { hasText: queue }).first().waitFor({ timeout: STEP_MS });
      await pick.press('Enter');
      const bind = await inputBox(page, 'Local port to listen on');
      const free = await bind.inputValue();
      if (!/^\d+$/.test(free) || free === '0') throw new Error(`the default local port is '${free}', not a free port`);
      await bind.fill('localhost:abc');
      await expectMessage(page, 'not a valid');
      await bind.fill(free);
      await bind.press('Enter');
      const row = page.locator('.part.sidebar .monaco-list-row', { hasText: queue }).filter({ hasText: `forward · 127.0.0.1:${free} · ready` });
      await row.waitFor({ timeout: STEP_MS });
      localPort = Number(free);
    });

    await check('data goes from a TCP client through the forwarded port to the published echo server', async () => {
      const text = 'typed into VS Code, carried by RabbitMQ';
      const got = await roundTrip(localPort, text);
      if (got !== text) throw new Error(`echoed '${got}'`);
      await page.locator('.part.statusbar', { hasText: '2/2 tunnels ready' }).waitFor({ timeout: STEP_MS });
    });

    await check('the forward row shows its open connection live, and 0 once it closed', async () => {
      const row = page.locator('.part.sidebar .monaco-list-row', { hasText: `forward · 127.0.0.1:${localPort}` });
      const socket = net.connect({ host: '127.0.0.1', port: localPort });
      try {
        await once(socket, 'connect');
        socket.write('held open');
        await row.filter({ hasText: '· 1 connection ·' }).waitFor({ timeout: STEP_MS });
      } finally {
        socket.destroy();
      }
      await row.filter({ hasText: '· 0 connections ·' }).waitFor({ timeout: STEP_MS });
    });

    await check('Open in Browser opens the forwarded address in a new browser tab', async () => {
      const popup = page.context().waitForEvent('page', { timeout: STEP_MS });
      await runCommand(page, 'AMQP Tunnel: Open in Browser');
      await page.locator('.quick-input-list .monaco-list-row', { hasText: queue }).filter({ hasText: `forward · 127.0.0.1:${localPort}` }).first().click({ timeout: STEP_MS });
      const tab = await popup;
      const url = tab.url();
      await tab.close();
      // In a remote window the address goes through asExternalUri: the server's port proxy (/proxy/PORT/) here.
      if (!url.includes(`:${localPort}/`) && !url.includes(`/proxy/${localPort}/`)) throw new Error(`opened ${url}, not the forwarded port ${localPort}`);
    });

    await check('Show Log opens the AMQP Tunnel output with the tunnels\' connection events', async () => {
      await runCommand(page, 'AMQP Tunnel: Show Log');
      const panel = page.locator('.part.panel');
      // The output scrolls to its end: the last connection's lines are the ones on screen.
      await panel.locator('.view-lines', { hasText: `tunnel forward ${queue} > conn #2 open` }).first().waitFor({ timeout: STEP_MS });
      await runCommand(page, 'View: Hide Panel').catch(() => page.keyboard.press('Escape'));
    });

    // A picture for people: the view with both tunnels, the tooltip of the forward open.
    fs.mkdirSync(outputDir, { recursive: true });
    await page.locator('.notifications-toasts .codicon-notifications-clear-all').click({ timeout: 1000 }).catch(() => undefined);
    // Hide the empty secondary side bar and widen the side bar, so labels and descriptions show in full.
    await runCommand(page, 'View: Hide Secondary Side Bar').catch(() => page.keyboard.press('Escape'));
    const bar = await page.locator('.part.sidebar').boundingBox();
    if (bar) {
      const y = bar.y + bar.height / 2;
      await page.mouse.move(bar.x + bar.width + 1, y);
      await page.mouse.down();
      await page.mouse.move(bar.x + bar.width + 340, y, { steps: 8 });
      await page.mouse.up();
    }
    await page.locator('.part.sidebar .monaco-list-row', { hasText: `forward · 127.0.0.1:${localPort}` }).hover();
    await page.locator('.monaco-hover', { hasText: 'Forward' }).waitFor({ timeout: 5000 }).catch(() => undefined);
    const shot = path.join(outputDir, `${path.basename(vs.data).replace(/-data$/, '')}-tunnels.png`);
    await page.screenshot({ path: shot });
    say(`screenshot: ${path.relative(process.cwd(), shot)}`);
    if (process.env.UPDATE_SCREENSHOT && !vs.data.includes('vsix')) fs.copyFileSync(shot, path.join(__dirname, '..', '..', 'media', 'screenshot.png'));

    await check('the view lists what is published on the broker, with the detected debugger (a node --inspect program published by the CLI)', async () => {
      const children: ChildProcess[] = [];
      try {
        const debuggee = spawn(process.execPath, ['--inspect=127.0.0.1:0', '-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', 'ignore', 'pipe'] });
        children.push(debuggee);
        let err = '';
        const port = await new Promise<string>((resolve, reject) => {
          debuggee.stderr!.on('data', (d: Buffer) => {
            err += d.toString();
            const m = /ws:\/\/127\.0\.0\.1:(\d+)\//.exec(err);
            if (m) resolve(m[1]!);
          });
          debuggee.once('exit', () => reject(new Error(`node --inspect exited: ${err}`)));
        });
        const app = `orders-api-${process.pid % 1000}`;
        const cli = path.join(__dirname, '..', '..', 'dist', 'cli.js');
        const publisher = spawn(process.execPath, [cli, 'publish', port, '--queue', app, '--json'], { env: { ...process.env, AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672' }, stdio: ['ignore', 'pipe', 'ignore'] });
        children.push(publisher);
        await page.locator('.part.sidebar .monaco-list-row', { hasText: 'Published on local' }).waitFor({ timeout: STEP_MS });
        const row = page.locator('.part.sidebar .monaco-list-row', { hasText: app }).filter({ hasText: 'node ·' });
        await row.waitFor({ timeout: STEP_MS });
        await row.hover();
        await page.locator('.monaco-hover', { hasText: 'node.js/' }).waitFor({ timeout: 5000 }).catch(() => undefined);
        const pshot = path.join(outputDir, `${path.basename(vs.data).replace(/-data$/, '')}-published.png`);
        await page.screenshot({ path: pshot });
        say(`screenshot: ${path.relative(process.cwd(), pshot)}`);
        if (process.env.UPDATE_SCREENSHOT && !vs.data.includes('vsix')) fs.copyFileSync(pshot, path.join(__dirname, '..', '..', 'media', 'published.png'));
      } finally {
        for (const c of children.reverse()) c.kill('SIGKILL');
        await page.mouse.move(0, 0);
      }
    });
    await check('a refused login is one notification with the cause and a Set Broker Password action that fixes it', async () => {
      await runCommand(page, 'AMQP Tunnel: Set Broker Password');
      await page.locator('.quick-input-list .monaco-list-row', { hasText: 'local' }).first().click({ timeout: STEP_MS });
      const pw = await inputBox(page, "Password for 'local'");
      await pw.fill('not-the-password');
      await pw.press('Enter');
      const row = page.locator('.part.sidebar .monaco-list-row', { hasText: `forward · 127.0.0.1:${localPort}` });
      await row.hover();
      await row.locator('.action-label[aria-label="Stop Tunnel"]').click({ timeout: STEP_MS });
      await row.filter({ hasText: 'stopped' }).waitFor({ timeout: STEP_MS });
      await row.hover();
      await row.locator('.action-label[aria-label="Restart Tunnel"]').click({ timeout: STEP_MS });
      await row.filter({ hasText: 'failed' }).waitFor({ timeout: STEP_MS });
      await runCommand(page, 'Notifications: Show Notifications');
      const toast = page.locator('.notifications-center .notification-list-item', { hasText: `Could not start forward ${queue}` });
      await toast.waitFor({ timeout: 10_000 });
      const text = await toast.innerText();
      if (/\n\s+at /.test(text) || text.includes('not-the-password')) throw new Error(`the notification shows a stack trace or the password: ${text}`);
      await row.filter({ hasText: 'failed' }).waitFor({ timeout: STEP_MS });
      await toast.getByRole('button', { name: 'Set Broker Password' }).click({ timeout: STEP_MS });
      const again = await inputBox(page, "Password for 'local'");
      await again.fill('guest');
      await again.press('Enter');
      // No Restart: the tunnel that failed on the login starts again with the new password, and that is confirmed.
      await row.filter({ hasText: `forward · 127.0.0.1:${localPort} · ready` }).waitFor({ timeout: STEP_MS });
      await page.locator('.notifications-center, .notifications-toasts').locator('.notification-list-item', { hasText: "Saved the password of broker 'local'; 1 tunnel that failed on the login is running again" }).first().waitFor({ timeout: STEP_MS });
      const got = await roundTrip(localPort, 'after the fix');
      if (got !== 'after the fix') throw new Error(`echoed '${got}'`);
    });

    await check('Run and Debug → "create a launch.json file" offers AMQP Tunnel; its Node.js attach configuration is the one selected for F5', async () => {
      await runCommand(page, 'View: Show Run and Debug');
      await page.locator('.part.sidebar a', { hasText: 'create a launch.json file' }).first().click({ timeout: STEP_MS });
      const rows = page.locator('.quick-input-list .monaco-list-row');
      await rows.first().waitFor({ timeout: STEP_MS });
      await page.locator('.quick-input-list .monaco-list-row', { hasText: 'AMQP Tunnel (attach to a remote process)' }).first().click({ timeout: STEP_MS });
      await page.locator('.monaco-editor .view-lines', { hasText: 'Attach to Node.js over AMQP' }).first().waitFor({ timeout: STEP_MS });
      const file = path.join(vs.folder, '.vscode', 'launch.json');
      const deadline = Date.now() + STEP_MS;
      while (!fs.existsSync(file) || !fs.readFileSync(file, 'utf8').includes(`"queue": "${queue}"`)) {
        if (Date.now() > deadline) throw new Error(`launch.json was not written with queue ${queue}: ${fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : 'missing'}`);
        await page.waitForTimeout(200);
      }
      // The Run and Debug drop-down in the view's title: the configuration F5 starts.
      const title = page.locator('.part.sidebar .composite.title');
      await title.filter({ hasText: 'Attach to Node.js over AMQP' }).waitFor({ timeout: STEP_MS });
      const shown = (await title.innerText()).trim();
      // Only the selected configuration is shown (the others appear when the drop-down opens).
      if (!shown.includes('Attach to Node.js over AMQP') || /Python|Java|Launch/.test(shown)) throw new Error(`the Run and Debug title shows '${shown}'`);
      await page.keyboard.press('Escape');
    });

    console.log(`\n  ${passed.length} passing`);
    return { code: 0, passed: passed.length };
  } catch (err) {
    fs.mkdirSync(outputDir, { recursive: true });
    await page.screenshot({ path: path.join(outputDir, `${path.basename(vs.data).replace(/-data$/, '')}-failure.png`) }).catch(() => undefined);
    const toasts = await page.locator('.notifications-toasts').innerText({ timeout: 2000 }).catch(() => '');
    if (toasts.trim()) say(`notifications on screen: ${toasts.replace(/\s+/g, ' ')}`);
    console.log(`    1) ${(err as Error).message.split('\n')[0]}`);
    console.log(`\n  ${passed.length} passing\n  1 failing`);
    say(`UI test failed; screenshot in .test-output/extension/; server logs in ${vs.data}`);
    return { code: 1, passed: passed.length };
  } finally {
    echo.close();
  }
}
