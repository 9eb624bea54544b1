#!/usr/bin/env node
/**
 * The yuba AWS app: one Stage per environment (dev, prod), the same stack in each, configured by
 * lib/config.ts's typed defaults plus `-c yuba:<stage>='{...}'` / cdk.json overrides.
 *
 *   npx cdk deploy -c yuba:stages=dev 'yuba-dev/*'     # dev account
 *   npx cdk deploy -c yuba:stages=prod 'yuba-prod/*'   # prod account
 *
 * `yuba:stages` limits which stages are built, so deploying dev needs no prod inputs.
 * cdk-nag's AWS Solutions checks run on every synth: an unsuppressed error fails it.
 */
import { App, Stage, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { StageName, stageConfig } from '../lib/config';
import { YubaStack } from '../lib/stack';

const app = new App();
const wanted = String(app.node.tryGetContext('yuba:stages') ?? 'dev,prod')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean) as StageName[];

for (const name of wanted) {
  if (name !== 'dev' && name !== 'prod') throw new Error(`yuba:stages: unknown stage ${name} (dev, prod)`);
  const config = stageConfig(name, app.node.tryGetContext(`yuba:${name}`));
  const stage = new Stage(app, config.prefix, {
    env: config.account || config.region ? { account: config.account, region: config.region } : undefined,
  });
  new YubaStack(stage, 'Yuba', { config, description: `yuba ${name}: S3 -> GCS image replication (AWS side)` });
}

Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
