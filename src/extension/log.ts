/**
 * The "AMQP Tunnel" LogOutputChannel as the library's Logger. Every line is
 * scrubbed (URL passwords, stored broker passwords) before it is written;
 * the last lines are also kept in memory for `AmqpTunnelApi.recentLog`.
 */
import * as vscode from 'vscode';
import type { Logger } from '../common/logger';
import { LOG_CHANNEL } from './ids';
import { scrub } from './model';

const KEEP_LINES = 500;

export class TunnelLog implements Logger, vscode.Disposable {
  readonly channel: vscode.LogOutputChannel;
  private readonly recent: string[] = [];

  constructor(private readonly secrets: () => Iterable<string>) {
    this.channel = vscode.window.createOutputChannel(LOG_CHANNEL, { log: true });
  }

  debug(message: string): void {
    this.channel.debug(this.keep('debug', message));
  }
  info(message: string): void {
    this.channel.info(this.keep('info', message));
  }
  warn(message: string): void {
    this.channel.warn(this.keep('warn', message));
  }
  error(message: string): void {
    this.channel.error(this.keep('error', message));
  }

  /** The last lines written, scrubbed ("info: tunnel forward q > ..."). */
  lines(): string[] {
    return [...this.recent];
  }

  show(): void {
    this.channel.show(true);
  }

  dispose(): void {
    this.channel.dispose();
  }

  private keep(level: string, message: string): string {
    const clean = scrub(message, this.secrets());
    this.recent.push(`${level}: ${clean}`);
    if (this.recent.length > KEEP_LINES) this.recent.splice(0, this.recent.length - KEEP_LINES);
    return clean;
  }
}
