/**
 * Every role of the synthesized templates against the permissions contract,
 * lib/generated/aws-iam.json, which the Rust tests generate from what each crate declares beside
 * its AWS calls (tests/tests/e2e/iam.rs). The local emulators enforce no IAM; this is where a role
 * that cannot make a call the code makes, or may do what the code never does, is caught.
 *
 * - Each program's role (found by what runs with it: the Lambda function or the task definition
 *   of its binary; named as the contract says) allows every permission the contract lists for it
 *   whose conditions hold in the configuration, on the resource named, and grants nothing but
 *   those and the few platform needs listed below.
 * - Every other role is a platform role (task execution, CodeDeploy, ...), recognised by what
 *   uses it, and may do only what its entry below allows.
 *
 * Checked on dev and prod and on the configurations that change grants (a versioned bucket, an
 * SSE-KMS bucket, notifications 'direct' or 'eventbridge', a bucket the app creates); each check
 * is also shown to fail on a broken copy, both ways.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Overrides, StageConfig, StageName } from '../lib/config';
import { clusterTasksArn } from '../lib/fargate-worker';
import { inventoryArns } from '../lib/reconciler';
import { usesEventsQueue } from '../lib/queues';
import { YubaStack } from '../lib/stack';
import { synth } from './helpers';

type Json = any;

interface ContractGrant {
  action: string;
  resource: string;
  when: string[];
}
interface ContractProgram {
  binary: string;
  home: 'lambda' | 'fargate';
  role: string | null;
  permissions: ContractGrant[];
}
interface Contract {
  resources: Record<string, string>;
  conditions: Record<string, string>;
  programs: Record<string, ContractProgram>;
}

const CONTRACT: Contract = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'lib', 'generated', 'aws-iam.json'), 'utf8'));

/** When each condition the contract names holds, from the stage's configuration. */
const CONDITIONS: Record<string, (c: StageConfig) => boolean> = {
  'versioned-source': (c) => c.source.mode === 'create' || c.source.versioned,
  'kms-encrypted-source': (c) => Boolean(c.source.kmsKeyArn),
  'events-queue': (c) => usesEventsQueue(c.notifications),
  'source-inventory': (c) => c.reconciler.sourceInventory !== undefined,
  'sharded-reconcile': (c) => (c.reconciler.shards ?? 1) > 1,
};

/**
 * IAM conditions a statement may carry and still count as allowing what the contract needs, by
 * action, or by action and resource where only that resource's grant may be narrowed.
 */
const ACCEPTED_CONDITIONS: Record<string, (condition: Json) => boolean> = {
  // kms:Decrypt only when S3 asks on the reader's behalf: exactly how a reader uses the key.
  'kms:Decrypt': (condition) => Object.keys(condition).length === 1 && Object.keys(condition.StringEquals ?? {}).join() === 'kms:ViaService',
  // The inventory's bucket is listed under the reports' folder only, which is all the reconciler lists.
  's3:ListBucket inventory-bucket': (condition) => Object.keys(condition).join() === 'StringLike' && Object.keys(condition.StringLike).join() === 's3:prefix',
};
const acceptsCondition = (action: string, resource: string, condition: Json) =>
  (ACCEPTED_CONDITIONS[`${action} ${resource}`] ?? ACCEPTED_CONDITIONS[action])?.(condition) ?? false;

/** A JSON value with its object keys sorted: equal values, equal strings. */
function canonical(value: unknown): string {
  const sort = (v: any): any =>
    Array.isArray(v) ? v.map(sort) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])])) : v;
  return JSON.stringify(sort(value));
}

const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : ([] as T[]).concat(v));
const arnOf = (ref: Json): Json => ({ 'Fn::GetAtt': [ref.Ref, 'Arn'] });
const roleIdOf = (arn: Json): string | undefined => arn?.['Fn::GetAtt']?.[0];

/** One action allowed on one resource by one statement. */
interface Allowed {
  action: string;
  resource: string;
  condition?: Json;
}

/** What a role may do: its statements' (action, resource) pairs and its managed policies. */
function grantsOf(t: Json, roleId: string, problems: string[]): { allowed: Allowed[]; managed: string[] } {
  const role = t.Resources[roleId];
  const documents: Json[] = (role.Properties.Policies ?? []).map((p: Json) => p.PolicyDocument);
  for (const [id, r] of Object.entries<Json>(t.Resources)) {
    if (r.Type !== 'AWS::IAM::Policy' && r.Type !== 'AWS::IAM::ManagedPolicy') continue;
    if (list<Json>(r.Properties.Roles).some((ref) => ref.Ref === roleId)) documents.push({ ...r.Properties.PolicyDocument, id });
  }
  const allowed: Allowed[] = [];
  for (const document of documents) {
    for (const s of list<Json>(document.Statement)) {
      if (s.Effect !== 'Allow' || s.NotAction || s.NotResource || s.NotPrincipal) {
        problems.push(`role ${roleId}: a statement this check cannot read: ${canonical(s)}`);
        continue;
      }
      for (const action of list<string>(s.Action)) {
        for (const resource of list<Json>(s.Resource)) allowed.push({ action, resource: canonical(resource), condition: s.Condition });
      }
    }
  }
  return { allowed, managed: list<Json>(role.Properties.ManagedPolicyArns).map(canonical) };
}

/** `s3:Get*` allows `s3:GetObject`. */
const actionAllows = (pattern: string, action: string) =>
  new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.?+^$()[\]{}|\\]/g, '\\$&')).join('.*')}$`, 'i').test(action);

/** The template's values for the contract's resource names. */
function resourceTokens(stack: YubaStack, c: StageConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    'source-objects': stack.resolve(stack.source.bucket.arnForObjects('*')),
    'source-bucket': stack.resolve(stack.source.bucket.bucketArn),
    'queue:lambda-work': stack.resolve(stack.queues.lambdaWork.queue.queueArn),
    'queue:fargate-work': stack.resolve(stack.queues.fargateWork.queue.queueArn),
    // The tasks of the cluster the Fargate programs run in (the worker protects its own).
    'cluster-tasks': stack.resolve(clusterTasksArn(stack.fargateWorker.service.cluster)),
  };
  if (stack.source.key) out['source-key'] = stack.resolve(stack.source.key.keyArn);
  const inventory = c.reconciler.sourceInventory;
  if (inventory) {
    const { bucketArn, reportsArn } = inventoryArns(stack, inventory);
    out['inventory-bucket'] = stack.resolve(bucketArn);
    out['inventory-reports'] = stack.resolve(reportsArn);
  }
  const plans = stack.reconciler.fanOut?.plans;
  if (plans) {
    out['reconcile-plans'] = stack.resolve(plans.arnForObjects('*'));
    out['reconcile-plans-bucket'] = stack.resolve(plans.bucketArn);
  }
  if (stack.queues.events) {
    out['queue:events'] = stack.resolve(stack.queues.events.queue.queueArn);
    out['queue:events-dlq'] = stack.resolve(stack.queues.events.dlq.queueArn);
  }
  return out;
}

/** Actions a role may have beyond its contract, on the resources `on` accepts (canonical JSON). */
type Extra = { actions: string[]; on: (resource: string) => boolean };
const onlyOn = (...resources: Json[]) => {
  const allowed = new Set(resources.map(canonical));
  return (resource: string) => allowed.has(resource);
};
const extraAllows = (extras: Extra[], a: Allowed) => extras.some((e) => e.actions.includes(a.action) && e.on(a.resource));

function byType(t: Json, type: string): Array<[string, Json]> {
  return Object.entries<Json>(t.Resources).filter(([, r]) => r.Type === type);
}

/** The pre-traffic probes (canary.ts): functions that name a canary bucket. */
function probes(t: Json): Array<[string, Json]> {
  return byType(t, 'AWS::Lambda::Function').filter(([, f]) => f.Properties.Environment?.Variables?.CANARY_BUCKET);
}

/**
 * Programs a stage runs only in some configurations (every other program runs in every stage):
 * yuba-serve is the delivery path's origin, and exists with it.
 */
const PRESENT: Record<string, (c: StageConfig) => boolean> = {
  'serve-lambda': (c) => c.delivery.enabled,
};

/**
 * The roles of the programs, by what they are attached to: the Lambda function that runs the
 * binary, or the task definition whose container runs it.
 */
function programRoles(t: Json, contract: Contract, c: StageConfig, problems: string[]): Map<string, string> {
  const roles = new Map<string, string>();
  for (const [name, p] of Object.entries(contract.programs)) {
    const found =
      p.home === 'lambda'
        ? byType(t, 'AWS::Lambda::Function')
            .filter(([, f]) => String(f.Properties.Description ?? '').startsWith(`yuba ${p.binary} `))
            .map(([, f]) => roleIdOf(f.Properties.Role))
        : byType(t, 'AWS::ECS::TaskDefinition')
            .filter(([, d]) => d.Properties.ContainerDefinitions.some((c: Json) => c.Command?.[0] === p.binary))
            .map(([, d]) => roleIdOf(d.Properties.TaskRoleArn));
    const expected = (PRESENT[name]?.(c) ?? true) ? 1 : 0;
    const roleId = found[0];
    if (found.length !== expected || (expected === 1 && !roleId)) {
      problems.push(`${name}: expected ${expected} ${p.home} home running ${p.binary}, found ${found.length}`);
    } else if (roleId) {
      roles.set(name, roleId);
    }
  }
  return roles;
}

/**
 * What the platform needs beyond the contract: for a program's role, what its home needs; for
 * any other role, all it may do, by what uses the role (undefined: nothing does). Each entry
 * says why.
 */
function platformNeeds(t: Json, roleId: string, home?: 'lambda' | 'fargate'): { extras: Extra[]; managed: string[] } | undefined {
  const extras: Extra[] = [];
  const managed: string[] = [];
  const refersTo = (arn: Json) => roleIdOf(arn) === roleId;
  const ownLogs = (f: Json) => extras.push({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], on: onlyOn(arnOf(f.Properties.LoggingConfig.LogGroup)) });
  if (home === 'lambda') {
    // A function writes its own logs, to the log group made for it (no AWSLambdaBasicExecutionRole,
    // which allows every group). Its metrics are EMF log lines: no cloudwatch:PutMetricData.
    const functions = byType(t, 'AWS::Lambda::Function').filter(([, f]) => refersTo(f.Properties.Role));
    functions.forEach(([, f]) => ownLogs(f));
    // The worker replicates the pre-traffic probes' objects (canary.ts) as it does a source's,
    // from the stack's canary bucket: those two keys only.
    for (const [, hook] of probes(t).filter(([, h]) => h.Properties.Environment.Variables.KIND === 'worker')) {
      if (!functions.some(([, f]) => String(f.Properties.Description).startsWith('yuba yuba-worker '))) continue;
      const bucket = arnOf(hook.Properties.Environment.Variables.CANARY_BUCKET);
      const objects = probes(t).map(([, p]) => ({ 'Fn::Join': ['', [bucket, `/${p.Properties.Environment.Variables.CANARY_KEY}`]] }));
      extras.push({ actions: ['s3:GetObject'], on: onlyOn(...objects) });
      extras.push({ actions: ['s3:ListBucket'], on: onlyOn(bucket) });
    }
    return { extras, managed };
  }
  if (home === 'fargate') {
    // Nothing: the awslogs driver writes with the execution role, and metrics are log lines.
    return { extras, managed };
  }
  let known = false;
  for (const [, d] of byType(t, 'AWS::ECS::TaskDefinition').filter(([, d]) => refersTo(d.Properties.ExecutionRoleArn))) {
    // A task execution role: ECS pulls the task's image from its repository, and sends the
    // containers' output to their log group. GetAuthorizationToken takes no resource but "*".
    known = true;
    const containers: Json[] = d.Properties.ContainerDefinitions;
    const images = canonical(containers.map((c) => c.Image));
    const ofTheImage = (resource: string) => {
      const repository = /:repository\/([^"]+)"/.exec(resource)?.[1];
      return repository !== undefined && (images.includes(`/${repository}@`) || images.includes(`/${repository}:`));
    };
    extras.push({ actions: ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer'], on: ofTheImage });
    extras.push({ actions: ['ecr:GetAuthorizationToken'], on: onlyOn('*') });
    const groups = containers.map((c) => c.LogConfiguration?.Options?.['awslogs-group']).filter(Boolean);
    extras.push({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], on: onlyOn(...groups.map(arnOf)) });
  }
  if (byType(t, 'AWS::CodeDeploy::DeploymentGroup').some(([, g]) => refersTo(g.Properties.ServiceRoleArn))) {
    // CodeDeploy shifts an alias's traffic and reads the alarms: AWS's managed policy for that;
    // and it runs the pre-traffic probes (any version of them).
    known = true;
    managed.push(':iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited"]]}');
    for (const [id] of probes(t)) {
      const arn = { 'Fn::GetAtt': [id, 'Arn'] };
      extras.push({ actions: ['lambda:InvokeFunction'], on: onlyOn(arn, { 'Fn::Join': ['', [arn, ':*']] }) });
    }
  }
  for (const [, hook] of probes(t).filter(([, h]) => refersTo(h.Properties.Role))) {
    // A pre-traffic probe: its own logs, the canary object it puts, the version it tries, and
    // its verdict to the deployment group that runs it.
    known = true;
    ownLogs(hook);
    const v = hook.Properties.Environment.Variables;
    extras.push({ actions: ['s3:PutObject'], on: onlyOn({ 'Fn::Join': ['', [arnOf(v.CANARY_BUCKET), `/${v.CANARY_KEY}`]] }) });
    extras.push({ actions: ['lambda:InvokeFunction'], on: onlyOn(v.TARGET) });
    const groups = byType(t, 'AWS::CodeDeploy::DeploymentGroup').map(([id]) => `"${id}"`);
    extras.push({ actions: ['codedeploy:PutLifecycleEventHookExecutionStatus'], on: (resource) => groups.some((g) => resource.includes(g)) });
  }
  for (const [, r] of byType(t, 'Custom::S3AutoDeleteObjects')) {
    // CDK's auto-delete handler empties a bucket the stack deletes (the canary bucket of a stage
    // that keeps no data); the bucket's policy lets it, and its logs take CDK's managed policy.
    const handler = Object.entries<Json>(t.Resources).find(([id]) => canonical(r.Properties.ServiceToken).includes(`"${id}"`))?.[1];
    if (!handler || !refersTo(handler.Properties.Role)) continue;
    known = true;
    managed.push(':iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}');
  }
  for (const [, n] of byType(t, 'Custom::S3BucketNotifications')) {
    // CDK's bucket-notifications handler (a custom resource) writes the source bucket's
    // notification configuration, and its logs with CDK's choice of managed policy.
    const handler = t.Resources[roleIdOf(n.Properties.ServiceToken) ?? ''];
    if (!handler || !refersTo(handler.Properties.Role)) continue;
    known = true;
    managed.push(':iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]]}');
    const bucket = n.Properties.BucketName;
    const arn = typeof bucket === 'string' ? { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:s3:::${bucket}`]] } : arnOf(bucket);
    extras.push({ actions: ['s3:GetBucketNotification', 's3:PutBucketNotification'], on: onlyOn(arn) });
  }
  for (const [, f] of byType(t, 'AWS::EC2::FlowLog').filter(([, f]) => refersTo(f.Properties.DeliverLogsPermissionArn))) {
    // VPC flow logs deliver to their own log group.
    known = true;
    extras.push({ actions: ['logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents'], on: onlyOn(arnOf(f.Properties.LogGroupName)) });
  }
  const runsTask = (taskDefinition: Json, on: Extra['on']) => {
    // Starting the reconciler's task hands ECS the task's two roles.
    const d = t.Resources[taskDefinition.Ref].Properties;
    extras.push({ actions: ['ecs:RunTask'], on });
    extras.push({ actions: ['iam:PassRole'], on: onlyOn(d.TaskRoleArn, d.ExecutionRoleArn) });
  };
  for (const [, s] of byType(t, 'AWS::Scheduler::Schedule').filter(([, s]) => refersTo(s.Properties.Target.RoleArn))) {
    // EventBridge Scheduler starts the reconciler's task, or a sharded run's execution.
    known = true;
    const ecsTarget = s.Properties.Target.EcsParameters;
    if (ecsTarget) runsTask(ecsTarget.TaskDefinitionArn, onlyOn(ecsTarget.TaskDefinitionArn));
    else extras.push({ actions: ['states:StartExecution'], on: onlyOn(s.Properties.Target.Arn) });
  }
  if (byType(t, 'AWS::StepFunctions::StateMachine').some(([, m]) => refersTo(m.Properties.RoleArn))) {
    // A sharded run's state machine (lib/reconcile-fanout.ts) runs the reconciler's task and
    // waits for it (.sync: ECS's task events through Step Functions' own rule, DescribeTasks,
    // StopTask on a timeout), and delivers its logs and traces, APIs that take no resource.
    known = true;
    const [definition] = byType(t, 'AWS::ECS::TaskDefinition').filter(([, d]) => d.Properties.Family.endsWith('-reconciler'));
    const taskDefinition = { Ref: definition[0] };
    runsTask(taskDefinition, (resource) => resource.includes(canonical(taskDefinition)) && resource.endsWith(':*"]]}'));
    extras.push({
      actions: ['ecs:DescribeTasks', 'ecs:StopTask', 'logs:CreateLogDelivery', 'logs:DeleteLogDelivery', 'logs:DescribeLogGroups', 'logs:DescribeResourcePolicies', 'logs:GetLogDelivery', 'logs:ListLogDeliveries', 'logs:PutResourcePolicy', 'logs:UpdateLogDelivery', 'xray:GetSamplingRules', 'xray:GetSamplingTargets', 'xray:PutTelemetryRecords', 'xray:PutTraceSegments'],
      on: onlyOn('*'),
    });
    extras.push({ actions: ['events:DescribeRule', 'events:PutRule', 'events:PutTargets'], on: (resource) => resource.endsWith(':rule/StepFunctionsGetEventsForECSTaskRule"]]}') });
  }
  return known ? { extras, managed } : undefined;
}

/** Everything wrong between the template's roles and the contract; empty when they agree. */
function check(t: Json, stack: YubaStack, c: StageConfig, contract: Contract = CONTRACT): string[] {
  const problems: string[] = [];
  for (const name of Object.keys(contract.conditions)) {
    if (!CONDITIONS[name]) problems.push(`the contract's condition ${name} has no meaning here: add it to CONDITIONS`);
  }
  const tokens = resourceTokens(stack, c);
  const label = (resource: string) => Object.entries(tokens).find(([, v]) => canonical(v) === resource)?.[0] ?? resource;
  const roles = programRoles(t, contract, c, problems);
  for (const [name, program] of Object.entries(contract.programs)) {
    const roleId = roles.get(name);
    if (!roleId) continue;
    const roleName = t.Resources[roleId].Properties.RoleName;
    const expectedName = program.role === null ? undefined : `${c.prefix}-${program.role}`;
    if (roleName !== expectedName) problems.push(`${name}: its role is named ${roleName ?? '(generated)'}, the contract says ${expectedName ?? '(generated)'}`);

    const { allowed, managed } = grantsOf(t, roleId, problems);
    const active = program.permissions.filter((g) => g.when.every((w) => CONDITIONS[w]?.(c)));
    const needed = new Set<string>();
    for (const g of active) {
      if (!(g.resource in tokens)) {
        problems.push(`${name}: needs ${g.action} on ${g.resource}, which this stack does not have`);
        continue;
      }
      const resource = canonical(tokens[g.resource]);
      needed.add(`${g.action} ${resource}`);
      const ok = allowed.some(
        (a) =>
          actionAllows(a.action, g.action) &&
          (a.resource === resource || a.resource === '"*"') &&
          (a.condition === undefined || acceptsCondition(g.action, g.resource, a.condition)),
      );
      const when = g.when.length ? ` (${g.when.join(', ')})` : '';
      if (!ok) problems.push(`${name}: needs ${g.action} on ${g.resource}${when}, which its role ${roleId} does not allow`);
    }
    const extras = platformNeeds(t, roleId, program.home)?.extras ?? [];
    for (const a of allowed) {
      if (!needed.has(`${a.action} ${a.resource}`) && !extraAllows(extras, a)) problems.push(`${name}: its role ${roleId} grants ${a.action} on ${label(a.resource)}, which the contract does not list`);
    }
    for (const m of managed) problems.push(`${name}: its role ${roleId} has the managed policy ${m}`);
  }
  const programRoleIds = new Set(roles.values());
  for (const [roleId] of byType(t, 'AWS::IAM::Role')) {
    if (programRoleIds.has(roleId)) continue;
    const platform = platformNeeds(t, roleId);
    if (!platform) {
      problems.push(`role ${roleId} runs no program of the contract and is no known platform role`);
      continue;
    }
    const { allowed, managed } = grantsOf(t, roleId, problems);
    for (const a of allowed) {
      if (!extraAllows(platform.extras, a)) problems.push(`platform role ${roleId} grants ${a.action} on ${label(a.resource)}, beyond what it is listed for`);
    }
    for (const m of managed) {
      if (!platform.managed.some((suffix) => m.endsWith(suffix))) problems.push(`platform role ${roleId} has the managed policy ${m}, which it is not listed for`);
    }
  }
  return problems;
}

const KEY = 'arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555';
const INVENTORY = { bucket: 'yuba-prod-inventories', folder: 'reports/yuba-prod-images/daily/', storageGiB: 100 };
const VARIANTS: Array<[string, StageName, Overrides<StageConfig>]> = [
  ['prod (versioned, events queue)', 'prod', {}],
  ['dev (unversioned, events queue)', 'dev', {}],
  ['dev, SSE-KMS source', 'dev', { source: { kmsKeyArn: KEY } }],
  ["dev, notifications 'direct'", 'dev', { notifications: 'direct' }],
  ["dev, notifications 'eventbridge'", 'dev', { notifications: 'eventbridge' }],
  ['dev, a bucket the app creates (versioned)', 'dev', { source: { mode: 'create' } }],
  ["prod, SSE-KMS source, notifications 'direct'", 'prod', { source: { kmsKeyArn: KEY }, notifications: 'direct' }],
  ['prod, a source inventory', 'prod', { reconciler: { sourceInventory: INVENTORY } }],
  ['prod, sharded over a source inventory', 'prod', { reconciler: { sourceInventory: INVENTORY, shards: 16 } }],
];

const synthesized = new Map<string, ReturnType<typeof synth>>();
function variant(name: string): ReturnType<typeof synth> {
  const [, stage, overrides] = VARIANTS.find(([n]) => n === name)!;
  if (!synthesized.has(name)) synthesized.set(name, synth(stage, overrides));
  return synthesized.get(name)!;
}
const copy = (v: unknown): Json => JSON.parse(JSON.stringify(v));

describe('every role against the contract', () => {
  test.each(VARIANTS.map(([name]) => [name]))('%s', (name) => {
    const { template, stack, config } = variant(name);
    expect(check(template.toJSON(), stack, config)).toEqual([]);
  });

  test('every condition of the contract holds in some variant and not in another', () => {
    for (const name of Object.keys(CONTRACT.conditions)) {
      const holds = VARIANTS.map(([v]) => CONDITIONS[name](variant(v).config));
      expect({ name, holds: holds.includes(true), fails: holds.includes(false) }).toEqual({ name, holds: true, fails: true });
    }
    expect(Object.keys(CONDITIONS).sort()).toEqual(Object.keys(CONTRACT.conditions).sort());
  });

  test("resource names resolve to the template's ARNs", () => {
    const { template, stack, config } = variant('prod (versioned, events queue)');
    const t = template.toJSON();
    const tokens = resourceTokens(stack, config);
    const configured = ['source-key', 'inventory-bucket', 'inventory-reports', 'reconcile-plans', 'reconcile-plans-bucket'];
    expect(Object.keys(tokens).sort()).toEqual(Object.keys(CONTRACT.resources).filter((r) => !configured.includes(r)).sort());
    expect(tokens['source-bucket']).toEqual({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::yuba-prod-images']] });
    expect(tokens['source-objects']).toEqual({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::yuba-prod-images/*']] });
    for (const [name, queue] of [['queue:events', 'yuba-prod-events'], ['queue:events-dlq', 'yuba-prod-events-dlq'], ['queue:lambda-work', 'yuba-prod-work-lambda'], ['queue:fargate-work', 'yuba-prod-work-fargate']]) {
      const id = roleIdOf(tokens[name]);
      expect(t.Resources[id!].Properties.QueueName).toBe(queue);
    }
    expect(resourceTokens(variant('dev, SSE-KMS source').stack, variant('dev, SSE-KMS source').config)['source-key']).toBe(KEY);
    expect(resourceTokens(variant('prod, a source inventory').stack, variant('prod, a source inventory').config)['inventory-reports']).toEqual({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::yuba-prod-inventories/reports/yuba-prod-images/daily/*']],
    });
    const cluster = byType(t, 'AWS::ECS::Cluster').find(([, r]) => r.Properties.ClusterName === 'yuba-prod')![0];
    expect(tokens['cluster-tasks']).toEqual({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:ecs:${stack.region}:${stack.account}:task/`, { Ref: cluster }, '/*']],
    });
  });
});

describe('the check fails on broken copies', () => {
  const prod = () => variant('prod (versioned, events queue)');
  const policyOf = (t: Json, roleName: string): Json => {
    const [roleId] = byType(t, 'AWS::IAM::Role').find(([, r]) => r.Properties.RoleName === roleName)!;
    return byType(t, 'AWS::IAM::Policy').find(([, p]) => list<Json>(p.Properties.Roles).some((r) => r.Ref === roleId))![1].Properties.PolicyDocument;
  };

  test('a role without a grant its program needs', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    const document = policyOf(t, 'yuba-prod-worker-task');
    document.Statement = document.Statement.filter((s: Json) => s.Sid !== 'ListSource');
    expect(check(t, stack, config)).toEqual([
      expect.stringMatching(/^worker-task: needs s3:ListBucket on source-bucket, which its role \w+ does not allow$/),
    ]);
  });

  test('a role without a conditional grant whose condition holds (prod is versioned)', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    const read = policyOf(t, 'yuba-prod-worker-lambda').Statement.find((s: Json) => s.Sid === 'ReadSourceObjects');
    read.Action = 's3:GetObject';
    expect(check(t, stack, config)).toEqual([expect.stringMatching(/^worker-lambda: needs s3:GetObjectVersion on source-objects \(versioned-source\)/)]);
  });

  test("a source inventory's grants: missing, or a listing narrowed where the contract needs it whole", () => {
    const { template, stack, config } = variant('prod, a source inventory');
    const t = copy(template.toJSON());
    const document = policyOf(t, 'yuba-prod-reconciler-task');
    document.Statement = document.Statement.filter((s: Json) => s.Sid !== 'ReadInventoryReports');
    expect(check(t, stack, config)).toEqual([
      expect.stringMatching(/^reconciler-task: needs s3:GetObject on inventory-reports \(source-inventory\), which its role \w+ does not allow$/),
    ]);
    // The prefix condition is accepted on the inventory's bucket only, not on the source's.
    const narrowed = copy(template.toJSON());
    const list = policyOf(narrowed, 'yuba-prod-reconciler-task').Statement.find((s: Json) => s.Action === 's3:ListBucket' && !s.Condition);
    list.Condition = { StringLike: { 's3:prefix': ['photos/*'] } };
    expect(check(narrowed, stack, config)).toEqual([expect.stringMatching(/^reconciler-task: needs s3:ListBucket on source-bucket, which its role \w+ does not allow$/)]);
  });

  test("a sharded run's plans: a role that cannot write them", () => {
    const { template, stack, config } = variant('prod, sharded over a source inventory');
    const t = copy(template.toJSON());
    const document = policyOf(t, 'yuba-prod-reconciler-task');
    document.Statement = document.Statement.filter((s: Json) => s.Sid !== 'KeepReconcilePlans');
    expect(check(t, stack, config)).toEqual([
      expect.stringMatching(/^reconciler-task: needs s3:GetObject on reconcile-plans \(sharded-reconcile\), which its role \w+ does not allow$/),
      expect.stringMatching(/^reconciler-task: needs s3:PutObject on reconcile-plans \(sharded-reconcile\), which its role \w+ does not allow$/),
    ]);
  });

  test('a grant the contract does not list', () => {
    const { template, stack, config } = prod();
    const contract = copy(CONTRACT) as Contract;
    const worker = contract.programs['worker-task'];
    worker.permissions = worker.permissions.filter((g) => g.action !== 's3:ListBucket');
    expect(check(template.toJSON(), stack, config, contract)).toEqual([
      expect.stringMatching(/^worker-task: its role \w+ grants s3:ListBucket on source-bucket, which the contract does not list$/),
    ]);
  });

  test('a conditional grant whose condition does not hold (dev is unversioned)', () => {
    const { template, stack, config } = variant('dev (unversioned, events queue)');
    const t = copy(template.toJSON());
    const read = policyOf(t, 'yuba-dev-worker-task').Statement.find((s: Json) => s.Sid === 'ReadSourceObjects');
    read.Action = ['s3:GetObject', 's3:GetObjectVersion'];
    expect(check(t, stack, config)).toEqual([expect.stringMatching(/^worker-task: its role \w+ grants s3:GetObjectVersion on source-objects, which the contract does not list$/)]);
  });

  test('a Fargate worker that cannot protect its task from scale-in', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    const document = policyOf(t, 'yuba-prod-worker-task');
    document.Statement = document.Statement.filter((s: Json) => s.Sid !== 'ProtectOwnTaskFromScaleIn');
    expect(check(t, stack, config)).toEqual([
      expect.stringMatching(/^worker-task: needs ecs:UpdateTaskProtection on cluster-tasks, which its role \w+ does not allow$/),
    ]);
  });

  test('task protection granted on every task of the account', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    const statement = policyOf(t, 'yuba-prod-worker-task').Statement.find((s: Json) => s.Sid === 'ProtectOwnTaskFromScaleIn');
    statement.Resource = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ecs:*:*:task/*']] };
    expect(check(t, stack, config)).toEqual([
      expect.stringMatching(/^worker-task: needs ecs:UpdateTaskProtection on cluster-tasks, which its role \w+ does not allow$/),
      expect.stringMatching(/^worker-task: its role \w+ grants ecs:UpdateTaskProtection on .*task\/\*.*, which the contract does not list$/),
    ]);
  });

  test('a grant on a resource the contract does not name for it', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    const lambdaQueue = resourceTokens(stack, config)['queue:lambda-work'];
    policyOf(t, 'yuba-prod-worker-task').Statement.push({ Effect: 'Allow', Action: 'sqs:ReceiveMessage', Resource: lambdaQueue });
    expect(check(t, stack, config)).toEqual([expect.stringMatching(/grants sqs:ReceiveMessage on queue:lambda-work, which the contract does not list$/)]);
  });

  test('a stage with the delivery path but no yuba-serve, and one without it that runs yuba-serve', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    const [serveId] = byType(t, 'AWS::Lambda::Function').find(([, f]) => String(f.Properties.Description).startsWith('yuba yuba-serve '))!;
    t.Resources[serveId].Properties.Description = 'yuba something-else (prod)';
    expect(check(t, stack, config)).toEqual(expect.arrayContaining(['serve-lambda: expected 1 lambda home running yuba-serve, found 0']));
    const dev = variant('dev (unversioned, events queue)');
    const u = copy(dev.template.toJSON());
    u.Resources.Stray = copy(template.toJSON().Resources[serveId]);
    expect(check(u, dev.stack, dev.config)).toEqual(expect.arrayContaining(['serve-lambda: expected 0 lambda home running yuba-serve, found 1']));
  });

  test('a program role named otherwise than the contract says', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    const [, role] = byType(t, 'AWS::IAM::Role').find(([, r]) => r.Properties.RoleName === 'yuba-prod-reconciler-task')!;
    role.Properties.RoleName = 'yuba-prod-reconciler';
    expect(check(t, stack, config)).toEqual(['reconciler-task: its role is named yuba-prod-reconciler, the contract says yuba-prod-reconciler-task']);
  });

  test('a pre-traffic probe that may write more than its one canary object, or invoke more than the new version', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    const [, hook] = probes(t).find(([, h]) => h.Properties.Environment.Variables.KIND === 'worker')!;
    const roleId = roleIdOf(hook.Properties.Role)!;
    const [, policy] = byType(t, 'AWS::IAM::Policy').find(([, p]) => list<Json>(p.Properties.Roles).some((r) => r.Ref === roleId))!;
    const bucket = arnOf(hook.Properties.Environment.Variables.CANARY_BUCKET);
    policy.Properties.PolicyDocument.Statement.push(
      { Effect: 'Allow', Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [bucket, '/*']] } },
      { Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: '*' },
    );
    expect(check(t, stack, config).sort()).toEqual([
      expect.stringMatching(new RegExp(`^platform role ${roleId} grants lambda:InvokeFunction on "\\*", beyond`)),
      expect.stringMatching(new RegExp(`^platform role ${roleId} grants s3:PutObject on .*/\\*.*, beyond`)),
    ]);
  });

  test('a role nothing accounts for, and a platform role that may do more than it is listed for', () => {
    const { template, stack, config } = prod();
    const t = copy(template.toJSON());
    t.Resources.Stray = { Type: 'AWS::IAM::Role', Properties: { AssumeRolePolicyDocument: {} } };
    const [schedulerRole] = byType(t, 'AWS::IAM::Role').find(([, r]) => r.Properties.AssumeRolePolicyDocument.Statement?.[0]?.Principal?.Service === 'scheduler.amazonaws.com')!;
    const [, schedulerPolicy] = byType(t, 'AWS::IAM::Policy').find(([, p]) => list<Json>(p.Properties.Roles).some((r) => r.Ref === schedulerRole))!;
    schedulerPolicy.Properties.PolicyDocument.Statement.push({ Effect: 'Allow', Action: 's3:GetObject', Resource: resourceTokens(stack, config)['source-objects'] });
    expect(check(t, stack, config).sort()).toEqual([
      expect.stringMatching(/^platform role \w+ grants s3:GetObject on source-objects, beyond what it is listed for$/),
      'role Stray runs no program of the contract and is no known platform role',
    ]);
  });
});
