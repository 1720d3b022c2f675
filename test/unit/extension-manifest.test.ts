import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COMMANDS, CONFIG_SECTION, SETTINGS, VIEWS, VIEW_CONTAINER } from '../../src/extension/ids';

interface Manifest {
  main: string;
  activationEvents: string[];
  contributes: {
    commands: Array<{ command: string; title: string; category: string }>;
    menus: Record<string, Array<{ command: string; when?: string }>>;
    viewsContainers: { activitybar: Array<{ id: string; icon: string }> };
    views: Record<string, Array<{ id: string }>>;
    viewsWelcome: Array<{ view: string; contents: string }>;
    configuration: { properties: Record<string, { scope?: string; markdownDescription?: string; description?: string }> };
  };
}

const root = path.join(__dirname, '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as Manifest;
const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

describe('extension manifest (package.json) and the ids in src/extension/ids.ts', () => {
  it('contributes exactly the commands the code registers', () => {
    assert.deepEqual(sorted(pkg.contributes.commands.map((c) => c.command)), sorted(Object.values(COMMANDS)));
  });

  it('puts every command in the "AMQP Tunnel" category with the titles users search for', () => {
    for (const c of pkg.contributes.commands) assert.equal(c.category, 'AMQP Tunnel', c.command);
    const title = (id: string): string | undefined => pkg.contributes.commands.find((c) => c.command === id)?.title;
    assert.equal(title(COMMANDS.forward), 'Forward port over AMQP');
    assert.equal(title(COMMANDS.publish), 'Publish port over AMQP');
    assert.equal(title(COMMANDS.stop), 'Stop Tunnel');
    assert.equal(title(COMMANDS.restart), 'Restart Tunnel');
    assert.equal(title(COMMANDS.copyAddress), 'Copy Local Address');
    assert.equal(title(COMMANDS.openInBrowser), 'Open in Browser');
    assert.equal(title(COMMANDS.showLog), 'Show Log');
    assert.equal(title(COMMANDS.addBroker), 'Add Broker');
    assert.equal(title(COMMANDS.setBrokerPassword), 'Set Broker Password');
    assert.equal(title(COMMANDS.removeBroker), 'Remove Broker');
  });

  it('contributes exactly the view container and views the code uses', () => {
    assert.deepEqual(
      pkg.contributes.viewsContainers.activitybar.map((c) => c.id),
      [VIEW_CONTAINER],
    );
    assert.deepEqual(Object.keys(pkg.contributes.views), [VIEW_CONTAINER]);
    assert.deepEqual(sorted(pkg.contributes.views[VIEW_CONTAINER].map((v) => v.id)), sorted(Object.values(VIEWS)));
    assert.deepEqual(
      pkg.contributes.viewsWelcome.map((w) => w.view),
      [VIEWS.tunnels],
    );
  });

  it('has the activity-bar icon in media/', () => {
    const icon = pkg.contributes.viewsContainers.activitybar[0].icon;
    assert.match(icon, /^media\//);
    assert.ok(fs.existsSync(path.join(root, icon)), `${icon} exists`);
  });

  it('menus and welcome links name only contributed commands and views', () => {
    const ids = new Set<string>(Object.values(COMMANDS));
    for (const [menu, items] of Object.entries(pkg.contributes.menus)) {
      for (const item of items) {
        assert.ok(ids.has(item.command), `${menu}: ${item.command} is a contributed command`);
        for (const view of item.when?.match(/view == ([\w.]+)/g) ?? []) {
          assert.ok((Object.values(VIEWS) as string[]).includes(view.slice('view == '.length)), `${menu}: ${view}`);
        }
      }
    }
    for (const link of pkg.contributes.viewsWelcome[0].contents.match(/command:[\w.]+/g) ?? []) {
      // Besides our commands, the setting names link to the Settings editor.
      assert.ok(ids.has(link.slice('command:'.length)) || link === 'command:workbench.action.openSettings', link);
    }
  });

  it('the welcome says how to attach a debugger and links each setting it names to the Settings editor', () => {
    const text = pkg.contributes.viewsWelcome[0].contents;
    assert.match(text, /Attach Debugger/);
    assert.match(text, /launch\.json/);
    for (const setting of Object.values(SETTINGS)) {
      const key = `${CONFIG_SECTION}.${setting}`;
      assert.ok(text.includes(`[${key}](command:workbench.action.openSettings?${encodeURIComponent(JSON.stringify([key]))})`), `${key} is a link that opens the setting`);
    }
  });

  it('offers Copy Local Address and Open in Browser only on running tunnels (nobody listens on a stopped one)', () => {
    const items = pkg.contributes.menus['view/item/context'].filter((m) => m.command === COMMANDS.copyAddress || m.command === COMMANDS.openInBrowser);
    assert.ok(items.length >= 2);
    for (const m of items) assert.match(m.when ?? '', /viewItem =~ \/;running;\//, `${m.command}: ${m.when}`);
  });

  it('contributes exactly the settings the code reads, each with a description and a scope', () => {
    const want = Object.values(SETTINGS).map((s) => `${CONFIG_SECTION}.${s}`);
    assert.deepEqual(sorted(Object.keys(pkg.contributes.configuration.properties)), sorted(want));
    for (const [key, p] of Object.entries(pkg.contributes.configuration.properties)) {
      assert.ok(p.markdownDescription || p.description, `${key} has a description`);
      assert.ok(p.scope, `${key} has a scope`);
    }
  });

  it('never activates on every event, and loads the bundle', () => {
    assert.ok(!pkg.activationEvents.includes('*'));
    assert.equal(pkg.main, './dist/extension.js');
  });
});
