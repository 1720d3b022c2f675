/** Helpers for the in-editor tests: the extension's API, TCP ends, the tree as a user sees it, waiting on events. */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import * as vscode from 'vscode';
import type { AmqpTunnelApi } from '../../../src/extension/extension';
import type { TunnelSummary } from '../../../src/extension/services';
import type { TunnelEntry } from '../../../src/extension/manager';

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
