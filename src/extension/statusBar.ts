/** A status-bar item: how many tunnels are ready; a click opens the Tunnels view. */
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

  update(): void {
    const all = this.manager.list();
    const running = all.filter((e) => e.running);
    if (all.length === 0) {
      this.item.hide();
      return;
    }
    const ready = running.filter((e) => e.state === 'ready').length;
    const troubled = all.filter((e) => e.state === 'reconnecting' || e.state === 'failed').length;
    this.item.text = `$(plug) ${ready}/${running.length} ${running.length === 1 ? 'tunnel' : 'tunnels'} ready`;
    this.item.tooltip = `AMQP Tunnel: ${plural(ready, 'tunnel')} ready, ${plural(running.length - ready, 'tunnel')} starting or reconnecting, ${plural(all.length - running.length, 'tunnel')} stopped or failed. Click to open the Tunnels view.`;
    this.item.backgroundColor = troubled ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.item.show();
  }

  dispose(): void {
    this.subscription.dispose();
    this.item.dispose();
  }
}
