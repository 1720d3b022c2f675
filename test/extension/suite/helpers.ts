/** Helpers for the in-editor tests: the extension's API, TCP ends, the tree as a user sees it, waiting on events. */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import type { TunnelSummary } from '../../../src/extension/services';
import type { TunnelEntry } from '../../../src/extension/manager';
import { COMMANDS } from '../../../src/extension/ids';

export const EXTENSION_ID = 'amqp-tunnel.amqp-tunnel';

export async function extensionApi(): Promise<AmqpTunnelApi> {
  const ext = vscode.extensions.getExtension<AmqpTunnelApi>(EXTENSION_ID);
  assert.ok(ext, `${EXTENSION_ID} is installed`);
  return ext.activate();
}

let counter = 0;
/** A queue name no other test run uses (the broker is shared). */
export function uniqueQueue(what: string): string {
  return `vscode-test-${what}-${process.pid}-${Date.now().toString(36)}-${++counter}`;
}

/** A TCP echo server on a free port. */
export async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Connect to `address`, send `text`, half-close, and return everything the other side sent back. */
export async function roundTrip(address: string, text: string): Promise<string> {
  const { host, port } = splitAddress(address);
  const socket = net.connect({ host, port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await once(socket, 'connect');
  socket.end(text);
  await once(socket, 'end');
  socket.destroy();
  return Buffer.concat(chunks).toString();
}

/** Resolves with the error code of a connection attempt to `address` (undefined when it connected). */
export async function connectError(address: string): Promise<string | undefined> {
  const { host, port } = splitAddress(address);
  const socket = net.connect({ host, port });
  try {
    await once(socket, 'connect');
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  } finally {
    socket.destroy();
  }
}

export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

export interface SeenItem {
  broker: string;
  label: string;
  description: string;
  tooltip: string;
  icon: string;
  contextValue: string;
}

/** The Tunnels view as a user sees it: every tunnel item with its broker group. */
export function treeItems(api: AmqpTunnelApi): SeenItem[] {
  const out: SeenItem[] = [];
  for (const group of api.tree.getChildren()) {
    if (group.type === 'section') continue; // "Published on <broker>": not tunnels (published.test.ts)
    const groupItem = api.tree.getTreeItem(group);
    for (const child of api.tree.getChildren(group)) {
      const item = api.tree.getTreeItem(child);
      const tooltip = item.tooltip instanceof vscode.MarkdownString ? item.tooltip.value : String(item.tooltip ?? '');
      out.push({
        broker: String(groupItem.label),
        label: String(item.label),
        description: String(item.description ?? ''),
        tooltip,
        icon: (item.iconPath as vscode.ThemeIcon).id,
        contextValue: item.contextValue ?? '',
      });
    }
  }
  return out;
}

/** The item of the tunnel on `queue` of kind `kind`. */
export function itemOf(api: AmqpTunnelApi, kind: 'forward' | 'publish', queue: string): SeenItem {
  const found = treeItems(api).filter((i) => i.description.startsWith(`${kind} `) && i.label.includes(queue));
  assert.equal(found.length, 1, `one ${kind} item for ${queue} in ${JSON.stringify(treeItems(api), null, 1)}`);
  return found[0];
}

/** Wait until `check` holds, re-checking whenever the tunnels change (and at least every 250 ms). */
export async function waitFor(api: AmqpTunnelApi, what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  if (check()) return;
  await new Promise<void>((resolve, reject) => {
    const test = (): void => {
      if (!check()) return;
      cleanup();
      resolve();
    };
    const sub = api.manager.onDidChange(test);
    const tick = setInterval(test, 250);
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for: ${what}; view: ${JSON.stringify(treeItems(api), null, 1)}`));
    }, timeoutMs);
    const cleanup = (): void => {
      sub.dispose();
      clearInterval(tick);
      clearTimeout(timer);
    };
  });
}

export function entryOf(api: AmqpTunnelApi, s: TunnelSummary): TunnelEntry {
  const e = api.manager.get(s.id);
  assert.ok(e, `tunnel ${s.id} is listed`);
  return e;
}

export async function run<T>(command: string, ...args: unknown[]): Promise<T> {
  return (await vscode.commands.executeCommand(command, ...args)) as T;
}

/** The real broker of the suites, as a user adds it: the URL in settings has only the user, the password goes to the secret store. */
export const TEST_BROKER_URL = 'amqp://guest@127.0.0.1:5672';

/**
 * In a describe(), before its own hooks: Add Broker `name` (TEST_BROKER_URL,
 * password guest) before its tests, Remove Broker after them.
 */
export function useTestBroker(name: string): void {
  before(() => run(COMMANDS.addBroker, { name, url: TEST_BROKER_URL, password: 'guest' }));
  after(() => run(COMMANDS.removeBroker, { name }));
}

/**
 * Answer the quick pick that `pending` (a command or a launch) is waiting on,
 * the way a user would with the keyboard: `workbench.action.acceptSelectedQuickOpenItem`
 * (Enter on the first item) or `workbench.action.closeQuickOpen` (Escape).
 * The pick opens some time after the call starts and no API tells when, so
 * the answer is repeated until `pending` settles; with no pick open it does nothing.
 */
export async function answerQuickPick<T>(pending: Thenable<T>, answer: 'accept' | 'escape', timeoutMs = 15_000): Promise<T> {
  let settled = false;
  const result = Promise.resolve(pending).finally(() => {
    settled = true;
  });
  const command = answer === 'accept' ? 'workbench.action.acceptSelectedQuickOpenItem' : 'workbench.action.closeQuickOpen';
  const deadline = Date.now() + timeoutMs;
  while (!settled) {
    if (Date.now() > deadline) throw new Error(`no quick pick was answered in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
    if (!settled) await vscode.commands.executeCommand(command);
  }
  return result;
}

type Page = import('playwright-core').Page;
let workbench: Promise<Page> | undefined;

/**
 * The VS Code page in the browser the runner drives (test/extension/runner.ts
 * passes Chromium's DevTools address in AMQP_TUNNEL_TEST_CDP), for what the
 * extension API cannot answer: a notification's button,
 * typing into a quick input. One connection for the whole run.
 */
export function workbenchPage(): Promise<Page> {
  workbench ??= (async () => {
    const address = process.env.AMQP_TUNNEL_TEST_CDP;
    assert.ok(address, 'AMQP_TUNNEL_TEST_CDP is not set: this test needs the VS Code server runner (test/extension/runner.ts), not test-electron');
    const { chromium } = await import('playwright-core');
    const browser = await chromium.connectOverCDP(address);
    const page = browser.contexts().flatMap((c) => c.pages()).find((p) => p.url().includes('folder='));
    assert.ok(page, `no VS Code page among ${browser.contexts().flatMap((c) => c.pages()).map((p) => p.url()).join(', ')}`);
    return page;
  })();
  return workbench;
}

/**
 * A notification whose text contains `containing`, in the notification
 * center (with --enable-smoke-test-driver VS Code shows no toasts, every
 * notification goes there; modal dialogs are refused in extension tests).
 */
async function notificationItem(containing: string, timeoutMs: number): Promise<ReturnType<Page['locator']>> {
  const page = await workbenchPage();
  const item = page.locator('.notifications-center .notification-list-item', { hasText: containing }).first();
  const deadline = Date.now() + timeoutMs;
  // Opened while it is empty, the notification center stays closed, and a notification that comes
  // later shows as a toast only (a debug launch asks after its configuration is resolved): open it
  // again until the notification is in it.
  for (;;) {
    await vscode.commands.executeCommand('notifications.showList');
    try {
      await item.waitFor({ state: 'visible', timeout: Math.max(1, Math.min(1000, deadline - Date.now())) });
      return item;
    } catch (err) {
      if (Date.now() < deadline) continue;
      const seen = await page.locator('.notifications-center .notification-list-item').allInnerTexts().catch(() => []);
      throw new Error(`no notification with "${containing}" within ${timeoutMs} ms (${(err as Error).message.split('\n')[0]}); the notification center shows: ${JSON.stringify(seen)}`);
    }
  }
}

/**
 * Close every notification (as "Clear All Notifications" does: an open
 * question is answered with nothing), so the one a test waits for is not
 * scrolled out of the notification center by earlier ones.
 */
export async function clearNotifications(): Promise<void> {
  await vscode.commands.executeCommand('notifications.clearAll');
}

/** Wait for the notification whose text contains `containing`, click its button `button` as a user would, and return its text. */
export async function clickNotificationButton(containing: string, button: string, timeoutMs = 20_000): Promise<string> {
  const item = await notificationItem(containing, timeoutMs);
  const text = (await item.innerText()).replace(/\s+/g, ' ');
  const target = item.getByRole('button', { name: button, exact: true }).first();
  // A collapsed notification hides its buttons: expand it first.
  if (!(await target.isVisible())) await item.locator('.codicon-notifications-expand').first().click({ timeout: timeoutMs });
  await target.click({ timeout: timeoutMs });
  await vscode.commands.executeCommand('notifications.hideList');
  return text;
}

/** The text of the notification containing `containing` once it shows. */
export async function notificationText(containing: string, timeoutMs = 20_000): Promise<string> {
  const item = await notificationItem(containing, timeoutMs);
  const text = (await item.innerText()).replace(/\s+/g, ' ');
  await vscode.commands.executeCommand('notifications.hideList');
  return text;
}

/** Wait until the quick pick or input box shows one of `texts` (in its placeholder, title or prompt); returns the one shown. */
export async function quickInputShowing(texts: string[], timeoutMs = 20_000): Promise<string> {
  const page = await workbenchPage();
  const widget = page.locator('.quick-input-widget');
  const input = widget.locator('input').first();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const shown = (await widget.isVisible().catch(() => false))
      ? `${await widget.innerText().catch(() => '')} ${(await input.getAttribute('placeholder').catch(() => '')) ?? ''}`
      : '';
    const found = texts.find((t) => shown.includes(t));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no quick input with ${texts.map((t) => `"${t}"`).join(' or ')} within ${timeoutMs} ms (showing: ${shown.trim() || 'nothing'})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Answer the open quick pick or input box whose placeholder or prompt contains
 * `containing` by typing `value` (none: keep what it holds) and pressing Enter.
 */
export async function typeIntoQuickInput(containing: string, value: string | undefined, timeoutMs = 20_000): Promise<void> {
  await quickInputShowing([containing], timeoutMs);
  const input = (await workbenchPage()).locator('.quick-input-widget input').first();
  if (value !== undefined) await input.fill(value);
  // A quick pick filters as it is typed: let it settle on the typed row before Enter.
  await new Promise((r) => setTimeout(r, 300));
  await input.press('Enter');
}
