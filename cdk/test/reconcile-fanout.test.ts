/**
 * The sharded run's state machine (lib/reconcile-fanout.ts) as it would run: each step's branch of
 * the synthesized definition is walked with its ECS Task ending every way it can, so the verdict
 * is the exit code's whichever way AWS ends a `.sync` Task whose container exited non-zero (the
 * Task succeeds and outputs the stopped task, or it fails with States.TaskFailed and the stopped
 * task as its Cause); and a step is retried alone except for the merge's verdict.
 *
 * The walker knows only the states and Choice operators the definition uses, and throws on
 * anything else, so a change of shape fails here rather than passing unjudged. A comparison on a
 * missing or mistyped field throws too: in Step Functions it fails the execution
 * (https://docs.aws.amazon.com/step-functions/latest/dg/state-choice.html), so the guards before
 * it must route such an input away.
 */
import { DRIFT_LEFT, STEP_ATTEMPTS, STEP_FAILED } from '../lib/reconcile-fanout';
import { synth } from './helpers';

type Json = any;

const INVENTORY = { bucket: 'yuba-prod-inventories', folder: 'reports/yuba-prod-images/daily/', storageGiB: 100 };
const SHARDS = 4;
const sharded = synth('prod', { reconciler: { sourceInventory: INVENTORY, shards: SHARDS } }).template.toJSON();
const single = synth('prod', { reconciler: { sourceInventory: INVENTORY } }).template.toJSON();

const resourcesOf = (t: Json, type: string): Array<[string, Json]> => Object.entries<Json>(t.Resources).filter(([, r]) => r.Type === type);

/** The state machine's definition, each CloudFormation token in it a placeholder `TOKEN#i` (`tokens[i]`). */
function definitionOf(t: Json): { definition: Json; tokens: Json[] } {
  const [[, machine]] = resourcesOf(t, 'AWS::StepFunctions::StateMachine');
  const tokens: Json[] = [];
  const text = machine.Properties.DefinitionString['Fn::Join'][1]
    .map((part: Json) => (typeof part === 'string' ? part : `TOKEN#${tokens.push(part) - 1}`))
    .join('');
  return { definition: JSON.parse(text), tokens };
}
const { definition, tokens } = definitionOf(sharded);
const token = (placeholder: string) => tokens[Number(/^TOKEN#(\d+)$/.exec(placeholder)![1])];

/** The value at a path of the subset the definition uses: `$`, then `.name` and `[index]`. */
function read(doc: Json, path: string): unknown {
  const rest = path.slice(1);
  const parts = rest.match(/\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]/g) ?? [];
  if (!path.startsWith('$') || parts.join('') !== rest) throw new Error(`a path the walker does not read: ${path}`);
  let value = doc;
  for (const part of parts) {
    if (value === null || typeof value !== 'object') return undefined;
    value = part.startsWith('[') ? (Array.isArray(value) ? value[Number(part.slice(1, -1))] : undefined) : value[part.slice(1)];
  }
  return value;
}

/** A StringMatches pattern: `*` matches any run of characters (the definition escapes none). */
function wildcard(pattern: string): RegExp {
  if (pattern.includes('\\')) throw new Error(`an escaped pattern the walker does not read: ${pattern}`);
  return new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
}

function matches(rule: Json, input: Json): boolean {
  if ('Not' in rule) return !matches(rule.Not, input);
  const value = read(input, rule.Variable);
  if ('IsPresent' in rule) return (value !== undefined) === rule.IsPresent;
  if ('IsNumeric' in rule) return (typeof value === 'number') === rule.IsNumeric;
  if ('IsString' in rule) return (typeof value === 'string') === rule.IsString;
  if ('NumericEquals' in rule) {
    if (typeof value !== 'number') throw new Error(`States.Runtime: NumericEquals on ${rule.Variable} = ${JSON.stringify(value)}`);
    return value === rule.NumericEquals;
  }
  if ('StringMatches' in rule) {
    if (typeof value !== 'string') throw new Error(`States.Runtime: StringMatches on ${rule.Variable} = ${JSON.stringify(value)}`);
    return wildcard(rule.StringMatches).test(value);
  }
  throw new Error(`a Choice rule the walker does not know: ${JSON.stringify(rule)}`);
}

/** A Pass state's Parameters: literals, paths, and States.StringToJson of a path. */
function payload(parameters: Json, input: Json): Json {
  const out: Json = {};
  for (const [key, value] of Object.entries<Json>(parameters)) {
    if (!key.endsWith('.$')) {
      out[key] = value;
      continue;
    }
    const parse = /^States\.StringToJson\((\$[^)]*)\)$/.exec(value);
    // JSON.parse throws on a Cause that is no JSON, as the intrinsic fails the execution.
    out[key.slice(0, -2)] = parse ? JSON.parse(read(input, parse[1]) as string) : read(input, value);
  }
  return out;
}

/** How a step's ECS Task ends: with its output (the stopped task), or failed with an error. */
type Outcome = { output: Json } | { error: string; cause?: string };
type End = { succeeded: true } | { failed: string };

/** Walks a one-branch Parallel (a step) from its input, its Task ending as `outcome`. */
function run(step: Json, input: Json, outcome: Outcome): End {
  expect(step.Type).toBe('Parallel');
  expect(step.Branches).toHaveLength(1);
  const { StartAt, States } = step.Branches[0];
  let name: string = StartAt;
  let doc = input;
  let tasks = 0;
  for (let transitions = 0; transitions < 20; transitions++) {
    const s = States[name];
    switch (s.Type) {
      case 'Task': {
        if (++tasks > 1) throw new Error(`the Task ${name} ran twice in one attempt`);
        if ('output' in outcome) {
          if (s.ResultPath !== undefined || s.OutputPath !== undefined || s.ResultSelector !== undefined) throw new Error(`${name}: output processing the walker does not follow`);
          doc = outcome.output;
          name = s.Next;
          break;
        }
        const catcher = (s.Catch ?? []).find((c: Json) => c.ErrorEquals.includes('States.ALL') || c.ErrorEquals.includes(outcome.error));
        if (!catcher) return { failed: outcome.error };
        const at = /^\$\.([A-Za-z_]+)$/.exec(catcher.ResultPath);
        if (!at) throw new Error(`${name}: a Catch ResultPath the walker does not follow: ${catcher.ResultPath}`);
        doc = { ...doc, [at[1]]: { Error: outcome.error, ...(outcome.cause === undefined ? {} : { Cause: outcome.cause }) } };
        name = catcher.Next;
        break;
      }
      case 'Choice': {
        const next = s.Choices.find((rule: Json) => matches(rule, doc))?.Next ?? s.Default;
        if (next === undefined) throw new Error(`States.NoChoiceMatched in ${name}`);
        name = next;
        break;
      }
      case 'Pass':
        if (s.Parameters) doc = payload(s.Parameters, doc);
        if (s.OutputPath) doc = read(doc, s.OutputPath);
        name = s.Next;
        break;
      case 'Succeed':
        return { succeeded: true };
      case 'Fail':
        return { failed: s.Error };
      default:
        throw new Error(`a ${s.Type} state the walker does not know: ${name}`);
    }
  }
  throw new Error('the branch never ended');
}

/** Whether the step (its Parallel) retries an error it failed with. */
const retries = (step: Json, error: string) => (step.Retry ?? []).some((r: Json) => r.ErrorEquals.includes(error) || r.ErrorEquals.includes('States.ALL'));

/** A stopped task as RunTask .sync gives it (ECS DescribeTasks' task, in PascalCase), trimmed. */
function stoppedTask(exitCode?: number): Json {
  const ran = exitCode !== undefined;
  return {
    LastStatus: 'STOPPED',
    StartedBy: 'AWS Step Functions',
    StopCode: ran ? 'EssentialContainerExited' : 'TaskFailedToStart',
    StoppedReason: ran ? 'Essential container in task exited' : 'CannotPullContainerError: ...',
    Containers: [{ Name: 'reconciler', LastStatus: 'STOPPED', ...(ran ? { ExitCode: exitCode } : {}) }],
  };
}

/** Both ways AWS may end the Task of a container that stopped with `exitCode`. */
const endings = (exitCode?: number): Array<[string, Outcome]> => [
  ['the Task succeeds', { output: stoppedTask(exitCode) }],
  ['the Task fails with the task as its Cause', { error: 'States.TaskFailed', cause: JSON.stringify(stoppedTask(exitCode)) }],
];

const shardStep = definition.States.Shards.ItemProcessor.States.Shard;
const steps: Array<[string, Json, Json, boolean]> = [
  ['Plan', definition.States.Plan, { plan: 's3://plans/runs/x/', shards: ['1/4', '2/4', '3/4', '4/4'] }, false],
  ['Shard', shardStep, { shard: '2/4', plan: 's3://plans/runs/x/' }, false],
  ['Merge', definition.States.Merge, { plan: 's3://plans/runs/x/', shards: ['1/4', '2/4', '3/4', '4/4'] }, true],
];

describe.each(steps)('the %s step', (_name, step, input, verdict) => {
  test.each(endings(0))('exit 0 succeeds when %s', (_how, outcome) => {
    expect(run(step, input, outcome)).toEqual({ succeeded: true });
  });

  test.each(endings(1))(`exit 1 ${verdict ? 'is the verdict, drift left' : 'is a failed step'} when %s`, (_how, outcome) => {
    expect(run(step, input, outcome)).toEqual({ failed: verdict ? DRIFT_LEFT : STEP_FAILED });
  });

  test.each([...endings(2), ...endings(130), ...endings(undefined)])('an error, an interruption or a task that never ran is a failed step when %s', (_how, outcome) => {
    expect(run(step, input, outcome)).toEqual({ failed: STEP_FAILED });
  });

  test.each<[string, Outcome]>([
    ["RunTask's own Failures", { error: 'AmazonECS.Unknown', cause: 'RESOURCE:ENI' }],
    ['a refused call', { error: 'ECS.AmazonECSException', cause: 'Rate exceeded' }],
    ['a Cause that is no task', { error: 'States.TaskFailed', cause: '{"Failures":[{"Reason":"MISSING"}]}' }],
    ['no Cause at all', { error: 'States.TaskFailed' }],
  ])('%s is a failed step', (_how, outcome) => {
    expect(run(step, input, outcome)).toEqual({ failed: STEP_FAILED });
  });

  test(`a failed step is retried alone (${STEP_ATTEMPTS} attempts in all), ${verdict ? 'the verdict is not' : 'from its own input'}`, () => {
    expect(retries(step, STEP_FAILED)).toBe(true);
    expect(step.Retry).toEqual([expect.objectContaining({ MaxAttempts: STEP_ATTEMPTS - 1 })]);
    expect(retries(step, DRIFT_LEFT)).toBe(false);
    // The step keeps its input for the next one (and for its own retry).
    expect(step.ResultPath).toBeNull();
  });
});

describe('the run', () => {
  test('plan, the shards at once, merge; one shard per item, "1/N".."N/N"', () => {
    expect(definition.StartAt).toBe('Prepare');
    const order: string[] = [];
    for (let name: string | undefined = definition.StartAt; name; name = definition.States[name].Next) order.push(name);
    expect(order).toEqual(['Prepare', 'Plan', 'Shards', 'Merge']);
    expect(definition.States.Merge.End).toBe(true);
    expect(definition.States.Prepare.Parameters.shards).toEqual(['1/4', '2/4', '3/4', '4/4']);
    const shards = definition.States.Shards;
    expect(shards.ItemsPath).toBe('$.shards');
    expect(shards.MaxConcurrency).toBe(SHARDS);
    expect(shards.ResultPath).toBeNull();
    // An item's input: its shard and the run's plan folder.
    expect(shards.ItemSelector).toEqual({ 'shard.$': '$$.Map.Item.Value', 'plan.$': '$.plan' });
  });

  test("each run's plan folder is named after its execution, in the stack's plans bucket", () => {
    const [[plansId]] = resourcesOf(sharded, 'AWS::S3::Bucket').filter(([, b]) => b.Properties.LoggingConfiguration?.LogFilePrefix === 'reconcile-plans/');
    const format = /^States\.Format\('s3:\/\/(TOKEN#\d+)\/runs\/\{\}\/', \$\$\.Execution\.Name\)$/.exec(definition.States.Prepare.Parameters['plan.$']);
    expect(format).not.toBeNull();
    expect(token(format![1])).toEqual({ Ref: plansId });
  });

  test.each(['dev', 'prod'] as const)(
    '%s: the tasks run as the single task does: its task definition (one container, the reconciler), cluster, subnets, security group, public IP, on-demand FARGATE',
    (stage) => {
      const oneTask = stage === 'prod' ? single : synth(stage, { reconciler: { sourceInventory: INVENTORY } }).template.toJSON();
      const inShards = stage === 'prod' ? { definition, tokens } : definitionOf(synth(stage, { reconciler: { sourceInventory: INVENTORY, shards: SHARDS } }).template.toJSON());
      const tokenOf = (placeholder: string) => inShards.tokens[Number(/^TOKEN#(\d+)$/.exec(placeholder)![1])];
      const [[, schedule]] = resourcesOf(oneTask, 'AWS::Scheduler::Schedule');
      const today = schedule.Properties.Target.EcsParameters;
      const d = inShards.definition;
      for (const step of [d.States.Plan, d.States.Shards.ItemProcessor.States.Shard, d.States.Merge]) {
        const { StartAt, States } = step.Branches[0];
        const p = States[StartAt].Parameters;
        expect(States[StartAt].Resource).toMatch(/:states:::ecs:runTask\.sync$/);
        expect(p.TaskDefinition).toBe(`yuba-${stage}-reconciler`);
        expect(tokenOf(p.Cluster)).toEqual(schedule.Properties.Target.Arn);
        const vpc = p.NetworkConfiguration.AwsvpcConfiguration;
        expect(vpc.Subnets.map(tokenOf)).toEqual(today.NetworkConfiguration.AwsvpcConfiguration.Subnets);
        expect(vpc.SecurityGroups.map(tokenOf)).toEqual(today.NetworkConfiguration.AwsvpcConfiguration.SecurityGroups);
        // CDK leaves out a public IP it does not assign; RunTask's default is DISABLED
        // (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_AwsVpcConfiguration.html).
        // dev's tasks run in public subnets without NAT and need one to reach ECR and the queues.
        expect(vpc.AssignPublicIp ?? 'DISABLED').toBe(today.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp);
        expect(p.CapacityProviderStrategy).toEqual([{ CapacityProvider: 'FARGATE', Weight: 1 }]);
        expect(p.LaunchType).toBeUndefined();
        expect(p.Overrides.ContainerOverrides.map((o: Json) => o.Name)).toEqual(['reconciler']);
      }
    },
  );

  test("Containers[0] of a stopped task is the reconciler's: its task definition has no other container", () => {
    const [[, taskDefinition]] = resourcesOf(sharded, 'AWS::ECS::TaskDefinition').filter(([, d]) => d.Properties.Family === 'yuba-prod-reconciler');
    expect(taskDefinition.Properties.ContainerDefinitions.map((c: Json) => c.Name)).toEqual(['reconciler']);
  });

  test('only the plan reads the inventory: no shard is given YUBA_RECONCILE_SOURCE_INVENTORY or YUBA_RECONCILE_PREFIX', () => {
    const environmentOf = (step: Json) => {
      const { StartAt, States } = step.Branches[0];
      return Object.fromEntries(States[StartAt].Parameters.Overrides.ContainerOverrides[0].Environment.map((e: Json) => [e.Name, e.Value ?? e['Value.$']]));
    };
    expect(environmentOf(definition.States.Plan)).toEqual({
      YUBA_RECONCILE_PLAN: '$.plan',
      YUBA_RECONCILE_SOURCE_INVENTORY: `s3://${INVENTORY.bucket}/${INVENTORY.folder}`,
    });
    expect(environmentOf(shardStep)).toEqual({ YUBA_RECONCILE_PLAN: '$.plan', YUBA_RECONCILE_SHARD: '$.shard' });
    expect(environmentOf(definition.States.Merge)).toEqual({ YUBA_RECONCILE_PLAN: '$.plan' });
    const [[, taskDefinition]] = resourcesOf(sharded, 'AWS::ECS::TaskDefinition').filter(([, d]) => d.Properties.Family === 'yuba-prod-reconciler');
    const names = taskDefinition.Properties.ContainerDefinitions[0].Environment.map((e: Json) => e.Name);
    expect(names).not.toContain('YUBA_RECONCILE_SOURCE_INVENTORY');
    expect(names).not.toContain('YUBA_RECONCILE_PREFIX');
    // The plan still sorts the report on the task's ephemeral storage.
    expect(names).toContain('YUBA_RECONCILE_INVENTORY_SPILL_DIR');
  });
});
