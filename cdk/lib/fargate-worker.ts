/**
 * The worker's Fargate home: large objects, long-polled from the Fargate work queue.
 *
 * - ARM64 on on-demand FARGATE (not Spot: see the capacity provider strategy below), with
 *   `minTasks` kept warm. A task that is stopped (a deployment, StopTask, or a Spot reclaim should
 *   Spot ever run it) gets SIGTERM; the worker drains for up to SHUTDOWN_GRACE_SECONDS (105 s)
 *   and releases what is still unfinished to another task, whose attempt resumes a large copy
 *   from the parts already uploaded.
 * - While it has jobs in flight a task holds ECS task scale-in protection (a few minutes, renewed
 *   while busy, dropped once idle; the worker does it through the ECS agent's endpoint), so a
 *   scale-in or a deployment does not stop it mid-copy. Protection stops neither a Spot reclaim
 *   nor a StopTask: those are what the drain is for.
 * - The container runs as a non-root user on a read-only root file system (the worker writes
 *   nothing to disk: objects stream from S3 to GCS through memory).
 * - The stop timeout is the worker's drain (YUBA_SHUTDOWN_GRACE_SECONDS) plus a margin, both set
 *   here from one number, so ECS never SIGKILLs a draining worker; together at most the 120 s
 *   Fargate allows.
 * - The task's memory is given to the worker (YUBA_MEMORY_MIB, the contract's `memorySetting`),
 *   which takes its images budget from it; synth refuses a task smaller than the worker's rule
 *   for its concurrency (config.ts `workerMemoryMiB`, README "Memory").
 * - Scaling follows the queue's backlog (visible + in flight) per task, as an exact task count,
 *   down to `minTasks` when the queue is empty, with the timing of FARGATE_SCALE_OUT (config.ts).
 */
import { ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { FARGATE_SCALE_OUT, MEMORY, StageConfig, imageRepositoryName } from './config';
import { imageDigest } from './code';
import { roleNames } from './gcp';
import { workerEnvironment } from './lambdas';
import { Network } from './network';
import { Queues } from './queues';
import { SourceBucket } from './source';
import { stageLogGroup } from './log-group';

/**
 * Time in-flight jobs get after SIGTERM to finish before they are released to another task: as
 * much of a Spot reclaim's two minutes as the stop timeout below leaves (the worker's own default
 * is 25 s, for ECS's default stop timeout of 30 s).
 */
export const SHUTDOWN_GRACE_SECONDS = 105;
/**
 * ECS's stop timeout: the drain plus 10 s for the process to abort what is left, release those
 * messages (ChangeMessageVisibility 0) and flush its deletes before SIGKILL. On Fargate the
 * stopTimeout may be at most 120 s
 * (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html,
 * stopTimeout: "For tasks that use the Fargate launch type, the max stop timeout value is 120
 * seconds").
 */
export const STOP_TIMEOUT_SECONDS = SHUTDOWN_GRACE_SECONDS + 10;
/** The worker's visibility timeout, renewed every half while a job runs; also the queue's default. */
export const FARGATE_VISIBILITY_SECONDS = 60;
/** The non-root user of the image (scripts/package.py's IMAGE_USER). */
export const CONTAINER_USER = '65532:65532';

export interface FargateWorkerProps {
  readonly config: StageConfig;
  readonly network: Network;
  readonly queues: Queues;
  readonly source: SourceBucket;
  readonly workerCredentials: string;
}

/**
 * The image both task definitions use (it holds the worker and the reconciler), by digest: a
 * task started later, when the service scales from zero, runs the very image deployed.
 */
export function yubaImage(scope: Construct, c: StageConfig): ecs.ContainerImage {
  const repo = ecr.Repository.fromRepositoryName(scope, 'ImageRepository', imageRepositoryName(c));
  return ecs.ContainerImage.fromEcrRepository(repo, imageDigest(scope, c.fargateWorker.imageDigest));
}

/** A Fargate task definition on ARM64 Linux, what the image is built for. */
export function arm64TaskDefinition(
  scope: Construct,
  o: { family: string; cpu: number; memoryMiB: number; taskRole: iam.IRole; ephemeralStorageGiB?: number },
): ecs.FargateTaskDefinition {
  return new ecs.FargateTaskDefinition(scope, 'Task', {
    family: o.family,
    cpu: o.cpu,
    memoryLimitMiB: o.memoryMiB,
    ephemeralStorageGiB: o.ephemeralStorageGiB,
    runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.ARM64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    taskRole: o.taskRole,
  });
}

export class FargateWorker extends Construct {
  readonly service: ecs.FargateService;
  readonly taskRole: iam.Role;
  readonly logGroup: logs.LogGroup;
  /** Backlog (visible + in flight) of the Fargate work queue. */
  readonly backlog: cloudwatch.MathExpression;

  constructor(scope: Construct, id: string, props: FargateWorkerProps) {
    super(scope, id);
    const c = props.config;
    const fw = c.fargateWorker;
    const queue = props.queues.fargateWork.queue;

    this.taskRole = new iam.Role(this, 'TaskRole', {
      roleName: roleNames(c).fargateWorker,
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: `yuba worker on Fargate (${c.stage})`,
    });
    // The long-poll consumer: receive, delete in batches, extend/release visibility (the batch
    // calls are authorised by the same actions). On its own queue only.
    this.taskRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'ConsumeFargateWork',
        actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility'],
        resources: [queue.queueArn],
      }),
    );
    props.source.grantRead(this.taskRole);
    // Task scale-in protection: the worker PUTs its protection to the ECS agent's endpoint
    // ($ECS_AGENT_URI/task-protection/v1/state), and the agent calls UpdateTaskProtection with
    // this role, which therefore needs ecs:UpdateTaskProtection
    // (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection.html,
    // "IAM permissions required for task scale-in protection"). The worker never GETs its state,
    // so no ecs:GetTaskProtection. The action's resource type is the task
    // (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html),
    // whose ARN names the cluster but not the service: the cluster's tasks are as narrow as it goes.
    this.taskRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'ProtectOwnTaskFromScaleIn',
        actions: ['ecs:UpdateTaskProtection'],
        resources: [clusterTasksArn(props.network.cluster)],
      }),
    );

    this.logGroup = stageLogGroup(this, 'Logs', c, `/yuba/${c.stage}/worker-fargate`);
    const taskDefinition = arm64TaskDefinition(this, { family: `${c.prefix}-worker`, cpu: fw.cpu, memoryMiB: fw.memoryMiB, taskRole: this.taskRole });
    taskDefinition.addContainer('worker', {
      image: yubaImage(this, c),
      command: ['yuba-worker'],
      user: CONTAINER_USER,
      readonlyRootFilesystem: true,
      stopTimeout: Duration.seconds(STOP_TIMEOUT_SECONDS),
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'worker', mode: ecs.AwsLogDriverMode.NON_BLOCKING }),
      environment: {
        ...workerEnvironment(c, props.workerCredentials, fw.concurrency),
        YUBA_LOG_FORMAT: 'json',
        AWS_REGION: Stack.of(this).region,
        YUBA_QUEUE_URL: queue.queueUrl,
        YUBA_VISIBILITY_TIMEOUT_SECONDS: String(FARGATE_VISIBILITY_SECONDS),
        YUBA_SHUTDOWN_GRACE_SECONDS: String(SHUTDOWN_GRACE_SECONDS),
        // The task's memory, which the worker's images budget is taken from (README "Memory"),
        // rather than a cgroup limit it would have to find.
        [MEMORY.memorySetting]: String(fw.memoryMiB),
      },
    });

    this.service = new ecs.FargateService(this, 'Service', {
      serviceName: `${c.prefix}-worker`,
      cluster: props.network.cluster,
      taskDefinition,
      desiredCount: 0,
      // On-demand FARGATE only. The ECS Developer Guide says "Linux tasks with the ARM64
      // architecture don't support the Fargate Spot capacity provider"
      // (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-capacity-providers.html,
      // and so does the China partition's copy), while the API reference's
      // CapacityProviderStrategyItem now admits ARM64 on platform 1.4.0. Where AWS's own pages
      // disagree, the strategy that works under both is on-demand; cdk/test/stack.test.ts holds
      // every ARM64 service to it.
      capacityProviderStrategies: [{ capacityProvider: 'FARGATE', weight: 1, base: fw.minTasks }],
      vpcSubnets: props.network.subnets,
      securityGroups: [props.network.taskSecurityGroup],
      assignPublicIp: props.network.assignPublicIp,
      // A bad image or task definition stops the rollout and returns to the last good one.
      circuitBreaker: { enable: true, rollback: true },
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      enableECSManagedTags: true,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });

    // Backlog = visible + in flight: in-flight messages are work that tasks are doing, so a queue
    // that is empty but busy does not scale its workers away. FILL: an idle queue stops reporting.
    const sqsMetric = (metricName: string, label: string) =>
      new cloudwatch.Metric({
        namespace: 'AWS/SQS',
        metricName,
        dimensionsMap: { QueueName: queue.queueName },
        statistic: 'Maximum',
        period: Duration.seconds(FARGATE_SCALE_OUT.metricPeriodSeconds),
        label,
      });
    this.backlog = new cloudwatch.MathExpression({
      expression: 'FILL(visible, 0) + FILL(inflight, 0)',
      usingMetrics: {
        visible: sqsMetric('ApproximateNumberOfMessagesVisible', 'visible'),
        inflight: sqsMetric('ApproximateNumberOfMessagesNotVisible', 'in flight'),
      },
      label: 'Fargate backlog',
      period: Duration.seconds(FARGATE_SCALE_OUT.metricPeriodSeconds),
    });

    // The timing of these alarms is FARGATE_SCALE_OUT's (config.ts), which the lag objective is
    // checked against.
    const scaling = this.service.autoScaleTaskCount({ minCapacity: fw.minTasks, maxCapacity: fw.maxTasks });
    scaling.scaleOnMetric('BacklogPerTask', {
      metric: this.backlog,
      adjustmentType: appscaling.AdjustmentType.EXACT_CAPACITY,
      scalingSteps: backlogSteps(fw.backlogPerTask, fw.maxTasks, fw.minTasks),
      evaluationPeriods: FARGATE_SCALE_OUT.evaluationPeriods,
      cooldown: Duration.minutes(1),
    });
  }
}

/** The ARNs of the tasks of `cluster`: arn:PARTITION:ecs:REGION:ACCOUNT:task/CLUSTER/*. */
export function clusterTasksArn(cluster: ecs.ICluster): string {
  return Stack.of(cluster).formatArn({
    service: 'ecs',
    resource: 'task',
    resourceName: `${cluster.clusterName}/*`,
    arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
  });
}

/**
 * Steps mapping the backlog to an exact task count: ceil(backlog / perTask), at most maxTasks, at
 * least `min` (0 when idle). At most 10 steps above zero (the levels are spread when maxTasks > 10).
 *
 * The scale-in step ends at a backlog of 0 and the first scale-out step starts at 1, so the two
 * alarms the CDK makes from them (backlog <= 0, backlog >= 1) never hold at once: with a shared
 * bound of 1 both fired at a backlog of exactly one, and the pool flapped between them.
 */
export function backlogSteps(perTask: number, maxTasks: number, min: number): appscaling.ScalingInterval[] {
  // One task first (a single message should not start several), then up to 10 levels to maxTasks.
  const levels = new Set<number>([1]);
  const n = Math.min(maxTasks, 10);
  for (let i = 1; i <= n; i++) levels.add(Math.max(1, Math.round((i * maxTasks) / n)));
  const sorted = [...levels].sort((a, b) => a - b);
  const steps: appscaling.ScalingInterval[] = [{ upper: 0, change: min }];
  sorted.forEach((tasks, i) => {
    // `tasks` tasks from the backlog that needs more than the previous level's capacity.
    const prev = i === 0 ? 0 : sorted[i - 1];
    steps.push({ lower: prev * perTask + 1, change: Math.max(min, tasks) });
  });
  return steps;
}
