/**
 * Every environment the app gives a yuba program holds only variables that program reads where it
 * runs: the contract lib/generated/settings.json, rendered from the Rust catalog of settings
 * (libs/startup/src/catalog.rs). No emulator sees a misspelt or misplaced variable: the program
 * starts with its default and the setting is lost without a word.
 */
import { SETTINGS, SettingsContract, settingProblem } from '../lib/settings';
import { stageConfig } from '../lib/config';
import { synth } from './helpers';

/** One environment a template gives a program: where, which executable, on Lambda or not. */
interface Environment {
  where: string;
  program: string;
  onLambda: boolean;
  names: string[];
}

/**
 * The yuba programs' environments: Lambda functions running a yuba binary (their description
 * names it: `yuba yuba-worker (dev)`), ECS containers whose command starts with one, and the
 * container overrides a state machine's ECS tasks run one with (a sharded reconcile's steps,
 * lib/reconcile-fanout.ts), which add to the container's own environment.
 */
function environments(template: any): Environment[] {
  const out: Environment[] = [];
  for (const [id, r] of Object.entries<any>(template.Resources)) {
    const p = r.Properties ?? {};
    if (r.Type === 'AWS::Lambda::Function' && p.Handler === 'bootstrap') {
      const program = /^yuba (yuba-[a-z]+) /.exec(p.Description ?? '')?.[1];
      if (program === undefined) throw new Error(`${id}: a Rust function whose description names no yuba program`);
      out.push({ where: id, program, onLambda: true, names: Object.keys(p.Environment?.Variables ?? {}) });
    }
    if (r.Type === 'AWS::ECS::TaskDefinition') {
      for (const container of p.ContainerDefinitions ?? []) {
        const program = container.Command?.[0];
        if (typeof program !== 'string' || !program.startsWith('yuba-')) continue;
        const names = (container.Environment ?? []).map((e: any) => e.Name);
        out.push({ where: `${id}/${container.Name}`, program, onLambda: false, names });
      }
    }
    if (r.Type === 'AWS::StepFunctions::StateMachine') {
      // The definition with its tokens as placeholders: the names are literals.
      const definition = JSON.parse(p.DefinitionString['Fn::Join'][1].map((part: unknown) => (typeof part === 'string' ? part : 'TOKEN')).join(''));
      for (const [state, task] of statesOf(definition)) {
        for (const override of task.Parameters?.Overrides?.ContainerOverrides ?? []) {
          const program = override.Command?.[0];
          if (typeof program !== 'string' || !program.startsWith('yuba-')) continue;
          const names = (override.Environment ?? []).map((e: any) => e.Name);
          out.push({ where: `${id}/${state}/${override.Name}`, program, onLambda: false, names });
        }
      }
    }
  }
  return out;
}

/** Every state of a definition, those in Parallel branches and Map iterations included. */
function statesOf(definition: any): Array<[string, any]> {
  return Object.entries<any>(definition.States).flatMap(([name, state]) => [
    [name, state] as [string, any],
    ...(state.Branches ?? []).flatMap(statesOf),
    ...[state.ItemProcessor, state.Iterator].filter(Boolean).flatMap(statesOf),
  ]);
}

function problems(template: any, contract: SettingsContract = SETTINGS): string[] {
  return environments(template).flatMap((e) =>
    e.names.flatMap((name) => {
      const problem = settingProblem(contract, e.program, e.onLambda, name);
      return problem === undefined ? [] : [`${e.where} (${e.program}): ${problem}`];
    }),
  );
}

describe('the environments the app sets', () => {
  const templates = (['dev', 'prod'] as const).map((stage) => [stage, synth(stage).template.toJSON()] as const);

  test.each(templates)('%s: every program gets only settings it reads', (stage, template) => {
    const found = environments(template);
    // Each program is found, so the check below cannot pass by finding nothing (yuba-serve runs
    // with the delivery path only, which prod has).
    const programs = ['yuba-ingest', 'yuba-worker', 'yuba-reconciler', ...(stageConfig(stage).delivery.enabled ? ['yuba-serve'] : [])];
    expect(new Set(found.map((e) => e.program))).toEqual(new Set(programs));
    expect(found.every((e) => e.names.length > 0)).toBe(true);
    expect(problems(template)).toEqual([]);
  });

  test("prod in shards: the state machine's steps give the reconciler only settings it reads", () => {
    const inventory = { bucket: 'yuba-prod-inventories', folder: 'reports/yuba-prod-images/daily/', storageGiB: 100 };
    const template = synth('prod', { reconciler: { sourceInventory: inventory, shards: 4 } }).template.toJSON();
    const [machineId] = Object.entries<any>(template.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')!;
    const steps = environments(template).filter((e) => e.where.startsWith(`${machineId}/`));
    // The plan, a shard and the merge, each found (the check below cannot pass by finding nothing).
    expect(steps.map((e) => e.where.split('/')[1]).sort()).toEqual(['MergeTask', 'PlanTask', 'ShardTask']);
    expect(steps.every((e) => e.program === 'yuba-reconciler' && e.names.length > 0)).toBe(true);
    expect(problems(template)).toEqual([]);
    // A misspelt name in an override is caught like one in a container.
    const broken = JSON.parse(JSON.stringify(template));
    const machine = Object.values<any>(broken.Resources).find((r) => r.Type === 'AWS::StepFunctions::StateMachine');
    const parts: unknown[] = machine.Properties.DefinitionString['Fn::Join'][1];
    machine.Properties.DefinitionString['Fn::Join'][1] = parts.map((part) => (typeof part === 'string' ? part.replace('"YUBA_RECONCILE_SHARD"', '"YUBA_RECONCILE_SHARDS"') : part));
    expect(problems(broken)).toEqual([expect.stringMatching(/\/ShardTask\/reconciler \(yuba-reconciler\): YUBA_RECONCILE_SHARDS is no setting/)]);
  });

  test('a copy that breaks the contract fails', () => {
    const template = JSON.parse(JSON.stringify(templates[0][1]));
    const worker = Object.values<any>(template.Resources).find(
      (r) => r.Type === 'AWS::Lambda::Function' && /^yuba yuba-worker /.test(r.Properties.Description ?? ''),
    );
    const variables = worker.Properties.Environment.Variables;
    variables.YUBA_GCS_BUCKETS = 'misspelt';
    variables.YUBA_RECONCILE_PREFIX = 'the reconciler reads this one';
    variables.YUBA_VISIBILITY_TIMEOUT_SECONDS = '60';
    expect(problems(template)).toEqual([
      expect.stringContaining('YUBA_GCS_BUCKETS is no setting'),
      expect.stringContaining('YUBA_RECONCILE_PREFIX is read by yuba-reconciler, not yuba-worker'),
      expect.stringContaining('YUBA_VISIBILITY_TIMEOUT_SECONDS is read only off Lambda'),
    ]);
  });
});

describe("the reconciler's extra environment", () => {
  test('takes its own settings', () => {
    expect(stageConfig('dev', { reconciler: { environment: { YUBA_RECONCILE_PREFIX: 'photos/' } } }).reconciler.environment).toEqual({
      YUBA_RECONCILE_PREFIX: 'photos/',
    });
  });

  test('refuses a name it would ignore, at synth', () => {
    expect(() => stageConfig('dev', { reconciler: { environment: { YUBA_RECONCILE_PREFIXES: 'photos/' } } })).toThrow(
      /reconciler\.environment\.YUBA_RECONCILE_PREFIXES.*no setting/,
    );
    expect(() => stageConfig('dev', { reconciler: { environment: { YUBA_TASK_PROTECTION: 'false' } } })).toThrow(
      /read by yuba-worker, not yuba-reconciler/,
    );
  });
});
