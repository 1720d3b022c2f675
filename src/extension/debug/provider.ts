/**
 * The DebugConfigurationProvider for every debug type ('*'). It runs in
 * `resolveDebugConfigurationWithSubstitutedVariables`, which VS Code calls
 * after the preLaunchTask and after `${command:...}` variables were
 * substituted (resolveDebugConfiguration -> variables -> preLaunchTask ->
 * this hook -> the session), so:
 *
 * - a configuration whose preLaunchTask is an `amqp-tunnel` task that failed
 *   is cancelled with the task's cause (VS Code itself would attach anyway:
 *   a background task that went idle counts as a success); one that is ready
 *   has its queue checked again (a reused task may outlive its publisher);
 * - a configuration with an `amqpTunnel` property gets its forward started
 *   (or reused) and the local host and port written where its debugger
 *   reads them (fields.ts), after any preLaunchTask ran;
 * - port fields holding a string of digits (from `${command:amqpTunnel.localPort}`)
 *   become numbers.
 *
 * Returning undefined cancels the launch; the cause is shown as one
 * notification that names the queue and the broker.
 *
 *     { "type": "node", "request": "attach", "name": "Attach over AMQP",
 *       "amqpTunnel": { "queue": "my-app-debug", "broker": "staging" } }
 */
import * as vscode from 'vscode';
import type { Services } from '../services';
import type { TunnelEntry } from '../manager';
import { applyLocalAddress, numericPorts, parseAmqpTunnelProperty } from './fields';
import { brokerFor, checkPublished, ensureForward, releaseForward } from './forwards';
import type { TunnelTasks } from './task';

/** The property that marks a session whose forward we stop when it ends. */
const SESSION_KEY = '__amqpTunnelSession';

export class TunnelDebugProvider implements vscode.DebugConfigurationProvider, vscode.Disposable {
  private nextToken = 1;
  /** Forwards to stop when the session carrying the token ends. */
  private readonly toStop = new Map<string, { entry: TunnelEntry; keepListed: boolean }>();
  private readonly subscription: vscode.Disposable;

  constructor(
    private readonly s: Services,
    private readonly tasks: TunnelTasks,
    private readonly report: (configName: string, message: string) => void,
  ) {
    this.subscription = vscode.debug.onDidTerminateDebugSession((session) => this.sessionEnded(session));
  }

  async resolveDebugConfigurationWithSubstitutedVariables(
    _folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration,
  ): Promise<vscode.DebugConfiguration | undefined> {
    const name = config.name || config.type;
    // 1. A preLaunchTask of ours must have succeeded, and its queue must still be published.
    const run = config.preLaunchTask === undefined ? undefined : this.tasks.lastRun(config.preLaunchTask);
    if (run) {
      await run.settled;
      if (run.state === 'failed') return this.cancel(name, run.failure ?? `the task '${run.label}' failed`);
      if (run.state === 'ready') {
        try {
          const broker = brokerFor(this.s, run.definition.broker);
          await checkPublished(this.s, run.definition.queue, broker.name, broker.address);
        } catch (err) {
          return this.cancel(name, (err as Error).message);
        }
      }
    }
    // 2. The amqpTunnel property: start or reuse the forward, fill in host and port.
    if (config.amqpTunnel !== undefined) {
      const prop = parseAmqpTunnelProperty(config.amqpTunnel);
      if (typeof prop === 'string') return this.cancel(name, prop);
      try {
        const r = await ensureForward(this.s, prop);
        const fields = applyLocalAddress(config, r.host, r.port);
        this.s.log.info(`debug '${name}': ${fields.join(', ')} = ${r.entry.localAddress} (forward of queue '${prop.queue}'${r.started ? ', started for this session' : ', reused'})`);
        if (prop.stopWhenDone ?? r.started) {
          const token = `s${this.nextToken++}`;
          config[SESSION_KEY] = token;
          this.toStop.set(token, { entry: r.entry, keepListed: r.restarted ?? false });
        }
      } catch (err) {
        return this.cancel(name, (err as Error).message);
      }
    }
    numericPorts(config);
    return config;
  }

  private cancel(name: string, message: string): undefined {
    this.s.log.error(`debug '${name}': ${message}`);
    this.report(name, message);
    return undefined;
  }

  private sessionEnded(session: vscode.DebugSession): void {
    const token = session.configuration[SESSION_KEY] as string | undefined;
    // Child sessions (js-debug's per-target sessions) copy the configuration: only the root counts.
    if (!token || session.parentSession) return;
    const stop = this.toStop.get(token);
    this.toStop.delete(token);
    if (stop) void releaseForward(this.s, stop.entry, `debug session '${session.name}' ended`, stop.keepListed).catch(() => undefined);
  }

  dispose(): void {
    this.subscription.dispose();
  }
}
