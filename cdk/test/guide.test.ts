/**
 * docs/DEPLOY.md runs as written: every shell block says where it runs (`# in DIR`), and every
 * directory, make target, npm script, terraform output, stack, stack output and file path it
 * names exists there, or is made by an earlier step. The steps that talk to GCP and AWS cannot
 * run here; what they name can be checked.
 */
import * as fs from 'fs';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { DEFAULTS } from '../lib/config';
import { yubaStage } from '../lib/stage';
import { FEATURE_FLAGS } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const GUIDE = path.join(ROOT, 'docs', 'DEPLOY.md');

interface Block {
  readonly dir: string;
  readonly lines: string[];
  readonly at: number;
}

/** The ```sh blocks of a Markdown text, with the directory each says it runs in. */
function shellBlocks(text: string): Block[] {
  const blocks: Block[] = [];
  const re = /```sh\n([\s\S]*?)```/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const at = text.slice(0, m.index).split('\n').length;
    // Continuation lines (ending in a backslash) are one command.
    const lines = m[1].replace(/\\\n\s*/g, ' ').split('\n').filter((l) => l.trim());
    const where = /^# in (\S+)$/.exec(lines[0] ?? '');
    if (!where) throw new Error(`DEPLOY.md:${at}: a shell block must start with '# in DIR'`);
    blocks.push({ dir: where[1], lines: lines.slice(1), at });
  }
  return blocks;
}

/** What the commands of the guide name that must exist, checked against the repository. */
function problems(text: string): string[] {
  const out: string[] = [];
  const made = new Set<string>(); // files earlier steps write
  const makefile = fs.readFileSync(path.join(ROOT, 'Makefile'), 'utf8');
  const scripts = JSON.parse(fs.readFileSync(path.join(ROOT, 'cdk', 'package.json'), 'utf8')).scripts as Record<string, string>;
  const packageScript = fs.readFileSync(path.join(ROOT, 'scripts', 'package.py'), 'utf8');
  const app = new App({ context: { ...FEATURE_FLAGS, 'yuba:placeholderCode': true, 'yuba:package': '/nonexistent' } });
  const { registry, main } = yubaStage(app, DEFAULTS.dev);
  const stacks = new Map([registry, main].map((s) => [s.stackName, Template.fromStack(s).toJSON()]));
  const exists = (p: string) => fs.existsSync(p) || made.has(path.resolve(p));

  for (const block of shellBlocks(text)) {
    const dir = path.resolve(ROOT, block.dir);
    const where = (line: string) => `DEPLOY.md:${block.at} (in ${block.dir}): ${line}`;
    if (!fs.existsSync(dir)) {
      out.push(where(`no directory ${block.dir}`));
      continue;
    }
    for (const line of block.lines) {
      const make = /^make (\S+)/.exec(line);
      if (make && !(block.dir === '.' && new RegExp(`^${make[1]}:`, 'm').test(makefile))) out.push(where(`no make target ${make[1]} here`));
      const npm = /^npm (?:run (\S+)|(test|ci))/.exec(line);
      if (npm) {
        if (block.dir !== 'cdk') out.push(where('npm runs in cdk'));
        if (npm[1] && !(npm[1] in scripts)) out.push(where(`no npm script ${npm[1]}`));
      }
      const cp = /^cp (\S+) (\S+)$/.exec(line);
      if (cp) {
        if (!exists(path.join(dir, cp[1]))) out.push(where(`${cp[1]} does not exist`));
        made.add(path.resolve(dir, cp[2]));
      }
      for (const v of line.matchAll(/-var-file=(\S+)/g)) if (!exists(path.join(dir, v[1]))) out.push(where(`${v[1]} is not there`));
      for (const o of line.matchAll(/terraform output -raw (\S+)/g)) {
        const outputs = fs.existsSync(path.join(dir, 'outputs.tf')) ? fs.readFileSync(path.join(dir, 'outputs.tf'), 'utf8') : '';
        if (!outputs.includes(`output "${o[1]}"`)) out.push(where(`no terraform output ${o[1]}`));
      }
      for (const r of line.matchAll(/> (\S+)$/g)) {
        const target = path.resolve(dir, r[1]);
        if (!fs.existsSync(path.dirname(target))) out.push(where(`the directory of ${r[1]} does not exist`));
        made.add(target);
      }
      for (const s of line.matchAll(/--stack-name (\S+)/g)) if (!stacks.has(s[1])) out.push(where(`no stack ${s[1]}`));
      for (const k of line.matchAll(/OutputKey=='(\w+)'/g)) {
        const stack = /--stack-name (\S+)/.exec(line)?.[1];
        if (!stack || !stacks.get(stack)?.Outputs?.[k[1]]) out.push(where(`${stack} has no output ${k[1]}`));
      }
      for (const a of line.matchAll(/oci-archive:(\S+)/g)) {
        const file = path.resolve(dir, a[1]);
        if (path.dirname(file) !== path.join(ROOT, 'target', 'package') || !packageScript.includes(`"${path.basename(file)}"`)) {
          out.push(where(`${a[1]} is not what scripts/package.py writes`));
        }
      }
    }
  }
  // The credential configurations land where the stage's defaults read them.
  for (const file of [DEFAULTS.dev.gcp.workerCredentialsFile, DEFAULTS.dev.gcp.reconcilerCredentialsFile]) {
    if (!made.has(path.resolve(ROOT, 'cdk', file))) out.push(`DEPLOY.md: no step writes cdk/${file}, which the dev stage reads`);
  }
  return out;
}

describe('the deploy guide', () => {
  const text = fs.readFileSync(GUIDE, 'utf8');

  test('every step names only what exists, or what an earlier step made, where it runs', () => {
    expect(problems(text)).toEqual([]);
  });

  test('a guide that runs a step from the wrong place, or names what is not there, fails', () => {
    const broken = [
      ['# in terraform/examples/basic\nterraform init', '# in terraform/examples\nterraform init'],
      ['npm run deploy:dev:registry', 'npm run deploy:dev:registy'],
      ['> ../../../cdk/config/dev-worker-gcp.json', '> ../../cdk/config/dev-worker-gcp.json'],
      ['--stack-name yuba-dev-Registry', '--stack-name yuba-dev-Images'],
      ['oci-archive:target/package/yuba-image.oci.tar', 'oci-archive:target/package/image.tar'],
      ['terraform output -raw reconciler_credentials_json', 'terraform output -raw reconciler_json'],
      ['# in .\nmake package', '# in .\nmake packages'],
    ];
    for (const [from, to] of broken) {
      expect(text).toContain(from);
      expect(problems(text.replace(from, to))).not.toEqual([]);
    }
  });
});
