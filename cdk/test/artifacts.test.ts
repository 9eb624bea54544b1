/**
 * What AWS runs comes from `make package` (scripts/package.py's manifest), by digest; the
 * placeholders that let tests synthesize without a build can never be deployed.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stage } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { PLACEHOLDER_DIGEST, imageDigest, rustLambdaCode } from '../lib/code';
import { Overrides, StageConfig, stageConfig } from '../lib/config';
import { exampleCredentials } from '../lib/gcp';
import { CONTAINER_USER } from '../lib/fargate-worker';
import { IMAGES_KEPT, RegistryStack } from '../lib/registry';
import { YubaStack } from '../lib/stack';
import { yubaStage } from '../lib/stage';
import { ACCOUNT, FEATURE_FLAGS, REGION, synth } from './helpers';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

/** A package directory as scripts/package.py leaves it (anywhere: its paths are its own). */
function fakePackage(image: string | null = DIGEST): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yuba-package-'));
  fs.mkdirSync(path.join(dir, 'lambda'));
  const lambda: Record<string, { zip: string }> = {};
  for (const bin of ['yuba-ingest', 'yuba-worker']) {
    fs.writeFileSync(path.join(dir, 'lambda', `${bin}.zip`), `zip of ${bin}`);
    lambda[bin] = { zip: `lambda/${bin}.zip` };
  }
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ revision: 'abc', lambda, image: image ? { digest: image } : null }));
  return dir;
}

/** The dev stack from a package directory, with GCP configurations as terraform writes them. */
function synthFrom(dir: string, overrides: Overrides<StageConfig> = {}) {
  const gcp = fs.mkdtempSync(path.join(os.tmpdir(), 'yuba-gcp-'));
  const file = (which: string) => {
    const f = path.join(gcp, `${which}.json`);
    fs.writeFileSync(f, exampleCredentials(`yuba-dev-${which}@project.iam.gserviceaccount.com`));
    return f;
  };
  const app = new App({ context: { ...FEATURE_FLAGS, 'yuba:package': dir } });
  const config = stageConfig('dev', { ...overrides, gcp: { workerCredentialsFile: file('worker'), reconcilerCredentialsFile: file('reconciler') } });
  const stage = new Stage(app, config.prefix, { env: { account: ACCOUNT, region: REGION } });
  return Template.fromStack(new YubaStack(stage, 'Yuba', { config })).toJSON();
}

const images = (t: any): unknown[] =>
  Object.values(t.Resources)
    .filter((r: any) => r.Type === 'AWS::ECS::TaskDefinition')
    .flatMap((r: any) => r.Properties.ContainerDefinitions.map((c: any) => c.Image));

describe('artifacts from make package', () => {
  test('the Lambda code is the packaged zip of each binary', () => {
    const dir = fakePackage();
    const app = new App({ context: { 'yuba:package': dir } });
    const stage = new Stage(app, 'x');
    for (const bin of ['yuba-ingest', 'yuba-worker'] as const) {
      const code = rustLambdaCode(stage, bin) as unknown as { path: string };
      expect(code.path).toBe(path.join(dir, 'lambda', `${bin}.zip`));
    }
  });

  test('both task definitions name the packaged image by digest, in the stage repository', () => {
    const t = synthFrom(fakePackage());
    const all = images(t);
    expect(all).toHaveLength(2);
    for (const image of all) {
      const text = JSON.stringify(image);
      expect(text).toContain(`yuba-dev-fargate@${DIGEST}`);
      expect(text).not.toMatch(/:latest|:dev"/);
    }
    // Built artifacts and real GCP configurations: nothing refuses the deployment.
    expect(t.Rules?.NotDeployable).toBeUndefined();
  });

  test('fargateWorker.imageDigest overrides the package (a rollback), and must be a digest', () => {
    const older = `sha256:${'cd'.repeat(32)}`;
    const t = synthFrom(fakePackage(), { fargateWorker: { imageDigest: older } });
    for (const image of images(t)) expect(JSON.stringify(image)).toContain(`@${older}`);
    const app = new App();
    expect(() => imageDigest(new Stage(app, 'x'), 'prod')).toThrow(/not a sha256/);
  });

  test('without a build and without the placeholder flag, synth fails with the command that builds', () => {
    const app = new App({ context: { 'yuba:package': '/nonexistent' } });
    const stage = new Stage(app, 'x');
    expect(() => rustLambdaCode(stage, 'yuba-worker')).toThrow(/make package/);
    expect(() => imageDigest(stage, undefined)).toThrow(/make package/);
  });
});

describe('placeholders', () => {
  const t = synth('dev').template.toJSON();

  test('stand in for missing artifacts, and every deploy of such a template fails', () => {
    for (const image of images(t)) expect(JSON.stringify(image)).toContain(`@${PLACEHOLDER_DIGEST}`);
    const rule = t.Rules.NotDeployable;
    const [assertion] = rule.Assertions;
    // Fn::Equals of the region and a string no region is: false in every account.
    expect(assertion.Assert['Fn::Equals']).toEqual([{ Ref: 'AWS::Region' }, 'placeholder-artifacts-are-not-deployable']);
    expect(assertion.AssertDescription).toMatch(/yuba-ingest Lambda zip.*yuba-worker Lambda zip.*Fargate image/);
    expect(assertion.AssertDescription).toMatch(/GCP credential configuration.*docs\/DEPLOY.md/);
  });

  test('the deploy scripts never ask for placeholders', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
    const deploys = Object.entries(pkg.scripts as Record<string, string>).filter(([name]) => name.startsWith('deploy:'));
    expect(deploys.length).toBeGreaterThanOrEqual(4);
    for (const [, command] of deploys) {
      expect(command).not.toMatch(/placeholderCode=true|exampleGcp/);
      expect(command).toMatch(/yuba:placeholderCode=false/);
    }
  });
});

describe('registry', () => {
  const config = stageConfig('prod');
  const app = new App({ context: FEATURE_FLAGS });
  const registry = new RegistryStack(new Stage(app, 'r'), 'Registry', { config });
  const t = Template.fromStack(registry);

  test('an ECR repository with immutable tags, scan on push and bounded history', () => {
    t.hasResourceProperties('AWS::ECR::Repository', {
      RepositoryName: 'yuba-prod-fargate',
      ImageTagMutability: 'IMMUTABLE',
      ImageScanningConfiguration: { ScanOnPush: true },
    });
    const [repo] = Object.values(t.findResources('AWS::ECR::Repository')) as any[];
    const policy = JSON.parse(repo.Properties.LifecyclePolicy.LifecyclePolicyText);
    expect(policy.rules.map((r: any) => r.selection.countNumber)).toContain(IMAGES_KEPT);
    // prod keeps its images when the stack goes.
    expect(repo.DeletionPolicy).toBe('Retain');
  });

  test('the main stack depends on it, so a deploy creates the repository first', () => {
    const app2 = new App({ context: { ...FEATURE_FLAGS, 'yuba:placeholderCode': true, 'yuba:package': '/nonexistent' } });
    const { registry: reg, main } = yubaStage(app2, config);
    expect(main.dependencies).toEqual([reg]);
    expect([reg.stackName, main.stackName]).toEqual(['yuba-prod-Registry', 'yuba-prod-Yuba']);
    // The repository the task definitions pull from is the one the registry makes.
    const repo = Template.fromStack(reg).toJSON().Resources;
    const name = (Object.values(repo) as any[]).find((r) => r.Type === 'AWS::ECR::Repository').Properties.RepositoryName;
    expect(JSON.stringify(images(Template.fromStack(main).toJSON()))).toContain(`/${name}@`);
  });
});

describe('the image', () => {
  test('the task definitions run as the user the image is built with (scripts/package.py)', () => {
    const script = fs.readFileSync(path.join(__dirname, '..', '..', 'scripts', 'package.py'), 'utf8');
    const m = script.match(/^IMAGE_USER = "([^"]+)"$/m);
    expect(m?.[1]).toBe(CONTAINER_USER);
  });
});
