/**
 * Where the Lambda code comes from.
 *
 * Real deploys use what `cargo lambda build --release --arm64 --bin yuba-ingest --bin yuba-worker`
 * writes (target/lambda/<bin>/bootstrap, for provided.al2023 on arm64): built once by CI or by hand,
 * outside synth, so `cdk synth` needs neither cargo, Docker nor the network. The directory is the
 * context value `yuba:lambdaArtifacts` (default ../target/lambda, i.e. the workspace's target/ when
 * this app lives in cdk/).
 *
 * Tests and offline synth set `yuba:placeholderCode=true`: a stub that fails every invocation
 * stands in. Without that flag a missing build fails synth, so a stub is never deployed by mistake.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

export const PLACEHOLDER_CONTEXT = 'yuba:placeholderCode';
export const ARTIFACTS_CONTEXT = 'yuba:lambdaArtifacts';

export function placeholderMode(scope: Construct): boolean {
  const v = scope.node.tryGetContext(PLACEHOLDER_CONTEXT);
  return v === true || v === 'true';
}

export function rustLambdaCode(scope: Construct, binary: 'yuba-ingest' | 'yuba-worker'): lambda.Code {
  const artifacts = path.resolve(scope.node.tryGetContext(ARTIFACTS_CONTEXT) ?? path.join(__dirname, '..', '..', 'target', 'lambda'));
  const dir = path.join(artifacts, binary);
  if (fs.existsSync(path.join(dir, 'bootstrap'))) {
    return lambda.Code.fromAsset(dir);
  }
  if (placeholderMode(scope)) {
    return lambda.Code.fromAsset(path.join(__dirname, '..', 'assets', 'placeholder'));
  }
  throw new Error(
    `${dir}/bootstrap not found: run 'cargo lambda build --release --arm64 --bin ${binary}' in the workspace ` +
      `(or set -c ${ARTIFACTS_CONTEXT}=DIR), or -c ${PLACEHOLDER_CONTEXT}=true for a synth-only stub`,
  );
}
