/**
 * Tell the user when the forward under a live debug session loses its
 * broker: the debugger's connection through it is reset, and without a word
 * the session would just end. A session uses a forward when the port it
 * attached to (its configuration's port field, or connect.port) is the
 * forward's local port.
 */
import * as vscode from 'vscode';
import type { Services } from '../services';
import type { TunnelEntry } from '../manager';
import { parseBind } from '../../tunnel/spec';

/** The local port a session attached to, when it attached to this machine (a forward only listens here). */
function attachedPort(config: vscode.DebugConfiguration): number | undefined {
  const connect = config.connect as { host?: unknown; port?: unknown } | undefined;
  const host = connect?.host ?? config.address ?? config.hostName ?? config.host;
  if (host !== undefined && !['127.0.0.1', 'localhost', '::1', '[::1]'].includes(String(host))) return undefined;
  const port = Number(connect?.port ?? config.port);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

export class SessionTunnelWatch implements vscode.Disposable {
  private readonly sessions = new Set<vscode.DebugSession>();
  private readonly lastState = new Map<string, string>();
  private readonly subscriptions: vscode.Disposable[];

  constructor(
    private readonly s: Services,
    private readonly warn: (configuration: string, message: string) => void,
  ) {
    this.subscriptions = [
      vscode.debug.onDidStartDebugSession((session) => {
        if (!session.parentSession) this.sessions.add(session);
      }),
      vscode.debug.onDidTerminateDebugSession((session) => this.sessions.delete(session)),
      s.manager.onDidChange(() => this.check()),
    ];
  }

  private check(): void {
    for (const e of this.s.manager.list()) {
      if (e.spec.kind !== 'forward') continue;
      const before = this.lastState.get(e.id);
      const now = e.state;
      this.lastState.set(e.id, now);
      if (now === before || (now !== 'reconnecting' && !(now === 'ready' && before === 'reconnecting'))) continue;
      for (const session of this.usersOf(e)) {
        if (now === 'reconnecting') {
          this.warn(
            session.name,
            `the forward of queue '${e.spec.queue}' (${e.localAddress}) lost broker '${e.spec.broker}' (${e.brokerAddress}) and is reconnecting; ` +
              `the debugger's connection through it was reset${e.lastError ? ` (${e.lastError})` : ''}. Attach again once the tunnel is ready.`,
          );
        } else {
          vscode.window.setStatusBarMessage(`AMQP Tunnel: the forward of queue '${e.spec.queue}' is connected again; attach again to debug`, 8000);
        }
      }
    }
  }

  private usersOf(e: TunnelEntry): vscode.DebugSession[] {
    const port = parseBind(e.localAddress).port;
    return [...this.sessions].filter((s) => attachedPort(s.configuration) === port);
  }

  dispose(): void {
    for (const d of this.subscriptions) d.dispose();
  }
}
