/** A status-bar item: how many of the view's tunnels are ready; a click opens the Tunnels view. */
import * as vscode from 'vscode';
import { SHOW_VIEW_COMMAND } from './ids';
import type { TunnelManager } from './manager';
import { plural } from './model';

export class TunnelStatusBar implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly manager: TunnelManager) {
    this.item = vscode.window.createStatusBarItem('amqpTunnel.status', vscode.StatusBarAlignment.Left, 10);
    this.item.name = 'AMQP Tunnel';
    this.item.command = SHOW_VIEW_COMMAND;
    this.subscription = manager.onDidChange(() => this.update());
    this.update();
  }

  /**
   * Counts the rows of the Tunnels view: "1/2 tunnels ready" with one ready
   * and one stopped row. A forward whose queue nobody publishes is not
   * counted as ready (it leads nowhere yet).
   */
  update(): void {
    const all = this.manager.list();
    if (all.length === 0) {
      this.item.hide();
      return;
    }
    const ready = all.filter((e) => e.usable).length;
    const waiting = all.filter((e) => e.state === 'ready' && !e.usable).length;
    const busy = all.filter((e) => e.state === 'starting' || e.state === 'reconnecting').length;
    const idle = all.filter((e) => !e.running).length;
    const troubled = all.filter((e) => e.state === 'reconnecting' || e.state === 'failed').length;
    this.item.text = `$(plug) ${ready}/${all.length} ${all.length === 1 ? 'tunnel' : 'tunnels'} ready`;
    this.item.tooltip =
      `AMQP Tunnel: ${plural(ready, 'tunnel')} ready` +
      (waiting ? `, ${plural(waiting, 'forward')} whose queue nobody publishes` : '') +
      `, ${plural(busy, 'tunnel')} starting or reconnecting, ${plural(idle, 'tunnel')} stopped or failed. Click to open the Tunnels view.`;
    this.item.backgroundColor = troubled ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.item.show();
  }

  dispose(): void {
    this.subscription.dispose();
    this.item.dispose();
  }
}
