/**
 * What decides whether a new Lambda version keeps its traffic: its own health, nothing shared.
 *
 * - Rollback alarms on the version being deployed, by the `FunctionVersion` dimension the
 *   programs add to their per-version metrics (metrics.ts), 1-minute periods so they fire inside
 *   the canary's window: the worker's job failure ratio and its permanent failures (a version that
 *   fails every job through partial batch responses never shows in Lambda's `Errors`), ingest's
 *   records it could not enqueue, and Lambda's own `Errors` of the version.
 * - A BeforeAllowTraffic hook (hooks/pre-traffic/index.js) that sends the new version one
 *   synthetic unit of work (a small PNG in the stack's canary bucket, under the reserved canary
 *   prefix) before any traffic, and fails the deployment unless it is done. At low traffic the
 *   alarms may see nothing in five minutes; the probe always sees one job.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { StageConfig } from './config';
import { stageLogGroup } from './log-group';
import { YubaMetrics } from './metrics';

/** The job message the worker's probe sends, written from the Rust model by tests/tests/e2e/metrics.rs. */
export interface CanaryJobTemplate {
  readonly message: Record<string, unknown>;
  readonly fields: { readonly bucket: string; readonly key: string };
  /** Keys under it are the canary's own: the reconciler never calls their replicas orphans. */
  readonly keyPrefix: string;
}

export function loadCanaryJob(): CanaryJobTemplate {
  return JSON.parse(fs.readFileSync(path.join(__dirname, 'generated', 'canary-job.json'), 'utf8')) as CanaryJobTemplate;
}

/**
 * Share of a version's job attempts that fail before its canary is rolled back. Healthy versions
 * fail transiently now and then (a GCS 503 retried later); a bad one fails most of them.
 */
export const CANARY_FAILURE_RATIO = 0.25;
/** Minutes (of 1-minute datapoints, out of CANARY_EVALUATION_MINUTES) a canary alarm must breach. */
export const CANARY_BREACHING_MINUTES = 2;
export const CANARY_EVALUATION_MINUTES = 3;

export type CanaryKind = 'worker' | 'ingest';

/** The rollback alarms of one function's version being deployed. */
export function canaryAlarms(scope: Construct, kind: CanaryKind, fn: lambda.Function, aliasName: string, metrics: YubaMetrics): cloudwatch.Alarm[] {
  const version = fn.currentVersion.version;
  const minute = Duration.minutes(1);
  const alarm = (id: string, description: string, metric: cloudwatch.IMetric, threshold: number, datapoints: number) =>
    new cloudwatch.Alarm(scope, id, {
      alarmDescription: `${fn.functionName}: the version being deployed ${description} (rolls the deployment back)`,
      metric,
      threshold,
      evaluationPeriods: CANARY_EVALUATION_MINUTES,
      datapointsToAlarm: datapoints,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  // Invocations through the alias are recorded with ExecutedVersion, so the old version's errors
  // during a canary neither roll back a good new one nor hide a bad one.
  const errors = alarm(
    'CanaryErrors',
    'fails invocations (a crash, a timeout)',
    new cloudwatch.Metric({
      namespace: 'AWS/Lambda',
      metricName: 'Errors',
      dimensionsMap: { FunctionName: fn.functionName, Resource: `${fn.functionName}:${aliasName}`, ExecutedVersion: version },
      statistic: 'Sum',
      period: minute,
    }),
    1,
    1,
  );
  if (kind === 'ingest') {
    const notEnqueued = metrics.ofVersion('IngestRecords', { Record: 'not_enqueued' }, version, 'Sum');
    return [errors, alarm('CanaryNotEnqueued', 'could not put jobs on the work queues', notEnqueued, 1, CANARY_BREACHING_MINUTES)];
  }
  const failed = (outcome: string, failure: string) => metrics.ofVersion('Jobs', { Outcome: outcome, Failure: failure }, version, 'Sum');
  const ratio = new cloudwatch.MathExpression({
    expression: '(FILL(ft, 0) + FILL(fp, 0) + FILL(rj, 0)) / MAX([FILL(all, 0), 1])',
    usingMetrics: {
      ft: failed('failed', 'transient'),
      fp: failed('failed', 'permanent'),
      rj: failed('rejected', 'permanent'),
      all: metrics.ofVersion('Jobs', {}, version, 'Sum'),
    },
    period: minute,
    label: 'failed jobs / jobs of the new version',
  });
  const permanent = new cloudwatch.MathExpression({
    expression: 'FILL(fp, 0) + FILL(rj, 0)',
    usingMetrics: { fp: failed('failed', 'permanent'), rj: failed('rejected', 'permanent') },
    period: minute,
    label: 'permanent failures of the new version',
  });
  return [
    errors,
    alarm('CanaryFailureRatio', `fails ${CANARY_FAILURE_RATIO * 100} % of its jobs or more`, ratio, CANARY_FAILURE_RATIO, CANARY_BREACHING_MINUTES),
    alarm('CanaryPermanentFailures', 'fails jobs permanently (they would go to the DLQ)', permanent, 1, CANARY_BREACHING_MINUTES),
  ];
}

/** The object one probe puts and has replicated: rewritten by every deployment, never more. */
export function canaryKey(job: CanaryJobTemplate, kind: CanaryKind): string {
  return `${job.keyPrefix}${kind}.png`;
}

/** The stack's own bucket for the probes' objects (private, TLS only, emptied on stack deletion when data is not retained). */
export function canaryBucket(scope: Construct, c: StageConfig): s3.Bucket {
  return new s3.Bucket(scope, 'CanaryBucket', {
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    // No lifecycle rule: an unversioned bucket of two small objects, rewritten in place by every
    // deployment's probes.
    removalPolicy: c.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    autoDeleteObjects: !c.retainData,
  });
}

/** The BeforeAllowTraffic hook of one function: probes `fn`'s version being deployed. */
export function preTrafficHook(
  scope: Construct,
  o: { config: StageConfig; kind: CanaryKind; fn: lambda.Function; bucket: s3.IBucket; job: CanaryJobTemplate },
): lambda.Function {
  const c = o.config;
  const name = `${c.prefix}-${o.kind}-canary`;
  const logGroup = stageLogGroup(scope, 'PreTrafficLogs', c, `/aws/lambda/${name}`);
  const role = new iam.Role(scope, 'PreTrafficRole', {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `yuba ${o.kind} pre-traffic probe (${c.stage})`,
  });
  role.addToPolicy(new iam.PolicyStatement({ sid: 'WriteOwnLogs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.logGroupArn] }));
  const key = canaryKey(o.job, o.kind);
  const hook = new lambda.Function(scope, 'PreTraffic', {
    functionName: name,
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    handler: 'index.handler',
    code: lambda.Code.fromAsset(path.join(__dirname, '..', 'hooks', 'pre-traffic')),
    memorySize: 256,
    // The worker's own timeout bounds the probe's invocation; CodeDeploy waits up to an hour.
    timeout: Duration.minutes(5),
    role,
    logGroup,
    description: `yuba ${o.kind}: probes the version being deployed before it gets traffic (${c.stage})`,
    environment: {
      KIND: o.kind,
      TARGET: o.fn.currentVersion.functionArn,
      CANARY_BUCKET: o.bucket.bucketName,
      CANARY_KEY: key,
      ...(o.kind === 'worker' ? { CANARY_JOB: JSON.stringify({ message: o.job.message, fields: o.job.fields }) } : {}),
    },
  });
  role.addToPolicy(new iam.PolicyStatement({ sid: 'PutCanaryObject', actions: ['s3:PutObject'], resources: [o.bucket.arnForObjects(key)] }));
  role.addToPolicy(new iam.PolicyStatement({ sid: 'InvokeNewVersion', actions: ['lambda:InvokeFunction'], resources: [o.fn.currentVersion.functionArn] }));
  return hook;
}
