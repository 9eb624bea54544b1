/**
 * The scheduled reconcile in key-range shards (`reconciler.shards`): one Step Functions execution
 * per run.
 *
 *   Prepare ─▶ Plan ─▶ Shards (Map: one iteration per shard, all at once) ─▶ Merge
 *
 * - Prepare names the run's plan folder after the execution (`s3://PLANS/runs/EXECUTION/`), so
 *   runs never share one, and lists the shards "1/N".."N/N".
 * - Plan: `yuba-reconciler plan` reads and sorts the inventory report once and writes each
 *   shard's part and plan.json there.
 * - Shards: `yuba-reconciler backfill --shard K/N`, each on its part and its key range; a shard
 *   that finished exits 0 whatever it found (its summary, kept beside the plan, says that).
 * - Merge: `yuba-reconciler merge` adds the summaries up, emits the run's metrics and exits with
 *   the run's verdict: 0 in sync or repaired, 1 drift left, 2 an error.
 *
 * Why Step Functions, and this shape: it runs the fan-out and the fan-in on AWS's own engine (no
 * coordinator of ours), retries a failed shard alone (the retry sits inside the shard's own Map
 * iteration), and ends in one place whose outcome is the run's, for the alarm. N schedules of
 * one task each would have no merge and no per-shard retry; ECS alone has no fan-in. An inline
 * Map suffices for the stage's range of N (2..40: its concurrency limit, lib/config.ts); a
 * Distributed Map's child executions are for thousands of items.
 *
 * Exit codes, not task states. AWS documents only that `.sync` fails the Task when RunTask
 * answers with Failures (`AmazonECS.Unknown`,
 * https://docs.aws.amazon.com/step-functions/latest/dg/connect-ecs.html); it promises nothing
 * about a container's exit code, and executions have been seen to fail the Task with
 * `States.TaskFailed` whose Cause is the stopped task's description, as JSON. So each step
 * judges the exit code whichever way the Task ends: from RunTask's output (the DescribeTasks
 * task, `Containers[0].ExitCode`) when it succeeds, or from that output parsed out of the Cause
 * when it fails; an error without a task description, or a task without an exit code, is a step
 * that did not run. The step sits in a one-branch Parallel whose Retry re-runs it alone, except
 * for the merge's verdict (drift left), which is not retried: a merge run again would emit the
 * run's metrics again.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { PLAN_SETTING, SHARD_SETTING, SOURCE_INVENTORY_SETTING, StageConfig } from './config';
import { stageLogGroup } from './log-group';
import { Network } from './network';

/** How long a run may take: a daily run must end before the next one starts. */
export const RUN_TIMEOUT = Duration.hours(23);
/** How long a plan is kept: long enough to look into a failed run, short enough that the copies of the report it holds do not pile up (one a day). */
export const PLAN_RETENTION = Duration.days(3);
/** The error a step that ended badly fails with; it is retried (`STEP_ATTEMPTS`). */
export const STEP_FAILED = 'ReconcileStepFailed';
/** The error of a merge that found drift left: the run's verdict, not retried. */
export const DRIFT_LEFT = 'ReconcileDriftLeft';
/** Attempts at each step (the plan, each shard, the merge), the first included. */
export const STEP_ATTEMPTS = 3;

export interface ReconcileFanOutProps {
  readonly config: StageConfig;
  readonly network: Network;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly taskRole: iam.IRole;
  /** The bucket its plans bucket writes its server access logs to. */
  readonly accessLogs: s3.IBucket;
  /** The source inventory the plan reads (`s3://bucket/folder/`). */
  readonly inventory: string;
}

export class ReconcileFanOut extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly plans: s3.Bucket;

  constructor(scope: Construct, id: string, props: ReconcileFanOutProps) {
    super(scope, id);
    const c = props.config;
    const shards = c.reconciler.shards ?? 1;

    this.plans = new s3.Bucket(this, 'Plans', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      serverAccessLogsBucket: props.accessLogs,
      serverAccessLogsPrefix: 'reconcile-plans/',
      lifecycleRules: [{ expiration: PLAN_RETENTION }],
      removalPolicy: c.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });
    grantPlans(props.taskRole, this.plans);

    const step = (name: string, command: string[], environment: tasks.TaskEnvironmentVariable[], verdict = false) =>
      exitChecked(this, name, verdict, new tasks.EcsRunTask(this, `${name}Task`, {
        integrationPattern: sfn.IntegrationPattern.RUN_JOB,
        cluster: props.network.cluster,
        taskDefinition: props.taskDefinition,
        // On-demand FARGATE by capacity provider, as the single task's schedule runs it
        // (lib/reconciler.ts): ARM64 tasks cannot run on Fargate Spot.
        launchTarget: new tasks.EcsFargateLaunchTarget({
          platformVersion: ecs.FargatePlatformVersion.LATEST,
          capacityProviderOptions: tasks.CapacityProviderOptions.custom([{ capacityProvider: 'FARGATE', weight: 1 }]),
        }),
        subnets: props.network.subnets,
        securityGroups: [props.network.taskSecurityGroup],
        assignPublicIp: props.network.assignPublicIp,
        containerOverrides: [{ containerDefinition: props.container, command: ['yuba-reconciler', ...command], environment }],
      }));
    const plan = { name: PLAN_SETTING, value: sfn.JsonPath.stringAt('$.plan') };

    const prepare = new sfn.Pass(this, 'Prepare', {
      parameters: {
        plan: sfn.JsonPath.format(`s3://${this.plans.bucketName}/runs/{}/`, sfn.JsonPath.stringAt('$$.Execution.Name')),
        shards: Array.from({ length: shards }, (_, k) => `${k + 1}/${shards}`),
      },
    });
    const planStep = step('Plan', ['plan', '--json', '--shards', String(shards)], [plan, { name: SOURCE_INVENTORY_SETTING, value: props.inventory }]);
    const shardRuns = new sfn.Map(this, 'Shards', {
      itemsPath: '$.shards',
      itemSelector: { shard: sfn.JsonPath.stringAt('$$.Map.Item.Value'), plan: sfn.JsonPath.stringAt('$.plan') },
      maxConcurrency: shards,
      resultPath: sfn.JsonPath.DISCARD,
    });
    shardRuns.itemProcessor(step('Shard', ['backfill', '--json', '--no-checkpoint'], [plan, { name: SHARD_SETTING, value: sfn.JsonPath.stringAt('$.shard') }]));
    const merge = step('Merge', ['merge', '--json'], [plan], true);

    const logGroup = stageLogGroup(this, 'Logs', c, `/yuba/${c.stage}/reconciler-runs`);
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: `${c.prefix}-reconciler`,
      definitionBody: sfn.DefinitionBody.fromChainable(prepare.next(planStep).next(shardRuns).next(merge)),
      timeout: RUN_TIMEOUT,
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
    });
  }
}

/** Where a step's Task puts the error it caught (`{ Error, Cause }`) in the step's input. */
const CAUGHT = '$.failure';

/**
 * A step that runs `task` and then judges its container's exit code: 0 succeeds; a `verdict`
 * step's 1 is the run's verdict (the merge's: drift left, `DRIFT_LEFT`, not retried); anything
 * else, or no exit code (the task never ran its container), fails with `STEP_FAILED`, which the
 * step retries alone.
 *
 * The exit code is read whichever way the Task ends (see the top of this file): a Task that
 * succeeded outputs the stopped task's description; a Task that failed is caught, and a Cause
 * that is a JSON object (the same description) is parsed back into that output, then judged by
 * the same Choice. Any other error (RunTask's Failures, a throttled call) is a step that did not
 * run. Each Choice lists its rules guard first, as Step Functions takes the first rule that
 * matches (https://docs.aws.amazon.com/step-functions/latest/dg/state-choice.html), so no
 * comparison ever sees a missing or non-numeric field.
 */
function exitChecked(scope: Construct, name: string, verdict: boolean, task: tasks.EcsRunTask): sfn.Parallel {
  const exitCode = '$.Containers[0].ExitCode';
  const failed = new sfn.Fail(scope, `${name}Failed`, {
    error: STEP_FAILED,
    cause: `yuba-reconciler's ${name.toLowerCase()} step exited non-zero or did not run: see its task's log and the execution's history`,
  });
  const judged = new sfn.Choice(scope, `${name}Exited`)
    .when(sfn.Condition.not(sfn.Condition.isPresent(exitCode)), failed)
    .when(sfn.Condition.not(sfn.Condition.isNumeric(exitCode)), failed)
    .when(sfn.Condition.numberEquals(exitCode, 0), new sfn.Succeed(scope, `${name}Done`));
  if (verdict) {
    judged.when(
      sfn.Condition.numberEquals(exitCode, 1),
      new sfn.Fail(scope, 'DriftLeft', { error: DRIFT_LEFT, cause: 'the merged summary counts drift found and left unrepaired: see the merge task\'s log' }),
    );
  }
  judged.otherwise(failed);

  const cause = `${CAUGHT}.Cause`;
  const stoppedTask = new sfn.Pass(scope, `${name}StoppedTask`, {
    parameters: { task: sfn.JsonPath.stringToJson(sfn.JsonPath.stringAt(cause)) },
    outputPath: '$.task',
  });
  const caught = new sfn.Choice(scope, `${name}Caught`)
    .when(sfn.Condition.not(sfn.Condition.isPresent(cause)), failed)
    .when(sfn.Condition.not(sfn.Condition.isString(cause)), failed)
    .when(sfn.Condition.stringMatches(cause, '{*}'), stoppedTask.next(judged))
    .otherwise(failed);
  task.addCatch(caught, { errors: [sfn.Errors.ALL], resultPath: CAUGHT });

  const parallel = new sfn.Parallel(scope, name, { resultPath: sfn.JsonPath.DISCARD });
  parallel.branch(task.next(judged));
  // The merge's non-zero exits other than the verdict are retried too: it emits the run's metrics
  // only once it has added the summaries up, so a merge that failed emitted nothing.
  parallel.addRetry({ errors: [STEP_FAILED, sfn.Errors.TASKS_FAILED], maxAttempts: STEP_ATTEMPTS - 1, interval: Duration.minutes(1), backoffRate: 2 });
  return parallel;
}

/**
 * What a sharded run keeps in the plans bucket: plan.json, each shard's part of the report and
 * each shard's summary, written and read by the reconciler's tasks; and the bucket listed
 * (unconditioned), so that a summary not written yet is a 404 to the merge, not a 403
 * (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, "Permissions").
 */
function grantPlans(role: iam.IRole, plans: s3.IBucket): void {
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'KeepReconcilePlans',
      actions: ['s3:PutObject', 's3:GetObject'],
      resources: [plans.arnForObjects('*')],
    }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'ListReconcilePlans',
      actions: ['s3:ListBucket'],
      resources: [plans.bucketArn],
    }),
  );
}
