/**
 * What AWS runs: the artifacts `make package` builds (scripts/package.py), found through the
 * manifest it writes (`target/package/manifest.json`, or the directory in `yuba:package`):
 *
 * - the Lambda zips of `yuba-ingest`, `yuba-worker` and `yuba-serve` (arm64, provided.al2023),
 *   used as they are;
 * - the Fargate image's digest. The task definitions name the image by digest, never by tag, so
 *   a service that scales from zero runs exactly what was deployed. `fargateWorker.imageDigest`
 *   in the stage's configuration overrides it (a rollback to an image pushed earlier).
 *
 * Synth needs neither cargo, Docker nor the network: the build happens before, once.
 *
 * Tests and offline synth set `yuba:placeholderCode=true`: where an artifact is missing, a stub
 * that fails every invocation and an all-zero digest stand in, and the stack gets a
 * CloudFormation rule that fails every deploy of it (`refuseDeployment`). Without that flag a
 * missing artifact fails synth with the command that builds it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Aws, CfnRule, Fn, Lazy, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

export const PLACEHOLDER_CONTEXT = 'yuba:placeholderCode';
export const PACKAGE_CONTEXT = 'yuba:package';
/** The digest a synth-only stack names when no image was built: no registry holds it. */
export const PLACEHOLDER_DIGEST = `sha256:${'0'.repeat(64)}`;
export type LambdaBinary = 'yuba-ingest' | 'yuba-worker' | 'yuba-serve';

/** What scripts/package.py records (the fields the app reads). */
interface PackageManifest {
  readonly revision: string;
  readonly lambda: Partial<Record<LambdaBinary, { readonly zip: string }>>;
  readonly image: { readonly digest: string } | null;
}

export function placeholderMode(scope: Construct): boolean {
  const v = scope.node.tryGetContext(PLACEHOLDER_CONTEXT);
  return v === true || v === 'true';
}

/** The package directory: `yuba:package`, else the workspace's target/package. */
export function packageDir(scope: Construct): string {
  return path.resolve(scope.node.tryGetContext(PACKAGE_CONTEXT) ?? path.join(__dirname, '..', '..', 'target', 'package'));
}

function readManifest(scope: Construct): PackageManifest | undefined {
  const file = path.join(packageDir(scope), 'manifest.json');
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as PackageManifest;
  } catch (e) {
    throw new Error(`${file}: not JSON (${(e as Error).message}); run 'make package' again`);
  }
}

function missing(scope: Construct, what: string): void {
  if (!placeholderMode(scope)) {
    throw new Error(
      `${what} not found in ${packageDir(scope)}: run 'make package' in the workspace (or set -c ${PACKAGE_CONTEXT}=DIR), ` +
        `or -c ${PLACEHOLDER_CONTEXT}=true for a synth-only stub that cannot be deployed`,
    );
  }
  refuseDeployment(scope, `${what} is a placeholder`);
}

export function rustLambdaCode(scope: Construct, binary: LambdaBinary): lambda.Code {
  const entry = readManifest(scope)?.lambda[binary];
  if (entry) {
    // Paths in the manifest are relative to the package directory, wherever it was copied.
    const zip = path.resolve(packageDir(scope), entry.zip);
    if (!fs.existsSync(zip)) throw new Error(`${zip} (named by ${packageDir(scope)}/manifest.json) is missing; run 'make package' again`);
    return lambda.Code.fromAsset(zip);
  }
  missing(scope, `the ${binary} Lambda zip`);
  return lambda.Code.fromAsset(path.join(__dirname, '..', 'assets', 'placeholder'));
}

/** The image digest the task definitions name: the configured override, else the package's. */
export function imageDigest(scope: Construct, override: string | undefined): string {
  if (override) {
    if (!/^sha256:[0-9a-f]{64}$/.test(override)) throw new Error(`fargateWorker.imageDigest: ${override} is not a sha256:<64 hex> digest`);
    return override;
  }
  const digest = readManifest(scope)?.image?.digest;
  if (digest) return digest;
  missing(scope, 'the Fargate image');
  return PLACEHOLDER_DIGEST;
}

/**
 * Makes every CloudFormation deploy of the stack fail with `why`, before any resource changes:
 * a Rules assertion that is false whatever the parameters (CloudFormation evaluates Rules when
 * it creates a change set, https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html).
 * For stacks that carry placeholders: they synthesize for review and tests, and never deploy.
 */
const refusals = new WeakMap<Stack, string[]>();

export function refuseDeployment(scope: Construct, why: string): void {
  const stack = Stack.of(scope);
  const reasons = refusals.get(stack);
  if (reasons) {
    if (!reasons.includes(why)) reasons.push(why);
    return;
  }
  const list = [why];
  refusals.set(stack, list);
  new CfnRule(stack, 'NotDeployable', {
    assertions: [
      {
        // The region is never this string: the assertion is false in every account and region.
        assert: Fn.conditionEquals(Aws.REGION, 'placeholder-artifacts-are-not-deployable'),
        assertDescription: Lazy.string({
          produce: () =>
            `This template is for review and tests only: ${list.join('; ')}. Deploy what docs/DEPLOY.md builds, with 'npm run deploy:<stage>'.`,
        }),
      },
    ],
  });
}
