import * as fs from 'fs';
import * as path from 'path';
import { App, Stage } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Overrides, StageConfig, StageName, stageConfig } from '../lib/config';
import { YubaStack } from '../lib/stack';

export const ACCOUNT = '123456789012';
export const REGION = 'eu-west-1';

/** The app's own context (feature flags) from cdk.json, so tests see what `cdk synth` makes. */
export const FEATURE_FLAGS: Record<string, unknown> = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8')).context;

/** A stack of the given stage, synthesized offline with the placeholder Lambda code and image digest. */
export function synth(stage: StageName, overrides: Overrides<StageConfig> = {}) {
  const app = new App({ context: { ...FEATURE_FLAGS, 'yuba:placeholderCode': true, 'yuba:package': '/nonexistent' } });
  const config = stageConfig(stage, overrides);
  const s = new Stage(app, config.prefix, { env: { account: ACCOUNT, region: REGION } });
  const stack = new YubaStack(s, 'Yuba', { config });
  return { app, stack, config, template: Template.fromStack(stack) };
}
