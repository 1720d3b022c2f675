/**
 * Kept tunnels: `amqpTunnel.tunnels` in user or workspace settings. They
 * start when the window opens, but only in a trusted workspace: a cloned
 * repository must not be able to publish a port of this machine by shipping
 * a .vscode/settings.json. (package.json also lists the setting under
 * `restrictedConfigurations`, so an untrusted workspace's value is ignored.)
 */
import * as vscode from 'vscode';
import { CONFIG_SECTION, SETTINGS } from './ids';
import { keptFromSpec, specFromKept, specKey, type KeptTunnel, type TunnelSpec } from './model';

export class KeptTunnels {
  constructor(private readonly defaultBroker: () => string | undefined) {}

  /** The kept specs of user and workspace settings (both lists, without duplicates) and problems with entries. */
  read(): { specs: TunnelSpec[]; problems: string[] } {
    const info = vscode.workspace.getConfiguration(CONFIG_SECTION).inspect<unknown[]>(SETTINGS.tunnels);
    const raw = [...asList(info?.globalValue), ...asList(info?.workspaceValue), ...asList(info?.workspaceFolderValue)];
    const specs: TunnelSpec[] = [];
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const r of raw) {
      const s = specFromKept(r, this.defaultBroker());
      if (typeof s === 'string') {
        problems.push(s);
      } else if (!seen.has(specKey(s))) {
        seen.add(specKey(s));
        specs.push(s);
      }
    }
    return { specs, problems };
  }

  has(spec: TunnelSpec): boolean {
    const key = specKey(spec);
    return this.read().specs.some((s) => specKey(s) === key);
  }

  /** Keep a tunnel: in the workspace's settings when a folder is open, else in user settings. Returns where. */
  async keep(spec: TunnelSpec): Promise<'workspace' | 'user'> {
    if (this.has(spec)) return vscode.workspace.workspaceFolders?.length ? 'workspace' : 'user';
    const config = vscode.workspace.getConfiguration(CONFIG_SECTION);
    const info = config.inspect<unknown[]>(SETTINGS.tunnels);
    const inWorkspace = !!vscode.workspace.workspaceFolders?.length;
    const current = asList(inWorkspace ? info?.workspaceValue : info?.globalValue);
    await config.update(SETTINGS.tunnels, [...current, keptFromSpec(spec)], inWorkspace ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global);
    return inWorkspace ? 'workspace' : 'user';
  }

  /** Stop keeping a tunnel, wherever it is kept. */
  async forget(spec: TunnelSpec): Promise<void> {
    const key = specKey(spec);
    const config = vscode.workspace.getConfiguration(CONFIG_SECTION);
    const info = config.inspect<unknown[]>(SETTINGS.tunnels);
    const scopes: Array<[unknown, vscode.ConfigurationTarget]> = [
      [info?.globalValue, vscode.ConfigurationTarget.Global],
      [info?.workspaceValue, vscode.ConfigurationTarget.Workspace],
    ];
    for (const [value, target] of scopes) {
      const list = asList(value);
      const rest = list.filter((r) => {
        const s = specFromKept(r, this.defaultBroker());
        return typeof s === 'string' || specKey(s) !== key;
      });
      if (rest.length !== list.length) await config.update(SETTINGS.tunnels, rest.length ? rest : undefined, target);
    }
  }
}

function asList(value: unknown): KeptTunnel[] {
  return Array.isArray(value) ? (value as KeptTunnel[]) : [];
}
