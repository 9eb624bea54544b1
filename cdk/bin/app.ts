#!/usr/bin/env node
/**
 * The yuba AWS app: one Stage per environment (dev, prod), the same stack in each, configured by
 * lib/config.ts's typed defaults plus `-c yuba:<stage>='{...}'` / cdk.json overrides.
 *
 *   npm run deploy:dev:registry    # the stage's ECR repository, before the first image push
 *   npm run deploy:dev             # everything (registry, then the main stack)
 *
 * `yuba:stages` limits which stages are built, so deploying dev needs no prod inputs.
 * cdk-nag's AWS Solutions checks run on every synth: an unsuppressed error fails it.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { StageName, stageConfig } from '../lib/config';
import { yubaStage } from '../lib/stage';

const app = new App();
const wanted = String(app.node.tryGetContext('yuba:stages') ?? 'dev,prod')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean) as StageName[];

for (const name of wanted) {
  if (name !== 'dev' && name !== 'prod') throw new Error(`yuba:stages: unknown stage ${name} (dev, prod)`);
  yubaStage(app, stageConfig(name, app.node.tryGetContext(`yuba:${name}`)));
}

Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
