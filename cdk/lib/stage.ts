/**
 * One stage (dev, prod): its two stacks, in the order they deploy. The registry comes first: the
 * image is pushed into it between the two deploys, and the main stack's task definitions pull
 * from it.
 */
import { App, Stage } from 'aws-cdk-lib';
import { StageConfig } from './config';
import { RegistryStack } from './registry';
import { YubaStack } from './stack';

export interface YubaStage {
  readonly stage: Stage;
  readonly registry: RegistryStack;
  readonly main: YubaStack;
}

export function yubaStage(app: App, config: StageConfig): YubaStage {
  const stage = new Stage(app, config.prefix, {
    env: config.account || config.region ? { account: config.account, region: config.region } : undefined,
  });
  const registry = new RegistryStack(stage, 'Registry', { config, description: `yuba ${config.stage}: the Fargate image repository` });
  const main = new YubaStack(stage, 'Yuba', { config, description: `yuba ${config.stage}: S3 -> GCS image replication (AWS side)` });
  main.addStackDependency(registry, 'the task definitions pull their image from the registry');
  return { stage, registry, main };
}
