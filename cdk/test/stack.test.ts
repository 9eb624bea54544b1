/**
 * Properties of the synthesized templates (no AWS account, no Docker: placeholder Lambda code,
 * example GCP credential configurations).
 */
import { Match, Template } from 'aws-cdk-lib/assertions';
import { DEFAULT_BURN_RATES, FARGATE_SCALE_OUT, lambdaMemoryProblems, lambdaWorkerMemoryMiB, stageConfig, workerMemoryMiB } from '../lib/config';
import { SHUTDOWN_GRACE_SECONDS, STOP_TIMEOUT_SECONDS, backlogSteps } from '../lib/fargate-worker';
import { burnRateName } from '../lib/slo';
import { loadCanaryJob } from '../lib/canary';
import { FAILOVER_STATUS_CODES } from '../lib/delivery';
import { synth } from './helpers';

type Res = { Type: string; Properties: any; DependsOn?: unknown };
const resources = (t: Template, type: string): Array<[string, Res]> => Object.entries(t.findResources(type)) as Array<[string, Res]>;
const one = (t: Template, type: string, match?: (r: Res) => boolean): [string, Res] => {
  const found = resources(t, type).filter(([, r]) => !match || match(r));
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0];
};
const logicalIdOf = (t: Template, type: string, match: (r: Res) => boolean) => one(t, type, match)[0];
const queueId = (t: Template, name: string) => logicalIdOf(t, 'AWS::SQS::Queue', (r) => r.Properties.QueueName === name);
const getAtt = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });
/** The statements of the policies attached to a role (by its logical id). */
const statementsOf = (t: Template, roleId: string): any[] =>
  resources(t, 'AWS::IAM::Policy')
    .filter(([, p]) => (p.Properties.Roles ?? []).some((r: any) => r.Ref === roleId))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
const roleId = (t: Template, roleName: string) => logicalIdOf(t, 'AWS::IAM::Role', (r) => r.Properties.RoleName === roleName);
const actionsOf = (s: any): string[] => ([] as string[]).concat(s.Action);

/**
 * ECS services that run ARM64 task definitions on FARGATE_SPOT: none may. "Linux tasks with the
 * ARM64 architecture don't support the Fargate Spot capacity provider"
 * (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-capacity-providers.html;
 * the API reference's CapacityProviderStrategyItem says otherwise for platform 1.4.0, so the
 * deployment keeps to what both allow: fargate-worker.ts).
 */
function spotOnArm64(template: any): string[] {
  const all = Object.entries(template.Resources as Record<string, Res>);
  const arm64 = new Set(
    all.filter(([, r]) => r.Type === 'AWS::ECS::TaskDefinition' && r.Properties.RuntimePlatform?.CpuArchitecture === 'ARM64').map(([id]) => id),
  );
  return all
    .filter(([, r]) => r.Type === 'AWS::ECS::Service' && arm64.has(r.Properties.TaskDefinition?.Ref))
    .filter(([, r]) => (r.Properties.CapacityProviderStrategy ?? []).some((s: any) => s.CapacityProvider === 'FARGATE_SPOT'))
    .map(([id]) => id);
}

/**
 * Containers of Fargate task definitions whose stop timeout is over 120 s: ECS refuses them ("For
 * tasks that use the Fargate launch type, the max stop timeout value is 120 seconds",
 * https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html).
 */
function stopTimeoutsOverFargateMax(template: any): string[] {
  return Object.entries(template.Resources as Record<string, Res>)
    .filter(([, r]) => r.Type === 'AWS::ECS::TaskDefinition' && (r.Properties.RequiresCompatibilities ?? []).includes('FARGATE'))
    .flatMap(([id, r]) => (r.Properties.ContainerDefinitions as any[]).filter((c) => (c.StopTimeout ?? 30) > 120).map((c) => `${id}/${c.Name}`));
}

const prod = synth('prod');
const dev = synth('dev');

describe('queues', () => {
  const t = prod.template;
  const names = ['yuba-prod-events', 'yuba-prod-work-lambda', 'yuba-prod-work-fargate'];

  test.each(names)('%s has a DLQ with a redrive policy, SSE and a TLS-only policy', (name) => {
    const [id, q] = one(t, 'AWS::SQS::Queue', (r) => r.Properties.QueueName === name);
    const dlqId = queueId(t, `${name}-dlq`);
    expect(q.Properties.RedrivePolicy).toEqual({ deadLetterTargetArn: getAtt(dlqId), maxReceiveCount: 5 });
    for (const qid of [id, dlqId]) {
      const props = t.toJSON().Resources[qid].Properties;
      expect(props.SqsManagedSseEnabled).toBe(true);
      const [, policy] = one(t, 'AWS::SQS::QueuePolicy', (p) => p.Properties.Queues.some((x: any) => x.Ref === qid));
      expect(policy.Properties.PolicyDocument.Statement).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ Effect: 'Deny', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } }, Principal: { AWS: '*' } }),
        ]),
      );
    }
    // A message keeps its enqueue time in the DLQ: the DLQ must keep it longer.
    expect(t.toJSON().Resources[dlqId].Properties.MessageRetentionPeriod).toBeGreaterThan(q.Properties.MessageRetentionPeriod);
  });

  test('the Lambda work queue visibility is at least 6 x the worker timeout', () => {
    const [, q] = one(t, 'AWS::SQS::Queue', (r) => r.Properties.QueueName === 'yuba-prod-work-lambda');
    const [, fn] = one(t, 'AWS::Lambda::Function', (r) => r.Properties.FunctionName === 'yuba-prod-worker');
    expect(q.Properties.VisibilityTimeout).toBeGreaterThanOrEqual(6 * fn.Properties.Timeout);
  });

  test('the events queue visibility is at least 6 x the ingest timeout', () => {
    const [, q] = one(t, 'AWS::SQS::Queue', (r) => r.Properties.QueueName === 'yuba-prod-events');
    const [, fn] = one(t, 'AWS::Lambda::Function', (r) => r.Properties.FunctionName === 'yuba-prod-ingest');
    expect(q.Properties.VisibilityTimeout).toBeGreaterThanOrEqual(6 * fn.Properties.Timeout);
  });
});

describe('lambdas', () => {
  const t = prod.template;

  test('both are arm64 provided.al2023 with a log group of their own and a retention', () => {
    for (const name of ['yuba-prod-ingest', 'yuba-prod-worker']) {
      const [, fn] = one(t, 'AWS::Lambda::Function', (r) => r.Properties.FunctionName === name);
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      expect(fn.Properties.Runtime).toBe('provided.al2023');
      expect(fn.Properties.Handler).toBe('bootstrap');
      const logId = logicalIdOf(t, 'AWS::Logs::LogGroup', (r) => r.Properties.LogGroupName === `/aws/lambda/${name}`);
      expect(t.toJSON().Resources[logId].Properties.RetentionInDays).toBe(90);
      expect(fn.Properties.LoggingConfig).toEqual({ LogGroup: { Ref: logId } });
    }
  });

  test('the worker event source: partial batch failures, batch size and window, max concurrency, through the alias', () => {
    const lambdaQueue = queueId(t, 'yuba-prod-work-lambda');
    const [, esm] = one(t, 'AWS::Lambda::EventSourceMapping', (r) => JSON.stringify(r.Properties.EventSourceArn) === JSON.stringify(getAtt(lambdaQueue)));
    expect(esm.Properties).toMatchObject({
      BatchSize: prod.config.lambdaWorker.batchSize,
      MaximumBatchingWindowInSeconds: prod.config.lambdaWorker.batchWindowSeconds,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: prod.config.lambdaWorker.maxConcurrency },
    });
    expect(JSON.stringify(esm.Properties.FunctionName)).toContain(':live');
  });

  test('ingest and both workers accept only the stage source bucket (the Lambda worker and ingest the canary bucket too); ingest sets rejected records aside on the events DLQ', () => {
    const envOf = (props: any) => props.Environment?.Variables ?? Object.fromEntries((props.Environment ?? []).map((e: any) => [e.Name, e.Value]));
    const fn = (name: string) => envOf(one(t, 'AWS::Lambda::Function', (r) => r.Properties.FunctionName === name)[1].Properties);
    const canary = { Ref: resources(t, 'AWS::S3::Bucket').find(([id]) => id.startsWith('LambdasCanaryBucket'))![0] };
    const [ingest, worker] = [fn('yuba-prod-ingest'), fn('yuba-prod-worker')];
    const td = one(t, 'AWS::ECS::TaskDefinition', (r) => r.Properties.Family === 'yuba-prod-worker')[1];
    const task = envOf(td.Properties.ContainerDefinitions[0]);
    for (const env of [ingest, worker, task]) expect(env.YUBA_SOURCE_BUCKET).toBe(prod.config.source.name);
    for (const env of [ingest, worker]) expect(env.YUBA_CANARY_BUCKET).toEqual(canary);
    expect(task.YUBA_CANARY_BUCKET).toBeUndefined();
    expect(ingest.YUBA_EVENTS_DLQ_URL).toEqual({ Ref: queueId(t, 'yuba-prod-events-dlq') });
  });

  test('ingest consumes the events queue with partial batch failures', () => {
    const events = queueId(t, 'yuba-prod-events');
    const [, esm] = one(t, 'AWS::Lambda::EventSourceMapping', (r) => JSON.stringify(r.Properties.EventSourceArn) === JSON.stringify(getAtt(events)));
    expect(esm.Properties.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
    expect(JSON.stringify(esm.Properties.FunctionName)).toContain(':live');
  });

  test('environment: ingest routes to both work queues; the worker gets the GCS bucket and the federation config', () => {
    const [, ingest] = one(t, 'AWS::Lambda::Function', (r) => r.Properties.FunctionName === 'yuba-prod-ingest');
    const env = ingest.Properties.Environment.Variables;
    expect(env.YUBA_LAMBDA_QUEUE_URL).toEqual({ Ref: queueId(t, 'yuba-prod-work-lambda') });
    expect(env.YUBA_FARGATE_QUEUE_URL).toEqual({ Ref: queueId(t, 'yuba-prod-work-fargate') });
    expect(env.YUBA_ROUTE_THRESHOLD_BYTES).toBe(String(prod.config.lambdaWorker.routeThresholdBytes));
    const [, worker] = one(t, 'AWS::Lambda::Function', (r) => r.Properties.FunctionName === 'yuba-prod-worker');
    const wenv = worker.Properties.Environment.Variables;
    expect(wenv.YUBA_GCS_BUCKET).toBe('yuba-prod-replica');
    expect(JSON.parse(wenv.YUBA_GCS_CREDENTIALS).type).toBe('external_account');
    expect(wenv.YUBA_CONCURRENCY).toBe(String(prod.config.lambdaWorker.concurrency));
    expect(wenv.YUBA_LOG_FORMAT).toBe('json'); // EMF metrics are written with JSON logs only
    expect(wenv.YUBA_QUEUE_URL).toBeUndefined(); // on Lambda the trigger delivers
  });

  test("the worker memory is the worker's memory rule for its concurrency (README \"Memory\")", () => {
    const [, worker] = one(t, 'AWS::Lambda::Function', (r) => r.Properties.FunctionName === 'yuba-prod-worker');
    expect(worker.Properties.MemorySize).toBe(lambdaWorkerMemoryMiB(prod.config));
    expect(worker.Properties.MemorySize).toBeGreaterThanOrEqual(workerMemoryMiB(prod.config.lambdaWorker.concurrency, prod.config.variants !== ''));
    expect(worker.Properties.ReservedConcurrentExecutions).toBeGreaterThanOrEqual(prod.config.lambdaWorker.maxConcurrency);
  });

  test("every function's memory is one Lambda accepts (128 to 10,240 MB), and a copy that breaks it is caught", () => {
    const template = t.toJSON();
    expect(lambdaMemoryProblems(template)).toEqual([]);
    // The largest concurrency the config accepts with variants still fits.
    const variants = JSON.stringify({ profiles: [{ name: 'large', width: 1600, height: 1600, format: 'jpeg' }] });
    const accepts = (concurrency: number) => {
      try {
        stageConfig('prod', { variants, lambdaWorker: { concurrency } });
        return true;
      } catch {
        return false;
      }
    };
    let concurrency = 1;
    while (concurrency < 1000 && accepts(concurrency + 1)) concurrency += 1;
    expect(concurrency).toBeGreaterThan(8);
    const largest = synth('prod', { variants, lambdaWorker: { concurrency } }).template.toJSON();
    expect(lambdaMemoryProblems(largest)).toEqual([]);
    const [workerId] = one(t, 'AWS::Lambda::Function', (r) => r.Properties.FunctionName === 'yuba-prod-worker');
    for (const broken of [10241, 64, 1024.5, '2048']) {
      const copy = JSON.parse(JSON.stringify(template));
      copy.Resources[workerId].Properties.MemorySize = broken;
      expect(lambdaMemoryProblems(copy)).toEqual([expect.stringContaining(`${workerId}: MemorySize ${JSON.stringify(broken)}`)]);
    }
  });

  test('canary deployments roll back on the alarms (prod: 10 % for 5 minutes)', () => {
    const groups = resources(t, 'AWS::CodeDeploy::DeploymentGroup');
    expect(groups).toHaveLength(2);
    for (const [, g] of groups) {
      expect(g.Properties.DeploymentConfigName).toBe('CodeDeployDefault.LambdaCanary10Percent5Minutes');
      expect(g.Properties.AutoRollbackConfiguration).toEqual({
        Enabled: true,
        Events: ['DEPLOYMENT_FAILURE', 'DEPLOYMENT_STOP_ON_REQUEST', 'DEPLOYMENT_STOP_ON_ALARM'],
      });
      expect(g.Properties.AlarmConfiguration.Enabled).toBe(true);
      expect(g.Properties.AlarmConfiguration.Alarms.length).toBeGreaterThanOrEqual(2);
    }
    // The canary's alarms watch the version being deployed, through the alias (Lambda's Errors
    // by ExecutedVersion) and through yuba's per-version metrics (FunctionVersion).
    const canary = resources(t, 'AWS::CloudWatch::Alarm').filter(([id]) => id.includes('CanaryErrors'));
    expect(canary).toHaveLength(2);
    for (const [, a] of canary) {
      const dims = Object.fromEntries(a.Properties.Dimensions.map((d: any) => [d.Name, d.Value]));
      expect(Object.keys(dims).sort()).toEqual(['ExecutedVersion', 'FunctionName', 'Resource']);
    }
    t.resourceCountIs('AWS::Lambda::Alias', 2);
    t.hasResourceProperties('AWS::Lambda::Alias', { Name: 'live' });
  });

  test('dev deploys all at once', () => {
    for (const [, g] of resources(dev.template, 'AWS::CodeDeploy::DeploymentGroup')) {
      expect(g.Properties.DeploymentConfigName).toBe('CodeDeployDefault.LambdaAllAtOnce');
    }
  });
});

describe('least privilege', () => {
  const t = prod.template;
  const bucketObjects = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::yuba-prod-images/*']] };
  const bucketArn = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::yuba-prod-images']] };
  const lambdaQ = () => getAtt(queueId(t, 'yuba-prod-work-lambda'));
  const fargateQ = () => getAtt(queueId(t, 'yuba-prod-work-fargate'));

  test('no statement allows a wildcard action, and "*" resources only where AWS requires it', () => {
    for (const [id, p] of resources(t, 'AWS::IAM::Policy')) {
      for (const s of p.Properties.PolicyDocument.Statement) {
        for (const a of actionsOf(s)) expect(a).not.toMatch(/\*$/);
        if (s.Resource === '*') expect({ id, actions: actionsOf(s) }).toEqual({ id, actions: ['ecr:GetAuthorizationToken'] });
      }
    }
  });

  test('Lambda worker: reads source objects (and versions: prod is versioned), lists the bucket (a missing key is a 404); its poller consumes its queue only', () => {
    const s = statementsOf(t, roleId(t, 'yuba-prod-worker-lambda'));
    const s3 = s.filter((x) => actionsOf(x).some((a) => a.startsWith('s3:')));
    const canary = resources(t, 'AWS::S3::Bucket').find(([id]) => id.startsWith('LambdasCanaryBucket'))![0];
    expect(s3).toEqual([
      expect.objectContaining({ Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: bucketObjects }),
      expect.objectContaining({ Action: 's3:ListBucket', Resource: bucketArn }),
      // The pre-traffic probes' two objects, nothing else of the canary bucket.
      expect.objectContaining({
        Action: 's3:GetObject',
        Resource: ['ingest', 'worker'].map((kind) => ({ 'Fn::Join': ['', [getAtt(canary), `/${loadCanaryJob().keyPrefix}${kind}.png`]] })),
      }),
      expect.objectContaining({ Action: 's3:ListBucket', Resource: getAtt(canary) }),
    ]);
    const sqs = s.filter((x) => actionsOf(x).some((a) => a.startsWith('sqs:')));
    expect(sqs).toHaveLength(1);
    expect(sqs[0].Resource).toEqual(lambdaQ());
    expect(actionsOf(sqs[0])).not.toContain('sqs:SendMessage');
  });

  test('both Lambdas may delay their failed messages (GetQueueUrl + ChangeMessageVisibility on their own queue)', () => {
    const ingestRole = logicalIdOf(t, 'AWS::IAM::Role', (r) => r.Properties.Description === 'yuba yuba-ingest (prod)');
    for (const [role, queue] of [
      [roleId(t, 'yuba-prod-worker-lambda'), lambdaQ()],
      [ingestRole, getAtt(queueId(t, 'yuba-prod-events'))],
    ] as const) {
      const own = statementsOf(t, role).filter((x) => JSON.stringify(x.Resource) === JSON.stringify(queue));
      const actions = own.flatMap(actionsOf);
      expect(actions).toEqual(expect.arrayContaining(['sqs:GetQueueUrl', 'sqs:ChangeMessageVisibility']));
    }
  });

  test('ingest: sends to the two work queues, nothing else on S3', () => {
    const ingestRole = logicalIdOf(t, 'AWS::IAM::Role', (r) => r.Properties.Description === 'yuba yuba-ingest (prod)');
    const s = statementsOf(t, ingestRole);
    const send = s.find((x) => x.Sid === 'SendJobs');
    expect(send.Action).toBe('sqs:SendMessage');
    expect(send.Resource).toEqual(expect.arrayContaining([lambdaQ(), fargateQ()]));
    expect(send.Resource).toHaveLength(2);
    expect(s.some((x) => actionsOf(x).some((a) => a.startsWith('s3:')))).toBe(false);
  });

  test('Fargate worker: receive/delete/change visibility on its queue; read source objects, list the bucket; protect its own task', () => {
    const s = statementsOf(t, roleId(t, 'yuba-prod-worker-task'));
    const cluster = one(t, 'AWS::ECS::Cluster', (r) => r.Properties.ClusterName === 'yuba-prod')[0];
    expect(s).toEqual([
      expect.objectContaining({ Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:ReceiveMessage'], Resource: fargateQ() }),
      expect.objectContaining({ Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: bucketObjects }),
      expect.objectContaining({ Action: 's3:ListBucket', Resource: bucketArn }),
      // Task scale-in protection, through the ECS agent with the task role: the cluster's tasks.
      expect.objectContaining({
        Action: 'ecs:UpdateTaskProtection',
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ecs:eu-west-1:123456789012:task/', { Ref: cluster }, '/*']] },
      }),
    ]);
  });

  test('reconciler: list + read the source, send jobs to both work queues and watch their backlog, nothing more', () => {
    const s = statementsOf(t, roleId(t, 'yuba-prod-reconciler-task'));
    expect(s).toHaveLength(4);
    expect(s).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Action: 's3:ListBucket', Resource: bucketArn }),
        expect.objectContaining({ Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: bucketObjects }),
        expect.objectContaining({ Action: 'sqs:SendMessage', Resource: expect.arrayContaining([lambdaQ(), fargateQ()]) }),
        expect.objectContaining({ Action: 'sqs:GetQueueAttributes', Resource: expect.arrayContaining([lambdaQ(), fargateQ()]) }),
      ]),
    );
  });

  test('an unversioned bucket gets no GetObjectVersion (dev)', () => {
    const s = statementsOf(dev.template, roleId(dev.template, 'yuba-dev-worker-lambda'));
    const read = s.find((x) => x.Sid === 'ReadSourceObjects');
    expect(read.Action).toBe('s3:GetObject');
  });

  test('the federated roles have the fixed names terraform is given', () => {
    for (const n of ['yuba-prod-worker-lambda', 'yuba-prod-worker-task', 'yuba-prod-reconciler-task']) roleId(t, n);
    const outputs = t.toJSON().Outputs;
    expect(JSON.stringify(outputs.WorkerRoleArns.Value)).toContain('role/yuba-prod-worker-lambda,');
  });
});

describe('fargate worker', () => {
  const t = prod.template;
  const worker = () => one(t, 'AWS::ECS::TaskDefinition', (r) => r.Properties.Family === 'yuba-prod-worker')[1];

  test('ARM64, non-root, read-only root file system, stop timeout covering the drain', () => {
    const td = worker();
    expect(td.Properties.RuntimePlatform).toEqual({ CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' });
    const [c] = td.Properties.ContainerDefinitions;
    expect(c.User).toMatch(/^[1-9][0-9]*:[0-9]+$/); // numeric, not root
    expect(c.ReadonlyRootFilesystem).toBe(true);
    expect(c.StopTimeout).toBe(STOP_TIMEOUT_SECONDS);
    const env = Object.fromEntries(c.Environment.map((e: any) => [e.Name, e.Value]));
    expect(Number(env.YUBA_SHUTDOWN_GRACE_SECONDS)).toBe(SHUTDOWN_GRACE_SECONDS);
    expect(SHUTDOWN_GRACE_SECONDS).toBeLessThan(STOP_TIMEOUT_SECONDS);
    for (const template of [t, dev.template]) expect(stopTimeoutsOverFargateMax(template.toJSON())).toEqual([]);
    const broken = JSON.parse(JSON.stringify(t.toJSON()));
    const [id] = resources(t, 'AWS::ECS::TaskDefinition').find(([, d]) => d.Properties.ContainerDefinitions[0].Name === c.Name)!;
    broken.Resources[id].Properties.ContainerDefinitions[0].StopTimeout = 121;
    expect(stopTimeoutsOverFargateMax(broken)).toEqual([`${id}/${c.Name}`]);
    expect(env.YUBA_QUEUE_URL).toEqual({ Ref: queueId(t, 'yuba-prod-work-fargate') });
    // The queue's visibility is the worker's own (renewed every half while a job runs).
    const [, q] = one(t, 'AWS::SQS::Queue', (r) => r.Properties.QueueName === 'yuba-prod-work-fargate');
    expect(String(q.Properties.VisibilityTimeout)).toBe(env.YUBA_VISIBILITY_TIMEOUT_SECONDS);
  });

  test("task memory covers the worker's memory rule for its concurrency", () => {
    const td = worker();
    expect(Number(td.Properties.Memory)).toBeGreaterThanOrEqual(workerMemoryMiB(prod.config.fargateWorker.concurrency, prod.config.variants !== ''));
  });

  test('on-demand FARGATE with a warm task in prod (ARM64 cannot run on Spot), circuit breaker with rollback', () => {
    const [, svc] = one(t, 'AWS::ECS::Service');
    expect(svc.Properties.CapacityProviderStrategy).toEqual([{ CapacityProvider: 'FARGATE', Weight: 1, Base: 1 }]);
    expect(svc.Properties.DeploymentConfiguration.DeploymentCircuitBreaker).toEqual({ Enable: true, Rollback: true });
    expect(spotOnArm64(t.toJSON())).toEqual([]);
    expect(one(dev.template, 'AWS::ECS::Service')[1].Properties.CapacityProviderStrategy).toEqual([{ CapacityProvider: 'FARGATE', Weight: 1, Base: 0 }]);
  });

  test('the Spot rule catches an ARM64 service with FARGATE_SPOT in its strategy', () => {
    const broken = JSON.parse(JSON.stringify(t.toJSON()));
    const [id] = one(t, 'AWS::ECS::Service');
    broken.Resources[id].Properties.CapacityProviderStrategy = [
      { CapacityProvider: 'FARGATE_SPOT', Weight: 3 },
      { CapacityProvider: 'FARGATE', Weight: 1 },
    ];
    expect(spotOnArm64(broken)).toEqual([id]);
  });

  test('scales on the backlog per task, down to the warm minimum', () => {
    t.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 1, MaxCapacity: 20, ScalableDimension: 'ecs:service:DesiredCount' });
    dev.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 0, MaxCapacity: 2 });
    const policies = resources(t, 'AWS::ApplicationAutoScaling::ScalingPolicy');
    expect(policies).toHaveLength(2);
    const adjustments = policies.flatMap(([, p]) => {
      expect(p.Properties.StepScalingPolicyConfiguration.AdjustmentType).toBe('ExactCapacity');
      return p.Properties.StepScalingPolicyConfiguration.StepAdjustments.map((s: any) => s.ScalingAdjustment);
    });
    expect(Math.min(...adjustments)).toBe(1);
    expect(Math.max(...adjustments)).toBe(20);
    // The alarms behind the policies watch visible + in-flight messages of the Fargate queue.
    const scalingAlarms = resources(t, 'AWS::CloudWatch::Alarm').filter(([id]) => id.includes('BacklogPerTask'));
    expect(scalingAlarms).toHaveLength(2);
    for (const [, a] of scalingAlarms) {
      const names = a.Properties.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric.MetricName).sort();
      expect(names).toEqual(['ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesVisible']);
      expect(a.Properties.EvaluationPeriods).toBe(FARGATE_SCALE_OUT.evaluationPeriods);
    }
  });

  test('the scale-in and scale-out alarms never hold at once, in any stage', () => {
    for (const template of [t, dev.template]) {
      const scalingAlarms = resources(template, 'AWS::CloudWatch::Alarm').filter(([id]) => id.includes('BacklogPerTask'));
      const lower = scalingAlarms.find(([, a]) => a.Properties.ComparisonOperator === 'LessThanOrEqualToThreshold')![1];
      const upper = scalingAlarms.find(([, a]) => a.Properties.ComparisonOperator === 'GreaterThanOrEqualToThreshold')![1];
      // backlog <= lower and backlog >= upper: disjoint only when lower < upper.
      expect(lower.Properties.Threshold).toBeLessThan(upper.Properties.Threshold);
    }
  });

  test('backlog steps: one task for the first message, exact counts by backlog per task', () => {
    expect(backlogSteps(10, 3, 0)).toEqual([
      { upper: 0, change: 0 },
      { lower: 1, change: 1 },
      { lower: 11, change: 2 },
      { lower: 21, change: 3 },
    ]);
    const many = backlogSteps(40, 50, 0);
    expect(many.length).toBeLessThanOrEqual(12);
    expect(many[many.length - 1].change).toBe(50);
  });

  test('tasks have no ingress and reach out on 443 only', () => {
    const [, sg] = one(t, 'AWS::EC2::SecurityGroup');
    expect(sg.Properties.SecurityGroupIngress).toBeUndefined();
    expect(sg.Properties.SecurityGroupEgress).toEqual([expect.objectContaining({ IpProtocol: 'tcp', FromPort: 443, ToPort: 443 })]);
  });
});

describe('reconciler', () => {
  const t = prod.template;

  test('a daily EventBridge Scheduler schedule runs backfill --json --no-checkpoint on Fargate', () => {
    const [, s] = one(t, 'AWS::Scheduler::Schedule');
    expect(s.Properties.ScheduleExpression).toBe('cron(0 3 * * ? *)');
    expect(s.Properties.ScheduleExpressionTimezone).toBe('UTC');
    expect(s.Properties.State).toBe('ENABLED');
    const tdId = logicalIdOf(t, 'AWS::ECS::TaskDefinition', (r) => r.Properties.Family === 'yuba-prod-reconciler');
    expect(s.Properties.Target.EcsParameters.TaskDefinitionArn).toEqual({ Ref: tdId });
    const td = t.toJSON().Resources[tdId];
    const [c] = td.Properties.ContainerDefinitions;
    expect(c.Command).toEqual(['yuba-reconciler', 'backfill', '--json', '--no-checkpoint']);
    // Nothing to write: no checkpoint, no scratch volume, a read-only root.
    expect(c.ReadonlyRootFilesystem).toBe(true);
    expect(c.MountPoints ?? []).toEqual([]);
    expect(td.Properties.Volumes ?? []).toEqual([]);
    const env = Object.fromEntries(c.Environment.map((e: any) => [e.Name, e.Value]));
    expect(env.YUBA_SOURCE_BUCKET).toBe('yuba-prod-images');
    expect(JSON.parse(env.YUBA_GCS_CREDENTIALS).type).toBe('external_account');
    // Enqueued jobs are looked at again once the workers took them.
    expect(env.YUBA_RECONCILE_VERIFY_ENQUEUED).toBe(String(prod.config.reconciler.verifyEnqueuedSeconds));
  });

  test('with a source inventory it reads the newest report, sorting it on a volume of ephemeral storage', () => {
    const inventory = { bucket: 'yuba-prod-inventories', folder: 'reports/yuba-prod-images/daily/', storageGiB: 100 };
    const withInventory = synth('prod', { reconciler: { sourceInventory: inventory } }).template;
    const tdId = logicalIdOf(withInventory, 'AWS::ECS::TaskDefinition', (r) => r.Properties.Family === 'yuba-prod-reconciler');
    const td = withInventory.toJSON().Resources[tdId];
    expect(td.Properties.EphemeralStorage).toEqual({ SizeInGiB: 100 });
    const [c] = td.Properties.ContainerDefinitions;
    const env = Object.fromEntries(c.Environment.map((e: any) => [e.Name, e.Value]));
    expect(env.YUBA_RECONCILE_SOURCE_INVENTORY).toBe('s3://yuba-prod-inventories/reports/yuba-prod-images/daily/');
    // The spill folder is the one writable path; the root stays read-only.
    expect(c.ReadonlyRootFilesystem).toBe(true);
    expect(c.MountPoints).toEqual([{ SourceVolume: 'inventory-spill', ContainerPath: env.YUBA_RECONCILE_INVENTORY_SPILL_DIR, ReadOnly: false }]);
    expect(td.Properties.Volumes).toEqual([{ Name: 'inventory-spill' }]);
    // The role reads the configuration's folder and lists only under it: nothing else of the bucket.
    const s = statementsOf(withInventory, roleId(withInventory, 'yuba-prod-reconciler-task'));
    const bucket = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::yuba-prod-inventories']] };
    expect(s.find((x) => x.Sid === 'ListInventoryReports')).toEqual(
      expect.objectContaining({ Action: 's3:ListBucket', Resource: bucket, Condition: { StringLike: { 's3:prefix': ['reports/yuba-prod-images/daily/*'] } } }),
    );
    expect(s.find((x) => x.Sid === 'ReadInventoryReports')).toEqual(
      expect.objectContaining({
        Action: 's3:GetObject',
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::yuba-prod-inventories/reports/yuba-prod-images/daily/*']] },
      }),
    );
    expect(s).toHaveLength(6);
  });

  test('in shards, the schedule starts a state machine: plan, the shards at once (each retried alone), merge', () => {
    const inventory = { bucket: 'yuba-prod-inventories', folder: 'reports/yuba-prod-images/daily/', storageGiB: 100 };
    const sharded = synth('prod', { reconciler: { sourceInventory: inventory, shards: 3 } }).template;
    const [machineId, machine] = one(sharded, 'AWS::StepFunctions::StateMachine');
    const [, schedule] = one(sharded, 'AWS::Scheduler::Schedule');
    expect(schedule.Properties.Target.Arn).toEqual({ Ref: machineId });
    expect(schedule.Properties.Target.EcsParameters).toBeUndefined();
    // The definition, with its tokens as placeholders.
    const definition = JSON.parse(
      machine.Properties.DefinitionString['Fn::Join'][1].map((part: unknown) => (typeof part === 'string' ? part : 'TOKEN')).join(''),
    );
    expect(Object.keys(definition.States)).toEqual(['Prepare', 'Plan', 'Shards', 'Merge']);
    expect(definition.TimeoutSeconds).toBe(23 * 3600);
    expect(definition.States.Prepare.Parameters.shards).toEqual(['1/3', '2/3', '3/3']);
    expect(definition.States.Prepare.Parameters['plan.$']).toBe("States.Format('s3://TOKEN/runs/{}/', $$.Execution.Name)");
    const override = (step: any, task: string) => step.Branches[0].States[task].Parameters.Overrides.ContainerOverrides[0];
    const envOf = (o: any) => Object.fromEntries(o.Environment.map((e: any) => [e.Name, e.Value ?? e['Value.$']]));
    const plan = override(definition.States.Plan, 'PlanTask');
    expect(plan.Command).toEqual(['yuba-reconciler', 'plan', '--json', '--shards', '3']);
    expect(envOf(plan)).toEqual({ YUBA_RECONCILE_PLAN: '$.plan', YUBA_RECONCILE_SOURCE_INVENTORY: 's3://yuba-prod-inventories/reports/yuba-prod-images/daily/' });
    const shards = definition.States.Shards;
    expect(shards.MaxConcurrency).toBe(3);
    expect(shards.ItemSelector).toEqual({ 'shard.$': '$$.Map.Item.Value', 'plan.$': '$.plan' });
    const shard = override(shards.ItemProcessor.States.Shard, 'ShardTask');
    expect(shard.Command).toEqual(['yuba-reconciler', 'backfill', '--json', '--no-checkpoint']);
    expect(envOf(shard)).toEqual({ YUBA_RECONCILE_PLAN: '$.plan', YUBA_RECONCILE_SHARD: '$.shard' });
    expect(override(definition.States.Merge, 'MergeTask').Command).toEqual(['yuba-reconciler', 'merge', '--json']);
    // Each step judges its exit code and is retried alone; the merge's 1 is the verdict, not retried.
    for (const step of [definition.States.Plan, shards.ItemProcessor.States.Shard, definition.States.Merge]) {
      expect(step.Type).toBe('Parallel');
      expect(step.Retry).toEqual([expect.objectContaining({ ErrorEquals: ['ReconcileStepFailed', 'States.TaskFailed'], MaxAttempts: 2 })]);
    }
    const merged = definition.States.Merge.Branches[0].States;
    expect(merged.DriftLeft).toEqual(expect.objectContaining({ Type: 'Fail', Error: 'ReconcileDriftLeft' }));
    // A shard refuses --source-inventory: the container's own environment does not carry it.
    const tdId = logicalIdOf(sharded, 'AWS::ECS::TaskDefinition', (r) => r.Properties.Family === 'yuba-prod-reconciler');
    const [c] = sharded.toJSON().Resources[tdId].Properties.ContainerDefinitions;
    expect(c.Environment.map((e: any) => e.Name)).not.toContain('YUBA_RECONCILE_SOURCE_INVENTORY');
    // Plans are kept a few days, privately, over TLS only, with access logs.
    const [plansId, plans] = one(sharded, 'AWS::S3::Bucket', (b) => b.Properties.LoggingConfiguration?.LogFilePrefix === 'reconcile-plans/');
    expect(plans.Properties.LifecycleConfiguration.Rules).toEqual([expect.objectContaining({ ExpirationInDays: 3, Status: 'Enabled' })]);
    expect(plans.Properties.PublicAccessBlockConfiguration).toEqual({ BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
    const [, policy] = one(sharded, 'AWS::S3::BucketPolicy', (p) => JSON.stringify(p.Properties.Bucket) === JSON.stringify({ Ref: plansId }));
    expect(JSON.stringify(policy.Properties.PolicyDocument)).toContain('"aws:SecureTransport":"false"');
    // The alarm follows the execution: failed (drift left, a step out of retries), timed out, aborted.
    const [, rule] = one(sharded, 'AWS::Events::Rule', (r) => r.Properties.EventPattern?.source?.[0] === 'aws.states');
    expect(rule.Properties.EventPattern.detail).toEqual({ stateMachineArn: [{ Ref: machineId }], status: ['FAILED', 'TIMED_OUT', 'ABORTED'] });
    expect(machine.Properties.LoggingConfiguration.Level).toBe('ALL');
  });

  test('a non-zero exit raises an alarm on the topic', () => {
    const [ruleId, rule] = one(t, 'AWS::Events::Rule');
    expect(rule.Properties.EventPattern.detail.lastStatus).toEqual(['STOPPED']);
    expect(JSON.stringify(rule.Properties.EventPattern.detail.$or)).toContain('{"exitCode":[{"anything-but":0}]}');
    const [, alarm] = one(t, 'AWS::CloudWatch::Alarm', (a) => a.Properties.MetricName === 'TriggeredRules');
    expect(alarm.Properties.Dimensions).toEqual([{ Name: 'RuleName', Value: { Ref: ruleId } }]);
    const topic = { Ref: logicalIdOf(t, 'AWS::SNS::Topic', () => true) };
    expect(alarm.Properties.AlarmActions).toEqual([topic]);
    // The rule has a target (so its metric exists): the event itself goes to the topic, whose key
    // EventBridge may use.
    expect(rule.Properties.Targets.map((target: { Arn: unknown }) => target.Arn)).toEqual([topic]);
    const [, key] = one(t, 'AWS::KMS::Key');
    expect(JSON.stringify(key.Properties.KeyPolicy)).toContain('events.amazonaws.com');
  });
});

describe('observability', () => {
  const t = prod.template;
  const topicRef = () => ({ Ref: logicalIdOf(t, 'AWS::SNS::Topic', () => true) });
  const alarmNamed = (name: string) => one(t, 'AWS::CloudWatch::Alarm', (a) => a.Properties.AlarmName === name)[1];

  test('every DLQ has a not-empty alarm that notifies the topic', () => {
    for (const q of ['events', 'lambda-work', 'fargate-work']) {
      const a = alarmNamed(`yuba-prod-${q}-dlq-not-empty`);
      expect(a.Properties).toMatchObject({ MetricName: 'ApproximateNumberOfMessagesVisible', Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
      expect(a.Properties.AlarmActions).toEqual([topicRef()]);
    }
  });

  test('the oldest message and the p99 upload->replica latency are held to the lag objective', () => {
    for (const q of ['events', 'lambda-work', 'fargate-work']) {
      expect(alarmNamed(`yuba-prod-${q}-lag`).Properties).toMatchObject({ MetricName: 'ApproximateAgeOfOldestMessage', Threshold: 120 });
    }
    const p99 = alarmNamed('yuba-prod-replication-lag-p99').Properties;
    expect(p99.Threshold).toBe(120000);
    expect(p99.Metrics).toEqual([
      expect.objectContaining({
        MetricStat: { Metric: { Namespace: 'yuba-prod', MetricName: 'ReplicationLag', Dimensions: [{ Name: 'Outcome', Value: 'replicated' }] }, Period: 300, Stat: 'p99' },
      }),
    ]);
  });

  test('SLO: one composite per burn rate, firing only when its long and its short window both burn', () => {
    const composites = resources(t, 'AWS::CloudWatch::CompositeAlarm');
    expect(composites).toHaveLength(DEFAULT_BURN_RATES.length);
    for (const b of DEFAULT_BURN_RATES) {
      const name = `yuba-prod-slo-${burnRateName(b)}`;
      const [, composite] = one(t, 'AWS::CloudWatch::CompositeAlarm', (r) => r.Properties.AlarmName === name);
      expect(composite.Properties.AlarmActions).toEqual([topicRef()]);
      const rule = JSON.stringify(composite.Properties.AlarmRule);
      for (const [which, minutes] of [['long', b.longWindowMinutes], ['short', b.shortWindowMinutes]] as const) {
        const window = alarmNamed(`${name}-${which}`);
        expect(rule).toContain(logicalIdOf(t, 'AWS::CloudWatch::Alarm', (r) => r.Properties.AlarmName === `${name}-${which}`));
        expect(window.Properties.Threshold).toBeCloseTo(b.rate * 0.01);
        expect(window.Properties.EvaluationPeriods).toBe(1);
        // The window alarms notify no one: the composite does.
        expect(window.Properties.AlarmActions).toBeUndefined();
        const stats = window.Properties.Metrics.filter((m: any) => m.MetricStat);
        for (const m of stats) expect(m.MetricStat.Period).toBe(minutes * 60);
        // Good: replicated within the objective (trimmed count), of all replicated.
        expect(stats.map((m: any) => m.MetricStat.Stat)).toEqual(expect.arrayContaining(['TC(:120000)', 'SampleCount']));
      }
      expect(rule).toMatch(/ALARM\(.*\) AND ALARM\(.*\)/);
    }
  });

  test('SLO: the budget burns on late, dead-lettered and stuck jobs; a silent outage is not green', () => {
    const window = alarmNamed(`yuba-prod-slo-${burnRateName(DEFAULT_BURN_RATES[0])}-short`);
    const stats = window.Properties.Metrics.filter((m: any) => m.MetricStat).map((m: any) => `${m.MetricStat.Metric.Namespace}/${m.MetricStat.Metric.MetricName}`);
    expect(stats.filter((n: string) => n === 'AWS/SQS/ApproximateAgeOfOldestMessage')).toHaveLength(3);
    expect(stats.filter((n: string) => n === 'AWS/SQS/ApproximateNumberOfMessagesVisible')).toHaveLength(5);
    const expression = window.Properties.Metrics.find((m: any) => m.Expression).Expression;
    // With nothing replicated and a stuck queue, the ratio is 1 (all bad), not 0 / 0.
    expect(expression).toContain('MAX([FILL(replicated, 0) +');
    expect(expression).toMatch(/IF\(FILL\(age0, 0\) > 120, FILL\(queued0, 0\), 0\)/);
  });

  test('no deployment is gated by the SLO: only the new version\'s own alarms roll back', () => {
    const slo = new Set(
      resources(t, 'AWS::CloudWatch::Alarm')
        .filter(([, a]) => String(a.Properties.AlarmName ?? '').includes('-slo-'))
        .map(([id]) => id),
    );
    expect(slo.size).toBe(2 * DEFAULT_BURN_RATES.length);
    for (const [, g] of resources(t, 'AWS::CodeDeploy::DeploymentGroup')) {
      const gating = JSON.stringify(g.Properties.AlarmConfiguration.Alarms);
      for (const id of slo) expect(gating).not.toContain(id);
      expect(gating).toContain('Canary');
    }
  });

  test('Lambda errors and throttles are alarmed', () => {
    for (const f of ['ingest', 'worker']) {
      expect(alarmNamed(`yuba-prod-${f}-errors`).Properties.MetricName).toBe('Errors');
      expect(alarmNamed(`yuba-prod-${f}-throttles`).Properties.MetricName).toBe('Throttles');
    }
  });

  test('the topic is encrypted, TLS-only, and CloudWatch may publish', () => {
    const [, topic] = one(t, 'AWS::SNS::Topic');
    expect(topic.Properties.KmsMasterKeyId).toBeDefined();
    const [, policy] = one(t, 'AWS::SNS::TopicPolicy');
    const s = policy.Properties.PolicyDocument.Statement;
    expect(s).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        expect.objectContaining({ Effect: 'Allow', Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: 'sns:Publish' }),
      ]),
    );
  });

  test("each stage's metrics are written and read in its own namespace", () => {
    /** Every namespace a template's writers are told to use, and every non-AWS one it reads. */
    const namespaces = (t: Template) => {
      const written = new Set<string>();
      for (const [, f] of resources(t, 'AWS::Lambda::Function')) {
        const ns = f.Properties.Environment?.Variables?.YUBA_METRICS_NAMESPACE;
        if (ns) written.add(ns);
      }
      for (const [, td] of resources(t, 'AWS::ECS::TaskDefinition')) {
        for (const e of td.Properties.ContainerDefinitions[0].Environment) if (e.Name === 'YUBA_METRICS_NAMESPACE') written.add(e.Value);
      }
      const read = new Set<string>();
      for (const [, a] of resources(t, 'AWS::CloudWatch::Alarm')) {
        for (const m of a.Properties.Metrics ?? []) if (m.MetricStat) read.add(m.MetricStat.Metric.Namespace);
        if (a.Properties.Namespace) read.add(a.Properties.Namespace);
      }
      const body = JSON.stringify(one(t, 'AWS::CloudWatch::Dashboard')[1].Properties.DashboardBody);
      for (const m of body.matchAll(/SEARCH\('\{([^,}\\]+)/g)) read.add(m[1]);
      for (const m of body.matchAll(/\[\\"([^\\]+)\\",\\"(Jobs|ReplicationLag|BytesReplicated|Reconcile\w+)\\"/g)) read.add(m[1]);
      return { written: [...written], read: [...read].filter((ns) => !ns.startsWith('AWS/') && !ns.startsWith('ECS/')) };
    };
    const p = namespaces(t);
    // The Lambda worker, the Fargate worker, the reconciler and (prod has the delivery path) yuba-serve.
    expect(p.written).toEqual(['yuba-prod']);
    expect(p.read).toEqual(['yuba-prod']);
    expect(namespaces(dev.template)).toEqual({ written: ['yuba-dev'], read: ['yuba-dev'] });
    const writers = [
      ...resources(t, 'AWS::Lambda::Function').filter(([, f]) => f.Properties.Environment?.Variables?.YUBA_METRICS_NAMESPACE),
      ...resources(t, 'AWS::ECS::TaskDefinition').filter(([, td]) => td.Properties.ContainerDefinitions[0].Environment.some((e: any) => e.Name === 'YUBA_METRICS_NAMESPACE')),
    ];
    expect(writers.length).toBe(4);
  });

  test('the dashboard shows lag, throughput, failures, queues, Lambda and Fargate', () => {
    const [, d] = one(t, 'AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(d.Properties.DashboardBody);
    for (const needle of [
      'ApproximateAgeOfOldestMessage',
      'ReplicationLag',
      'BytesReplicated',
      'MetricName=\\\\\\"Jobs\\\\\\"', // SEARCH over Jobs by outcome / failure
      'VariantFailures',
      'ApproximateNumberOfMessagesVisible',
      'ApproximateNumberOfMessagesNotVisible',
      'Duration',
      'Throttles',
      'RunningTaskCount',
      'ReconcileDrift',
      'DLQ depth',
    ]) {
      expect(body).toContain(needle);
    }
  });
});

describe('delivery', () => {
  test('prod: CloudFront origin group, S3 with OAC first, yuba-serve as failover (test/delivery.test.ts holds the rest)', () => {
    const t = prod.template;
    const [, d] = one(t, 'AWS::CloudFront::Distribution');
    const cfg = d.Properties.DistributionConfig;
    expect(cfg.OriginGroups.Quantity).toBe(1);
    const group = cfg.OriginGroups.Items[0];
    expect(group.FailoverCriteria.StatusCodes.Items.sort()).toEqual([...FAILOVER_STATUS_CODES].sort());
    const [primaryId, failoverId] = group.Members.Items.map((m: any) => m.OriginId);
    const byId = Object.fromEntries(cfg.Origins.map((o: any) => [o.Id, o]));
    expect(byId[primaryId].S3OriginConfig).toBeDefined();
    expect(byId[primaryId].OriginAccessControlId).toBeDefined();
    const [urlId] = one(t, 'AWS::Lambda::Url');
    expect(byId[failoverId].DomainName).toEqual({ 'Fn::Select': [2, { 'Fn::Split': ['/', { 'Fn::GetAtt': [urlId, 'FunctionUrl'] }] }] });
    expect(byId[failoverId].CustomOriginConfig.OriginProtocolPolicy).toBe('https-only');
    expect(byId[failoverId].OriginAccessControlId).toBeDefined();
    expect(cfg.DefaultCacheBehavior.TargetOriginId).toBe(group.Id);
    expect(cfg.DefaultCacheBehavior.ViewerProtocolPolicy).toBe('redirect-to-https');
    expect(cfg.Logging).toBeDefined();
    t.hasResourceProperties('AWS::CloudFront::OriginAccessControl', { OriginAccessControlConfig: Match.objectLike({ SigningBehavior: 'always' }) });
  });

  test('a configuration with the removed failoverDomain fails synth, saying what replaced it', () => {
    expect(() => stageConfig('prod', { delivery: { failoverDomain: 'images-fallback.example.com' } } as any)).toThrow(/delivery\.failoverDomain: removed: the failover origin is yuba-serve/);
  });

  test('dev: no distribution, and no yuba-serve', () => {
    dev.template.resourceCountIs('AWS::CloudFront::Distribution', 0);
    dev.template.resourceCountIs('AWS::Lambda::Url', 0);
  });
});

describe('stages', () => {
  test('dev and prod differ in names, sizes, retention and alarms', () => {
    expect(dev.config.prefix).not.toBe(prod.config.prefix);
    const retention = (t: Template) => one(t, 'AWS::Logs::LogGroup', (r) => String(r.Properties.LogGroupName).endsWith('-worker'))[1].Properties.RetentionInDays;
    expect(retention(dev.template)).toBe(14);
    expect(retention(prod.template)).toBe(90);
    const lag = (t: Template, p: string) => one(t, 'AWS::CloudWatch::Alarm', (a) => a.Properties.AlarmName === `${p}-replication-lag-p99`)[1].Properties.Threshold;
    expect(lag(dev.template, 'yuba-dev')).toBe(900000);
    expect(lag(prod.template, 'yuba-prod')).toBe(120000);
    // dev: no NAT, tasks in public subnets with a public IP (no ingress); prod: private behind NAT.
    dev.template.resourceCountIs('AWS::EC2::NatGateway', 0);
    prod.template.resourceCountIs('AWS::EC2::NatGateway', 2);
    expect(one(dev.template, 'AWS::ECS::Service')[1].Properties.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp).toBe('ENABLED');
    expect(one(prod.template, 'AWS::ECS::Service')[1].Properties.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp).toBe('DISABLED');
  });
});
