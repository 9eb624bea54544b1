/** Configuration checks and inputs that must fail synth loudly, not a deploy. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import { FARGATE_SCALE_OUT, IMAGE_JOB_MIB, fargateScaleOutSeconds, lambdaWorkerMemoryMiB, stageConfig, workerMemoryMiB } from '../lib/config';
import { exampleCredentials, loadCredentials } from '../lib/gcp';

test('the worker memory formula matches the README (8 MiB x 5 x 8 + 18)', () => {
  expect(workerMemoryMiB(8)).toBe(320 + 18);
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

test('overrides come as JSON strings too (-c yuba:dev=...)', () => {
  expect(stageConfig('dev', JSON.stringify({ source: { name: 'other' } })).source.name).toBe('other');
});

test('Lambda memory grows with variants on: a photo decode per job in flight', () => {
  const c = stageConfig('prod');
  const jobs = c.lambdaWorker.concurrency;
  const withVariants = lambdaWorkerMemoryMiB({ ...c, variants: '{"profiles":[]}' });
  expect(withVariants).toBeGreaterThanOrEqual(1.5 * (workerMemoryMiB(jobs) + jobs * IMAGE_JOB_MIB));
  // 8 jobs: above the 1,018 MiB the load test measured, with headroom.
  expect(withVariants).toBeGreaterThanOrEqual(1.5 * 1018);
  expect(lambdaWorkerMemoryMiB({ ...c, variants: '' })).toBeLessThan(withVariants);
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
