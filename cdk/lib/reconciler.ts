/**
 * The reconciler as a scheduled Fargate task: EventBridge Scheduler runs `yuba-reconciler
 * backfill --json --no-checkpoint` (daily by default), which repairs through the work queues; a task that stops
 * with a non-zero exit code (1: a repair failed or drift left; 2: an error; 130: interrupted) or
 * never starts is an alarm.
 *
 * Its role lists and reads the source bucket and sends jobs to the two work queues: backfill
 * routes by size exactly as ingest does. It cannot consume or delete from any queue. With a
 * source inventory it also lists and reads the inventory configuration's folder (no more of
 * its bucket), and sorts the report on the task's ephemeral storage. With `reconciler.shards`
 * the schedule starts a Step Functions execution instead (lib/reconcile-fanout.ts: a plan task,
 * the shards at once, a merge task whose exit code is the run's verdict), whose failure is the
 * alarm, and the role also keeps the run's plan in the plans bucket.
 */
import { Duration, Stack, TimeZone } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { MEMORY, RECONCILE_PREFIX_SETTING, SOURCE_INVENTORY_SETTING, SourceInventoryConfig, StageConfig, metricsNamespace } from './config';
import { CONTAINER_USER, arm64TaskDefinition, yubaImage } from './fargate-worker';
import { roleNames } from './gcp';
import { Network } from './network';
import { ReconcileFanOut } from './reconcile-fanout';
import { Queues } from './queues';
import { SourceBucket } from './source';
import { stageLogGroup } from './log-group';

export const RECONCILER_GROUP = 'yuba-reconciler';
/** What the schedule runs (the smoke test of the image runs the same arguments). */
export const RECONCILER_COMMAND = ['yuba-reconciler', 'backfill', '--json', '--no-checkpoint'] as const;
/** Where a source inventory is sorted: the task's ephemeral storage, the one writable path. */
export const INVENTORY_SPILL_PATH = '/var/spill';

export interface ReconcilerProps {
  readonly config: StageConfig;
  readonly network: Network;
  readonly queues: Queues;
  readonly source: SourceBucket;
  readonly reconcilerCredentials: string;
  /** The stage's access-log bucket: a sharded run's plans bucket logs to it. */
  readonly accessLogs?: s3.IBucket;
}

export class Reconciler extends Construct {
  readonly taskRole: iam.Role;
  readonly schedule: scheduler.Schedule;
  /** The sharded run's state machine, when `reconciler.shards` is set. */
  readonly fanOut?: ReconcileFanOut;
  /** The event of a run that ended badly (ECS's stopped task, or in shards the execution's end); the alarm topic is its target (see Observability). */
  readonly failedRun: events.Rule;
  readonly failedRunAlarm: cloudwatch.Alarm;
  readonly scheduleFailureAlarm: cloudwatch.Alarm;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: ReconcilerProps) {
    super(scope, id);
    const c = props.config;
    const q = props.queues;

    this.taskRole = new iam.Role(this, 'TaskRole', {
      roleName: roleNames(c).reconciler,
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: `yuba reconciler (${c.stage})`,
    });
    // Lists the source, heads keys, and reads objects for verify --deep and backfill --inline
    // (the worker's code).
    props.source.grantRead(this.taskRole);
    this.taskRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'SendBackfillJobs',
        actions: ['sqs:SendMessage'],
        resources: [q.lambdaWork.queue.queueArn, q.fargateWork.queue.queueArn],
      }),
    );
    // ...and waits for the workers to take them (their queues' backlog) before it looks again.
    this.taskRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'WatchBackfillJobs',
        actions: ['sqs:GetQueueAttributes'],
        resources: [q.lambdaWork.queue.queueArn, q.fargateWork.queue.queueArn],
      }),
    );

    const inventory = c.reconciler.sourceInventory;
    if (inventory) grantInventoryRead(this.taskRole, inventory);
    const inventoryUrl = inventory ? `s3://${inventory.bucket}/${inventory.folder}` : '';
    const sharded = (c.reconciler.shards ?? 1) > 1;

    this.logGroup = stageLogGroup(this, 'Logs', c, `/yuba/${c.stage}/reconciler`);
    const taskDefinition = arm64TaskDefinition(this, {
      family: `${c.prefix}-reconciler`,
      cpu: c.reconciler.cpu,
      memoryMiB: c.reconciler.memoryMiB,
      taskRole: this.taskRole,
      ephemeralStorageGiB: inventory?.storageGiB,
    });
    // No checkpoint: task storage does not outlive the task, and nothing resumes a scheduled
    // run; a run that dies is redone whole by the next one. So the task writes no file but an
    // inventory's sorted runs (on a volume of the task's ephemeral storage), and its root file
    // system stays read-only.
    const container = taskDefinition.addContainer('reconciler', {
      image: yubaImage(this, c),
      command: [...RECONCILER_COMMAND],
      user: CONTAINER_USER,
      readonlyRootFilesystem: true,
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'reconciler' }),
      environment: {
        YUBA_LOG_FORMAT: 'json',
        YUBA_METRICS_NAMESPACE: metricsNamespace(c),
        AWS_REGION: Stack.of(this).region,
        YUBA_SOURCE_BUCKET: c.source.name,
        YUBA_GCS_BUCKET: c.gcp.bucket,
        YUBA_GCS_CREDENTIALS: props.reconcilerCredentials,
        YUBA_LAMBDA_QUEUE_URL: q.lambdaWork.queue.queueUrl,
        YUBA_FARGATE_QUEUE_URL: q.fargateWork.queue.queueUrl,
        YUBA_ROUTE_THRESHOLD_BYTES: String(c.lambdaWorker.routeThresholdBytes),
        // A job on a queue is not a repair: the run waits for the workers, then looks again.
        YUBA_RECONCILE_VERIFY_ENQUEUED: String(c.reconciler.verifyEnqueuedSeconds),
        ...(c.variants ? { YUBA_VARIANTS: c.variants } : {}),
        ...(c.source.prefixes.length === 1 ? { [RECONCILE_PREFIX_SETTING]: c.source.prefixes[0] } : {}),
        // A shard refuses --source-inventory (its part of the plan is its source): in a sharded
        // run only the plan step is given the report (lib/reconcile-fanout.ts).
        ...(inventory && !sharded ? { [SOURCE_INVENTORY_SETTING]: inventoryUrl } : {}),
        ...(inventory ? { YUBA_RECONCILE_INVENTORY_SPILL_DIR: INVENTORY_SPILL_PATH } : {}),
        ...c.reconciler.environment,
        // The task's memory, which its images budget is taken from (README "Memory"); validate()
        // refuses it in `environment`.
        [MEMORY.memorySetting]: String(c.reconciler.memoryMiB),
      },
    });

    if (inventory) {
      taskDefinition.addVolume({ name: 'inventory-spill' });
      container.addMountPoints({ sourceVolume: 'inventory-spill', containerPath: INVENTORY_SPILL_PATH, readOnly: false });
    }

    if (sharded) {
      if (!props.accessLogs) throw new Error('a sharded reconcile needs the stage\'s access-log bucket (lib/stack.ts)');
      this.fanOut = new ReconcileFanOut(this, 'FanOut', {
        config: c,
        network: props.network,
        taskDefinition,
        container,
        taskRole: this.taskRole,
        accessLogs: props.accessLogs,
        inventory: inventoryUrl,
      });
    }

    const group = new scheduler.ScheduleGroup(this, 'Group', { scheduleGroupName: `${c.prefix}-reconciler` });
    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      scheduleName: `${c.prefix}-reconciler`,
      scheduleGroup: group,
      description: `yuba reconciler: ${RECONCILER_COMMAND.slice(1).join(' ')}`,
      schedule: scheduler.ScheduleExpression.expression(c.reconciler.schedule, TimeZone.of(c.reconciler.timezone)),
      target: this.fanOut
        ? new targets.StepFunctionsStartExecution(this.fanOut.stateMachine, { retryAttempts: 3, maxEventAge: Duration.hours(1) })
        : new targets.EcsRunFargateTask(props.network.cluster, {
            taskDefinition,
            vpcSubnets: props.network.subnets,
            securityGroups: [props.network.taskSecurityGroup],
            assignPublicIp: props.network.assignPublicIp,
            group: RECONCILER_GROUP,
            retryAttempts: 3,
            maxEventAge: Duration.hours(1),
            // Runs of the reconciler on Fargate on demand: a Spot reclaim would only delay the repair,
            // but a scheduled run that keeps losing its capacity is noise in the alarm.
            capacityProviderStrategies: [{ capacityProvider: 'FARGATE', weight: 1 }],
          }),
    });

    // A run that ended badly: ECS's own task-state event, matched for this cluster's reconciler
    // group. The rule sends the event itself to the alarm topic (wired in Observability, which
    // owns the topic), and its TriggeredRules metric, emitted for a rule with a target, drives
    // the alarm that shows on the dashboard.
    // In a sharded run the execution's end is the run's: the merge's verdict, or a step that
    // failed after its retries (a shard's own exit is the state machine's to judge).
    const stoppedBadly = this.fanOut
      ? new events.Rule(this, 'FailedRun', {
          description: 'yuba sharded reconcile run failed (drift left, or a step failed), timed out or was aborted',
          eventPattern: {
            source: ['aws.states'],
            detailType: ['Step Functions Execution Status Change'],
            detail: { stateMachineArn: [this.fanOut.stateMachine.stateMachineArn], status: ['FAILED', 'TIMED_OUT', 'ABORTED'] },
          },
        })
      : new events.Rule(this, 'FailedRun', {
          description: 'yuba reconciler task stopped with a non-zero exit code or failed to start',
          eventPattern: {
            source: ['aws.ecs'],
            detailType: ['ECS Task State Change'],
            detail: {
              clusterArn: [props.network.cluster.clusterArn],
              group: [RECONCILER_GROUP],
              lastStatus: ['STOPPED'],
              $or: [{ containers: { exitCode: [{ 'anything-but': 0 }] } }, { stopCode: ['TaskFailedToStart'] }],
            },
          },
        });
    this.failedRun = stoppedBadly;
    this.failedRunAlarm = new cloudwatch.Alarm(this, 'FailedRunAlarm', {
      alarmName: `${c.prefix}-reconciler-failed`,
      alarmDescription: this.fanOut
        ? 'The sharded reconcile run failed: drift left after the merge, a step that failed after its retries, a timeout or an abort. The execution shows which step; the merge task\'s log has the JSON summary (see README "Roll back and operate").'
        : 'The scheduled reconciler exited non-zero or did not start. Its log group has the JSON summary (see README "Roll back and operate").',
      metric: new cloudwatch.Metric({
        namespace: 'AWS/Events',
        metricName: 'TriggeredRules',
        dimensionsMap: { RuleName: stoppedBadly.ruleName },
        statistic: 'Sum',
        period: Duration.minutes(5),
      }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    // The schedule could not start the task at all (throttled, bad role, ...).
    this.scheduleFailureAlarm = new cloudwatch.Alarm(this, 'ScheduleFailureAlarm', {
      alarmName: `${c.prefix}-reconciler-not-started`,
      alarmDescription: 'EventBridge Scheduler dropped or failed the reconciler invocation.',
      metric: new cloudwatch.MathExpression({
        expression: 'FILL(dropped, 0) + FILL(targetErrors, 0)',
        usingMetrics: {
          dropped: new cloudwatch.Metric({ namespace: 'AWS/Scheduler', metricName: 'InvocationDroppedCount', dimensionsMap: { ScheduleGroup: group.scheduleGroupName }, statistic: 'Sum' }),
          targetErrors: new cloudwatch.Metric({ namespace: 'AWS/Scheduler', metricName: 'TargetErrorCount', dimensionsMap: { ScheduleGroup: group.scheduleGroupName }, statistic: 'Sum' }),
        },
        period: Duration.minutes(5),
      }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }
}

/**
 * Reading a source inventory: the configuration's folder only (its manifests and data files), and
 * listing only under it (to find the newest report), not the rest of the destination bucket.
 * ListBucket's `s3:prefix` condition key is the listing's prefix
 * (https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html).
 */
function grantInventoryRead(role: iam.Role, inventory: SourceInventoryConfig): void {
  const { bucketArn, reportsArn } = inventoryArns(Stack.of(role), inventory);
  role.addToPolicy(
    new iam.PolicyStatement({
      sid: 'ListInventoryReports',
      actions: ['s3:ListBucket'],
      resources: [bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${inventory.folder}*`] } },
    }),
  );
  role.addToPolicy(
    new iam.PolicyStatement({
      sid: 'ReadInventoryReports',
      actions: ['s3:GetObject'],
      resources: [reportsArn],
    }),
  );
}

/** The ARNs of a source inventory's bucket and of its reports' folder (every object under it). */
export function inventoryArns(stack: Stack, inventory: SourceInventoryConfig): { bucketArn: string; reportsArn: string } {
  const bucketArn = stack.formatArn({ service: 's3', region: '', account: '', resource: inventory.bucket });
  return { bucketArn, reportsArn: `${bucketArn}/${inventory.folder}*` };
}
