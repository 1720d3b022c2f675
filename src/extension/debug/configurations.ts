/**
 * Attach configurations over AMQP for launch.json, offered where a user
 * looks first:
 *
 * - "create a launch.json file" (Run and Debug): "AMQP Tunnel" is in the
 *   debugger list (package.json gives the `amqp-tunnel` debugger a label), and
 *   picking it writes these configurations with Node.js first, so the
 *   configuration VS Code selects, and F5 starts, attaches over the tunnel
 *   instead of launching a local copy;
 * - the Run and Debug drop-down ("AMQP Tunnel…"): one attach configuration
 *   per queue in the Tunnels view or kept in settings (dynamic configurations).
 *
 * The configurations carry the `amqpTunnel` property (provider.ts fills in
 * host and port when they start).
 */
import * as vscode from 'vscode';
import type { Services } from '../services';

export const CONFIG_DEBUG_TYPE = 'amqp-tunnel';

/** The queue and broker to put into new configurations: a forwarded or kept queue, else placeholders. */
function known(s: Services): { queue: string; broker: string } {
  const forward = s.manager.list().find((e) => e.spec.kind === 'forward');
  const kept = s.kept.read().specs[0];
  return {
    queue: forward?.spec.queue ?? kept?.queue ?? 'my-app-debug',
    broker: forward?.spec.broker ?? kept?.broker ?? s.brokers.list()[0]?.name ?? 'local',
  };
}

/** The initial configurations, Node.js first (the one VS Code selects). */
export function initialConfigurations(queue: string, broker: string): vscode.DebugConfiguration[] {
  const amqpTunnel = { queue, broker };
  return [
    { type: 'node', request: 'attach', name: 'Attach to Node.js over AMQP', amqpTunnel, localRoot: '${workspaceFolder}', remoteRoot: '/app' },
    { type: 'debugpy', request: 'attach', name: 'Attach to Python over AMQP', amqpTunnel, pathMappings: [{ localRoot: '${workspaceFolder}', remoteRoot: '/app' }] },
    { type: 'java', request: 'attach', name: 'Attach to Java over AMQP', amqpTunnel },
  ];
}

/**
 * F5 with no launch.json, "AMQP Tunnel" picked as the debugger: attach with
 * Node.js to the queue in the view (or kept); a configuration of our type
 * is never started as it is (it has no adapter).
 */
export function resolveOwnType(s: Services, config: vscode.DebugConfiguration): vscode.DebugConfiguration | undefined {
  if (config.type && config.type !== CONFIG_DEBUG_TYPE) return config;
  if (config.request) return config;
  const forward = s.manager.list().find((e) => e.spec.kind === 'forward') ?? undefined;
  const kept = s.kept.read().specs.find((k) => k.kind === 'forward');
  const target = forward?.spec ?? kept;
  if (!target) {
    void vscode.window.showErrorMessage(
      'AMQP Tunnel: no queue to attach to yet. Forward the queue the remote process is published on ("Forward port over AMQP"), or create a launch.json with an "amqpTunnel" attach configuration.',
    );
    return undefined;
  }
  return initialConfigurations(target.queue, target.broker)[0];
}

export function registerConfigurationProviders(s: Services): vscode.Disposable {
  return vscode.Disposable.from(
    vscode.debug.registerDebugConfigurationProvider(CONFIG_DEBUG_TYPE, { resolveDebugConfiguration: (_folder, config) => resolveOwnType(s, config) }),
    vscode.debug.registerDebugConfigurationProvider(
      CONFIG_DEBUG_TYPE,
      {
        provideDebugConfigurations: () => {
          const k = known(s);
          return initialConfigurations(k.queue, k.broker);
        },
      },
      vscode.DebugConfigurationProviderTriggerKind.Initial,
    ),
    vscode.debug.registerDebugConfigurationProvider(
      CONFIG_DEBUG_TYPE,
      {
        provideDebugConfigurations: () => {
          const seen = new Map<string, { queue: string; broker: string }>();
          for (const e of s.manager.list()) if (e.spec.kind === 'forward') seen.set(`${e.spec.broker}\0${e.spec.queue}`, { queue: e.spec.queue, broker: e.spec.broker });
          for (const k of s.kept.read().specs) if (k.kind === 'forward') seen.set(`${k.broker}\0${k.queue}`, { queue: k.queue, broker: k.broker });
          return [...seen.values()].map(({ queue, broker }) => ({
            type: 'node',
            request: 'attach',
            name: `Attach to Node.js on ${queue} (${broker})`,
            amqpTunnel: { queue, broker },
          }));
        },
      },
      vscode.DebugConfigurationProviderTriggerKind.Dynamic,
    ),
  );
}
