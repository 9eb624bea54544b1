/** Configuration checks and inputs that must fail synth loudly, not a deploy. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import {
  DEFAULT_PARALLEL_UPLOADS,
  DEFAULT_UPLOAD_CHUNK_BYTES,
  FARGATE_SCALE_OUT,
  MEMORY,
  MemoryContract,
  fargateScaleOutSeconds,
  imagesBudgetBytes,
  lambdaWorkerMemoryMiB,
  stageConfig,
  workerMemoryMiB,
} from '../lib/config';
import { exampleCredentials, loadCredentials } from '../lib/gcp';
import { synth } from './helpers';

const MIB = 1024 * 1024;
const VARIANTS = JSON.stringify({ profiles: [{ name: 'large', width: 1600, height: 1600, format: 'jpeg' }] });
const budget = (memoryMiB: number, concurrency: number) => imagesBudgetBytes(memoryMiB, DEFAULT_UPLOAD_CHUNK_BYTES, DEFAULT_PARALLEL_UPLOADS, concurrency);

/** The worked examples of memory.json (the Rust `images_budget`) that `rule` does not reproduce to the byte. */
function budgetMismatches(rule: typeof imagesBudgetBytes, contract: MemoryContract = MEMORY): string[] {
  return contract.examples.flatMap((e) => {
    const got = rule(e.memoryMiB, e.uploadChunkBytes, e.parallelUploads, e.concurrency);
    return got === e.imagesBudgetBytes ? [] : [`${JSON.stringify(e)}: got ${got}`];
  });
}

describe('the memory rule (lib/generated/memory.json, from libs/replicate/src/memory.rs)', () => {
  test('imagesBudgetBytes reproduces every worked example of the Rust rule exactly', () => {
    expect(MEMORY.examples.length).toBeGreaterThan(0);
    expect(budgetMismatches(imagesBudgetBytes)).toEqual([]);
    // Nothing left is null, exactly nothing left is 0.
    const streaming = (DEFAULT_UPLOAD_CHUNK_BYTES * (DEFAULT_PARALLEL_UPLOADS + 1) * 8) / MIB;
    expect(budget(MEMORY.processBaseMiB + streaming, 8)).toBe(0);
    expect(budget(MEMORY.processBaseMiB + streaming - 1, 8)).toBeNull();
  });

  test('broken copies of the rule fail the examples', () => {
    const withoutStreaming: typeof imagesBudgetBytes = (memoryMiB, _chunk, parallel, concurrency) => imagesBudgetBytes(memoryMiB, 0, parallel, concurrency);
    const withoutSlack: typeof imagesBudgetBytes = (memoryMiB, chunk, parallel, concurrency) =>
      (memoryMiB - MEMORY.processBaseMiB) * MIB - chunk * (parallel + 1) * concurrency;
    const withoutBase: typeof imagesBudgetBytes = (memoryMiB, chunk, parallel, concurrency) => imagesBudgetBytes(memoryMiB + MEMORY.processBaseMiB, chunk, parallel, concurrency);
    for (const broken of [withoutStreaming, withoutSlack, withoutBase]) expect(budgetMismatches(broken)).not.toEqual([]);
  });

  test('without variants a worker needs its base and its upload buffers (README: 8 MiB x 5 x 8 = 320 MiB)', () => {
    expect(workerMemoryMiB(8, false)).toBe(Math.ceil((MEMORY.processBaseMiB + 320) / 64) * 64);
  });

  test('with variants a worker is sized for `concurrency` photos at once, to the least multiple of 64 MiB', () => {
    for (const concurrency of [1, 2, 4, 8, 16]) {
      const memory = workerMemoryMiB(concurrency, true);
      const needed = Math.max(concurrency * MEMORY.photo.jobMiB, MEMORY.minImagesBudgetMiB) * MIB;
      expect(memory % 64).toBe(0);
      expect(budget(memory, concurrency)).toBeGreaterThanOrEqual(needed);
      expect(budget(memory - 64, concurrency) ?? -1).toBeLessThan(needed);
      expect(memory).toBeGreaterThanOrEqual(workerMemoryMiB(concurrency, false) + MEMORY.minImagesBudgetMiB);
    }
  });

  test('every stage default validates with variants on', () => {
    for (const stage of ['dev', 'prod'] as const) expect(stageConfig(stage, { variants: VARIANTS }).variants).toBe(VARIANTS);
  });

  test('a Fargate task below the rule is refused at synth, naming the field and the numbers', () => {
    const needed = workerMemoryMiB(8, true);
    const short = needed - 64;
    expect(() => synth('prod', { variants: VARIANTS, fargateWorker: { memoryMiB: short } })).toThrow(
      `yuba:prod: fargateWorker.memoryMiB: ${short} MiB is too little for concurrency 8: the worker needs at least ${needed} MiB (README "Memory"`,
    );
    expect(stageConfig('prod', { variants: VARIANTS, fargateWorker: { memoryMiB: needed } }).fargateWorker.memoryMiB).toBe(needed);
    // Without variants, the base and the upload buffers.
    expect(() => stageConfig('prod', { fargateWorker: { memoryMiB: 256 } })).toThrow(/fargateWorker.memoryMiB: 256 MiB is too little/);
  });

  test('a reconciler that would refuse to start with variants is refused, at its concurrency', () => {
    // 16 jobs (the CLI's default) x 5 x 8 MiB of uploads leave nothing of 512 MiB.
    expect(() => stageConfig('dev', { variants: VARIANTS, reconciler: { memoryMiB: 512 } })).toThrow(/reconciler.memoryMiB: 512 MiB leaves 0 MiB for variants at concurrency 16/);
    expect(stageConfig('dev', { reconciler: { memoryMiB: 512 } }).reconciler.memoryMiB).toBe(512);
    expect(stageConfig('dev', { variants: VARIANTS, reconciler: { memoryMiB: 512, environment: { YUBA_RECONCILE_CONCURRENCY: '4' } } }).reconciler.memoryMiB).toBe(512);
    // Its memory setting comes from memoryMiB, never from environment.
    expect(() => stageConfig('dev', { reconciler: { environment: { [MEMORY.memorySetting]: '4096' } } })).toThrow(`reconciler.environment.${MEMORY.memorySetting}`);
    // The scheduled run's wait for its jobs must outlast the Fargate pool's scale-out from zero.
    expect(() => stageConfig('dev', { reconciler: { verifyEnqueuedSeconds: fargateScaleOutSeconds() } })).toThrow(/reconciler.verifyEnqueuedSeconds: must be more than the Fargate pool's scale-out from zero/);
    expect(stageConfig('dev', { reconciler: { verifyEnqueuedSeconds: fargateScaleOutSeconds() + 1 } }).reconciler.verifyEnqueuedSeconds).toBe(fargateScaleOutSeconds() + 1);
  });

  test("the Fargate tasks are told their task's memory", () => {
    for (const stage of ['dev', 'prod'] as const) {
      const { template } = synth(stage);
      const tasks = Object.values(template.findResources('AWS::ECS::TaskDefinition')) as any[];
      expect(tasks.map((t) => t.Properties.Family).sort()).toEqual([`yuba-${stage}-reconciler`, `yuba-${stage}-worker`]);
      for (const task of tasks) {
        const [container] = task.Properties.ContainerDefinitions;
        const env = Object.fromEntries(container.Environment.map((e: any) => [e.Name, e.Value]));
        expect(env[MEMORY.memorySetting]).toBe(String(task.Properties.Memory));
      }
    }
  });
});

test('a task too small for its concurrency is refused, naming the field', () => {
  expect(() => stageConfig('prod', { fargateWorker: { memoryMiB: 256 } })).toThrow(/fargateWorker.memoryMiB/);
});

test('reserved concurrency below the event source maximum is refused', () => {
  expect(() => stageConfig('prod', { lambdaWorker: { reservedConcurrency: 10 } })).toThrow(/reservedConcurrency/);
});

test('bad variants JSON is refused', () => {
  expect(() => stageConfig('dev', { variants: '{nope' })).toThrow(/variants/);
});

test('a stage prefix that GCP could not derive its ids from is refused', () => {
  // terraform makes PREFIX-reconciler (a service account: starts with a letter) and PREFIX-aws
  // (a workload identity pool: gcp- is Google's) from it.
  for (const prefix of ['1yuba', '-yuba', 'gcp-dev', 'gcp', 'Yuba', 'yuba_dev', 'a'.repeat(21)]) {
    expect(() => stageConfig('dev', { prefix })).toThrow(/prefix/);
  }
  for (const prefix of ['yuba-dev', 'y', 'a'.repeat(20), 'x-gcp']) expect(stageConfig('dev', { prefix }).prefix).toBe(prefix);
});

test('a lag objective the Fargate pool cannot meet from zero is refused, with the two ways out', () => {
  const scaleOut = fargateScaleOutSeconds();
  expect(scaleOut).toBe(FARGATE_SCALE_OUT.metricPeriodSeconds * FARGATE_SCALE_OUT.evaluationPeriods + FARGATE_SCALE_OUT.sqsMetricDelaySeconds + FARGATE_SCALE_OUT.taskStartSeconds);
  expect(() => stageConfig('dev', { alarms: { lagObjectiveSeconds: 300 } })).toThrow(/alarms.lagObjectiveSeconds: 300 s is shorter than the Fargate pool's scale from zero .*minTasks to 1/);
  // A warm task, or an objective that covers the scale-out, are both accepted.
  expect(stageConfig('dev', { alarms: { lagObjectiveSeconds: 300 }, fargateWorker: { minTasks: 1 } }).fargateWorker.minTasks).toBe(1);
  expect(stageConfig('dev', { alarms: { lagObjectiveSeconds: scaleOut + 60 } }).alarms.lagObjectiveSeconds).toBe(scaleOut + 60);
  // prod's 120 s objective is only possible because prod keeps a task warm.
  expect(() => stageConfig('prod', { fargateWorker: { minTasks: 0 } })).toThrow(/alarms.lagObjectiveSeconds/);
});

test('burn-rate alarms that could never fire, or whose windows are not a long and a short one, are refused', () => {
  const burn = (rate: number, longWindowMinutes: number, shortWindowMinutes: number) => ({ alarms: { burnRates: [{ rate, longWindowMinutes, shortWindowMinutes }] } });
  expect(() => stageConfig('prod', burn(100, 60, 5))).toThrow(/burnRates\[0\]: rate 100 x budget 0.01 .*could never fire/);
  expect(() => stageConfig('prod', burn(6, 30, 30))).toThrow(/burnRates\[0\]: the short window must be shorter/);
  expect(() => stageConfig('prod', burn(1, 3 * 24 * 60, 360))).toThrow(/burnRates\[0\]: the long window is an alarm period: at most 1440/);
  expect(() => stageConfig('prod', burn(6, 60, 0.5))).toThrow(/burnRates\[0\]: windows are whole minutes/);
  expect(stageConfig('prod', burn(3, 1440, 120)).alarms.burnRates).toEqual([{ rate: 3, longWindowMinutes: 1440, shortWindowMinutes: 120 }]);
});

test('a setting an earlier version took is refused with what replaces it, not dropped', () => {
  expect(() => stageConfig('prod', JSON.parse('{"fargateWorker":{"onDemandBase":2}}'))).toThrow(/fargateWorker.onDemandBase: use fargateWorker.minTasks/);
  expect(() => stageConfig('dev', JSON.parse('{"fargateWorker":{"spotWeight":3}}'))).toThrow(/fargateWorker.spotWeight: removed/);
});

describe('a source inventory', () => {
  const inventory = { bucket: 'yuba-dev-inventories', folder: 'reports/yuba-dev-images/daily/', storageGiB: 50 };

  test('a usable one is accepted', () => {
    expect(stageConfig('dev', { reconciler: { sourceInventory: inventory } }).reconciler.sourceInventory).toEqual(inventory);
  });

  test("bucket names S3 refuses are refused at synth, each with S3's rule (bucketnamingrules.html)", () => {
    const refused: Array<[string, RegExp]> = [
      ['Inventories', /3-63 lowercase letters/],
      ['ab', /3-63 lowercase letters/],
      ['a'.repeat(64), /3-63 lowercase letters/],
      ['-inventories', /starting and ending with a letter or digit/],
      ['inv..entories', /two adjacent dots/],
      ['192.168.5.4', /IP address/],
      ['xn--inventories', /starts with xn--/],
      ['inventories-s3alias', /ends with -s3alias/],
    ];
    for (const [bucket, why] of refused) {
      expect(() => stageConfig('dev', { reconciler: { sourceInventory: { ...inventory, bucket } } })).toThrow(why);
    }
    // The source bucket is held to the same rules.
    expect(() => stageConfig('dev', { source: { name: 'Yuba_Images' } })).toThrow(/source.name: "Yuba_Images" is not an S3 bucket name/);
  });

  test('a folder that is not one, or storage Fargate cannot give, is refused', () => {
    for (const folder of ['reports/yuba-dev-images/daily', '/reports/yuba-dev-images/daily/']) {
      expect(() => stageConfig('dev', { reconciler: { sourceInventory: { ...inventory, folder } } })).toThrow(/reconciler.sourceInventory.folder/);
    }
    for (const storageGiB of [20, 201, 50.5]) {
      expect(() => stageConfig('dev', { reconciler: { sourceInventory: { ...inventory, storageGiB } } })).toThrow(/storageGiB: must be a whole number of GiB, 21..200/);
    }
  });

  test('the setting is not taken from the environment, which would skip the grant', () => {
    expect(() => stageConfig('dev', { reconciler: { environment: { YUBA_RECONCILE_SOURCE_INVENTORY: 's3://x/y/' } } })).toThrow(
      /reconciler.environment.YUBA_RECONCILE_SOURCE_INVENTORY: is set from reconciler.sourceInventory/,
    );
  });

  test('shards need an inventory and the whole bucket, and run as an inline Map (at most 40 at once)', () => {
    expect(stageConfig('dev', { reconciler: { sourceInventory: inventory, shards: 40 } }).reconciler.shards).toBe(40);
    expect(() => stageConfig('dev', { reconciler: { shards: 4 } })).toThrow(/reconciler.shards: needs reconciler.sourceInventory/);
    for (const shards of [1, 41, 2.5, 0]) {
      expect(() => stageConfig('dev', { reconciler: { sourceInventory: inventory, shards } })).toThrow(/reconciler.shards: must be a whole number, 2..40/);
    }
    expect(() => stageConfig('dev', { source: { prefixes: ['photos/'] }, reconciler: { sourceInventory: inventory, shards: 4 } })).toThrow(
      /reconciler.shards: covers the whole bucket/,
    );
    for (const name of ['YUBA_RECONCILE_SHARD', 'YUBA_RECONCILE_PLAN']) {
      expect(() => stageConfig('dev', { reconciler: { environment: { [name]: 'x' } } })).toThrow(new RegExp(`reconciler.environment.${name}: is set by the sharded run`));
    }
    // A shard refuses a prefix from its variable as from its flag; one task takes it.
    const prefixed = { environment: { YUBA_RECONCILE_PREFIX: 'photos/' }, sourceInventory: inventory };
    expect(stageConfig('dev', { reconciler: prefixed }).reconciler.environment).toEqual({ YUBA_RECONCILE_PREFIX: 'photos/' });
    expect(() => stageConfig('dev', { reconciler: { ...prefixed, shards: 4 } })).toThrow(/reconciler.environment.YUBA_RECONCILE_PREFIX: is refused by every shard/);
  });
});

test('overrides come as JSON strings too (-c yuba:dev=...)', () => {
  expect(stageConfig('dev', JSON.stringify({ source: { name: 'other' } })).source.name).toBe('other');
});

test('Lambda memory follows the rule: with variants, room for its concurrency of photos at once', () => {
  const c = stageConfig('prod');
  const jobs = c.lambdaWorker.concurrency;
  const withVariants = lambdaWorkerMemoryMiB({ ...c, variants: VARIANTS });
  expect(withVariants).toBe(Math.max(1024, workerMemoryMiB(jobs, true)));
  expect(budget(withVariants, jobs)).toBeGreaterThanOrEqual(jobs * MEMORY.photo.jobMiB * MIB);
  // 8 jobs: above the 1,018 MiB of peak RSS the load test measured for 8 photos at once.
  expect(withVariants).toBeGreaterThan(1018);
  const without = lambdaWorkerMemoryMiB({ ...c, variants: '' });
  expect(without).toBe(Math.max(512, workerMemoryMiB(jobs, false)));
  expect(without).toBeLessThan(withVariants);
  // The floors keep CPU for small concurrencies (Lambda's CPU follows memory).
  expect(lambdaWorkerMemoryMiB({ ...c, variants: VARIANTS, lambdaWorker: { ...c.lambdaWorker, concurrency: 1 } })).toBe(1024);
  expect(lambdaWorkerMemoryMiB({ ...c, variants: '', lambdaWorker: { ...c.lambdaWorker, concurrency: 1 } })).toBe(512);
  // More photos at once than Lambda's 10,240 MiB hold is refused.
  expect(() => stageConfig('prod', { variants: VARIANTS, lambdaWorker: { concurrency: 100 } })).toThrow(/lambdaWorker.concurrency: 100 jobs at once need \d+ MiB .* more than Lambda's 10240 MiB/);
});

describe('credentials', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yuba-cdk-'));
  const scope = () => new Stack(new App());
  const write = (name: string, doc: unknown) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, typeof doc === 'string' ? doc : JSON.stringify(doc));
    return f;
  };

  test('terraform output is accepted and compacted', () => {
    const f = write('ok.json', JSON.parse(exampleCredentials('w@p.iam.gserviceaccount.com')));
    expect(JSON.parse(loadCredentials(scope(), f, 'worker')).type).toBe('external_account');
  });

  test('a service-account key is refused', () => {
    const f = write('key.json', { ...JSON.parse(exampleCredentials('w@p')), private_key: 'x' });
    expect(() => loadCredentials(scope(), f, 'worker')).toThrow(/private_key/);
  });

  test('a non-AWS credential source is refused, naming the field', () => {
    const doc = JSON.parse(exampleCredentials('w@p'));
    doc.credential_source.environment_id = 'azure';
    expect(() => loadCredentials(scope(), write('azure.json', doc), 'worker')).toThrow(/environment_id/);
  });

  test('a missing file fails synth unless in placeholder mode', () => {
    expect(() => loadCredentials(scope(), path.join(dir, 'missing.json'), 'reconciler')).toThrow(/terraform output -raw reconciler_credentials_json/);
    const app = new App({ context: { 'yuba:placeholderCode': true } });
    expect(JSON.parse(loadCredentials(new Stack(app), path.join(dir, 'missing.json'), 'reconciler')).type).toBe('external_account');
  });
});
