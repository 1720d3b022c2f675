/**
 * Tunnel secrets in the extension: kept in VS Code's secret store per tunnel
 * (broker + queue) or per broker, set with "Set Tunnel Secret", never shown,
 * logged or written to settings. Also the extension's safe defaults: one
 * warning per broker for a publish without a secret, and a confirmation
 * before a forward listens on every interface.
 *
 *     amqpTunnel.setTunnelSecret { broker?, queue?, secret? }   (no queue: every tunnel on the broker)
 */
import * as vscode from 'vscode';
import type { HostPort } from '../tunnel/spec';
import { MIN_SECRET_BYTES } from '../stream/secure';
import { COMMANDS } from './ids';
import { allInterfacesQuestion, isAllInterfaces, secretInputProblem, unprotectedMessage } from './secretModel';

const PREFIX = 'amqpTunnel.tunnelSecret';
const key = (broker: string, queue?: string): string => (queue ? `${PREFIX}/${broker}/queue/${queue}` : `${PREFIX}/${broker}`);

export class TunnelSecrets {
  private readonly warned = new Set<string>();

  /** `known` is the set every log line and message is scrubbed of (Brokers.knownSecrets). */
  constructor(
    private readonly store: vscode.SecretStorage,
    private readonly known: Set<string>,
  ) {}

  /** The secret of this tunnel: its own, else its broker's, else none. */
  async get(broker: string, queue: string): Promise<string | undefined> {
    const secret = (await this.store.get(key(broker, queue))) ?? (await this.store.get(key(broker)));
    if (secret) this.known.add(secret);
    return secret || undefined;
  }

  /** Store (or, with '', remove) the secret of one tunnel (`queue`) or of every tunnel on `broker`. */
  async set(broker: string, queue: string | undefined, secret: string): Promise<void> {
    if (secret === '') {
      await this.store.delete(key(broker, queue));
      return;
    }
    this.known.add(secret);
    await this.store.store(key(broker, queue), secret);
  }

  /** Once per broker and window: publishing without a secret lets any broker user in. */
  warnUnprotected(broker: string, queue: string, target: string): void {
    if (this.warned.has(broker)) return;
    this.warned.add(broker);
    void vscode.window
      .showWarningMessage(unprotectedMessage(broker, queue, target), 'Set Tunnel Secret')
      .then((pick) => {
        if (pick) void vscode.commands.executeCommand(COMMANDS.setTunnelSecret, { broker });
      });
  }
}

/**
 * A forward on every interface is reachable by other machines: ask first,
 * wherever it starts (TunnelManager asks before every start of such a
 * forward: the Forward command, kept tunnels, Restart, debugging). A
 * warning notification rather than a modal dialog: kept tunnels start as the
 * window opens, several at once, and a modal would hold the whole window.
 * Only the button starts it; Cancel or closing the notification does not.
 */
export async function confirmAllInterfaces(queue: string, bind: HostPort): Promise<boolean> {
  if (!isAllInterfaces(bind)) return true;
  const choice = await vscode.window.showWarningMessage(allInterfacesQuestion(queue, bind), ALL_INTERFACES_ACTION, 'Cancel');
  return choice === ALL_INTERFACES_ACTION;
}

export const ALL_INTERFACES_ACTION = 'Listen on All Interfaces';

interface Pickable {
  list(): Array<{ name: string; url: string }>;
}

/** "Set Tunnel Secret": for one queue or a whole broker; typed in a password box, never shown. */
export async function setTunnelSecretCommand(
  secrets: TunnelSecrets,
  brokers: Pickable,
  args: { broker?: string; queue?: string; secret?: string },
): Promise<boolean> {
  const title = 'Set Tunnel Secret';
  let broker = args.broker;
  if (!broker) {
    const all = brokers.list();
    if (all.length === 0) {
      void vscode.window.showInformationMessage('No broker is configured yet.', 'Add Broker').then((c) => {
        if (c) void vscode.commands.executeCommand(COMMANDS.addBroker);
      });
      return false;
    }
    broker = (await vscode.window.showQuickPick(all.map((b) => ({ label: b.name, description: b.url })), { title, placeHolder: 'Which broker?' }))?.label;
    if (!broker) return false;
  }
  let queue = args.queue;
  if (queue === undefined && args.secret === undefined) {
    const scope = await vscode.window.showQuickPick(
      [
        { label: `Every tunnel on '${broker}'`, all: true },
        { label: 'One queue…', all: false },
      ],
      { title, placeHolder: 'Use the secret for' },
    );
    if (!scope) return false;
    if (!scope.all) {
      queue = await vscode.window.showInputBox({ title, prompt: 'The queue (tunnel name) this secret is for', ignoreFocusOut: true });
      if (!queue) return false;
    }
  }
  const secret =
    args.secret ??
    (await vscode.window.showInputBox({
      title,
      prompt: `Tunnel secret for ${queue ? `queue '${queue}'` : `every tunnel`} on '${broker}': the same on both sides, at least ${MIN_SECRET_BYTES} bytes (kept in VS Code's secret store; leave empty to remove it)`,
      password: true,
      validateInput: secretInputProblem,
      ignoreFocusOut: true,
    }));
  if (secret === undefined) return false;
  const problem = secretInputProblem(secret);
  if (problem) {
    void vscode.window.showErrorMessage(problem);
    return false;
  }
  await secrets.set(broker, queue, secret);
  vscode.window.setStatusBarMessage(
    `${secret ? 'Stored' : 'Removed'} the tunnel secret for ${queue ? `queue '${queue}'` : 'every tunnel'} on '${broker}'; running tunnels use it after a restart`,
    5000,
  );
  return true;
}
