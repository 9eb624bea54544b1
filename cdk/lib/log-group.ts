/** Log groups keep logs as long as the stage says and go with the stack unless it keeps its data. */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { StageConfig } from './config';

export function stageLogGroup(scope: Construct, id: string, c: StageConfig, logGroupName?: string): logs.LogGroup {
  return new logs.LogGroup(scope, id, {
    logGroupName,
    retention: c.logRetentionDays as logs.RetentionDays,
    removalPolicy: c.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
  });
}
