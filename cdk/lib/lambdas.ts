/**
 * The two Lambda functions, ingest and the Lambda home of the worker, with what makes them safe to
 * roll out: a `live` alias that every trigger invokes, and a CodeDeploy deployment group that
 * shifts traffic to a new version by canary and rolls back when the new version's alarms fire.
 *
 * Both are the Rust bins (provided.al2023, arm64), from the zips `make package` built (code.ts).
 * Each has its own role with only what its program's contract (generated/aws-iam.json) lists:
 * ingest sends jobs to the two work queues; the worker reads source objects and may list the
 * bucket (so that a missing key is a 404, not a 403), and the event source's poller, which runs
 * under the function's role, receives/deletes/changes visibility on the Lambda work queue only. Logs go to a log group made here, with a retention, and the roles write to that
 * group only (no AWSLambdaBasicExecutionRole, which allows every log group in the account).
 *
 * What gates a deployment is canary.ts: the new version's own alarms, and a pre-traffic probe
 * that sends it one synthetic unit of work from the stack's canary bucket.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as codedeploy from 'aws-cdk-lib/aws-codedeploy';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { Construct } from 'constructs';
import { CanaryKind, canaryAlarms, canaryBucket, canaryKey, loadCanaryJob, preTrafficHook } from './canary';
import { StageConfig, duration, lambdaWorkerMemoryMiB, metricsNamespace } from './config';
import { YubaMetrics } from './metrics';
import { rustLambdaCode } from './code';
import { roleNames } from './gcp';
import { Queues } from './queues';
import { SourceBucket } from './source';
import { stageLogGroup } from './log-group';

export const INGEST_TIMEOUT = Duration.seconds(30);
export const ALIAS_NAME = 'live';

export interface LambdasProps {
  readonly config: StageConfig;
  readonly queues: Queues;
  readonly source: SourceBucket;
  readonly workerCredentials: string;
}

/** One function with its alias, deployment group and the alarms that gate its deployments. */
export interface DeployedFunction {
  readonly fn: lambda.Function;
  readonly alias: lambda.Alias;
  readonly deploymentGroup: codedeploy.LambdaDeploymentGroup;
  readonly rollbackAlarms: cloudwatch.IAlarm[];
  /** CodeDeploy's BeforeAllowTraffic hook: probes the new version before it gets traffic. */
  readonly preTrafficHook: lambda.Function;
  readonly logGroup: logs.LogGroup;
}

export class Lambdas extends Construct {
  readonly ingest: DeployedFunction;
  readonly worker: DeployedFunction;
  /** Where the pre-traffic probes put their objects (read by the worker, under the canary prefix only). */
  readonly canaryBucket: s3.Bucket;
  private readonly metrics: YubaMetrics;
  private readonly canaryJob = loadCanaryJob();

  constructor(scope: Construct, id: string, props: LambdasProps) {
    super(scope, id);
    const c = props.config;
    const { queues } = props;
    const application = new codedeploy.LambdaApplication(this, 'Application', { applicationName: c.prefix });
    this.metrics = new YubaMetrics(metricsNamespace(c));
    this.canaryBucket = canaryBucket(this, c);

    // ingest: notifications -> jobs.
    this.ingest = this.function('Ingest', {
      kind: 'ingest',
      config: c,
      application,
      name: `${c.prefix}-ingest`,
      binary: 'yuba-ingest',
      memorySize: 256,
      timeout: INGEST_TIMEOUT,
      environment: {
        YUBA_LAMBDA_QUEUE_URL: queues.lambdaWork.queue.queueUrl,
        YUBA_FARGATE_QUEUE_URL: queues.fargateWork.queue.queueUrl,
        YUBA_ROUTE_THRESHOLD_BYTES: String(c.lambdaWorker.routeThresholdBytes),
        // The only buckets whose records become jobs: the stage's source, and this stack's canary
        // bucket for the probes' keys; a record of any other is refused.
        YUBA_SOURCE_BUCKET: c.source.name,
        YUBA_CANARY_BUCKET: this.canaryBucket.bucketName,
        // A rejected record is set aside there alone (SQS's redrive would move the whole message).
        ...(queues.events ? { YUBA_EVENTS_DLQ_URL: queues.events.dlq.queueUrl } : {}),
        // ingest is the authority on filtering (S3's filters are an optimisation, and cannot
        // express several prefixes x suffixes in one rule).
        ...(c.source.prefixes.length ? { YUBA_FILTER_PREFIXES: c.source.prefixes.join(',') } : {}),
        ...(c.source.suffixes.length ? { YUBA_FILTER_SUFFIXES: c.source.suffixes.join(',') } : {}),
      },
    });
    // SendMessageBatch is authorised by sqs:SendMessage; on the two work queues only.
    this.ingest.fn.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'SendJobs',
        actions: ['sqs:SendMessage'],
        resources: [queues.lambdaWork.queue.queueArn, queues.fargateWork.queue.queueArn],
      }),
    );
    if (queues.events) {
      // ...and each rejected record, alone, to the events DLQ.
      this.ingest.fn.addToRolePolicy(
        new iam.PolicyStatement({ sid: 'SetAsideRejectedRecords', actions: ['sqs:SendMessage'], resources: [queues.events.dlq.queueArn] }),
      );
      this.ingest.alias.addEventSource(
        new SqsEventSource(queues.events.queue, {
          batchSize: 10,
          maxBatchingWindow: Duration.seconds(1),
          reportBatchItemFailures: true,
          maxConcurrency: Math.max(2, Math.min(c.lambdaWorker.maxConcurrency, 20)),
        }),
      );
    }

    // worker, Lambda home: small objects.
    this.worker = this.function('Worker', {
      kind: 'worker',
      config: c,
      application,
      name: `${c.prefix}-worker`,
      roleName: roleNames(c).lambdaWorker,
      binary: 'yuba-worker',
      memorySize: lambdaWorkerMemoryMiB(c),
      timeout: duration.lambdaTimeout(c),
      reservedConcurrency: c.lambdaWorker.reservedConcurrency,
      // The probes' jobs name the canary bucket; the worker refuses any other but the source.
      environment: { ...workerEnvironment(c, props.workerCredentials, c.lambdaWorker.concurrency), YUBA_CANARY_BUCKET: this.canaryBucket.bucketName },
    });
    // Reads source objects; s3:ListBucket too, or a missing key is a 403 and deletes fail.
    props.source.grantRead(this.worker.fn);
    // ...and the probes' two objects: the worker's own, and the one whose notification the ingest
    // probe turns into a job for the Lambda work queue (listing too, for the same 404-not-403 reason).
    const probeObjects = (['worker', 'ingest'] as CanaryKind[]).map((kind) => this.canaryBucket.arnForObjects(canaryKey(this.canaryJob, kind)));
    this.worker.fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'ReadCanaryObjects', actions: ['s3:GetObject'], resources: probeObjects }));
    this.worker.fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'ListCanaryBucket', actions: ['s3:ListBucket'], resources: [this.canaryBucket.bucketArn] }));
    this.worker.alias.addEventSource(
      new SqsEventSource(queues.lambdaWork.queue, {
        batchSize: c.lambdaWorker.batchSize,
        maxBatchingWindow: Duration.seconds(c.lambdaWorker.batchWindowSeconds),
        // The worker answers with SqsBatchResponse: only failed messages come back.
        reportBatchItemFailures: true,
        maxConcurrency: c.lambdaWorker.maxConcurrency,
      }),
    );
  }

  private function(
    id: string,
    o: {
      kind: CanaryKind;
      config: StageConfig;
      application: codedeploy.LambdaApplication;
      name: string;
      roleName?: string;
      binary: 'yuba-ingest' | 'yuba-worker';
      memorySize: number;
      timeout: Duration;
      reservedConcurrency?: number;
      environment: Record<string, string>;
    },
  ): DeployedFunction {
    const c = o.config;
    const logGroup = stageLogGroup(this, `${id}Logs`, c, `/aws/lambda/${o.name}`);
    const role = new iam.Role(this, `${id}Role`, {
      roleName: o.roleName,
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `yuba ${o.binary} (${c.stage})`,
    });
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
    const fn = new lambda.Function(this, id, {
      functionName: o.name,
      code: rustLambdaCode(this, o.binary),
      handler: 'bootstrap',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.ARM_64,
      memorySize: o.memorySize,
      timeout: o.timeout,
      role,
      logGroup,
      reservedConcurrentExecutions: o.reservedConcurrency,
      environment: { YUBA_LOG_FORMAT: 'json', ...o.environment },
      description: `yuba ${o.binary} (${c.stage})`,
    });
    const alias = new lambda.Alias(this, `${id}Live`, { aliasName: ALIAS_NAME, version: fn.currentVersion });

    const canary = new Construct(this, `${id}Canary`);
    const rollbackAlarms: cloudwatch.IAlarm[] = canaryAlarms(canary, o.kind, fn, ALIAS_NAME, this.metrics);
    const preTraffic = preTrafficHook(canary, { config: c, kind: o.kind, fn, bucket: this.canaryBucket, job: this.canaryJob });
    const deploymentGroup = new codedeploy.LambdaDeploymentGroup(this, `${id}Deployment`, {
      application: o.application,
      alias,
      deploymentConfig: codedeploy.LambdaDeploymentConfig[c.canary],
      alarms: rollbackAlarms,
      preHook: preTraffic,
      autoRollback: { failedDeployment: true, stoppedDeployment: true, deploymentInAlarm: true },
    });
    // CloudFormation updates the hook (its TARGET is the new version) before the alias update
    // that starts the CodeDeploy deployment running it: the alias's UpdatePolicy refers to it.
    return { fn, alias, deploymentGroup, rollbackAlarms, preTrafficHook: preTraffic, logGroup };
  }
}

/** The worker's environment, common to both homes. A job naming another bucket than the source is refused. */
export function workerEnvironment(c: StageConfig, credentials: string, concurrency: number): Record<string, string> {
  return {
    YUBA_SOURCE_BUCKET: c.source.name,
    YUBA_GCS_BUCKET: c.gcp.bucket,
    YUBA_GCS_CREDENTIALS: credentials,
    YUBA_MIRROR_DELETES: String(c.mirrorDeletes),
    YUBA_CONCURRENCY: String(concurrency),
    YUBA_METRICS_NAMESPACE: metricsNamespace(c),
    ...(c.variants ? { YUBA_VARIANTS: c.variants } : {}),
  };
}

