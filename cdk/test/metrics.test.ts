/**
 * Every alarm and every dashboard widget that reads a yuba metric reads one the programs emit:
 * its name, its dimension set and its dimension values are in the contract the Rust catalog
 * writes (lib/generated/metrics.json, by tests/tests/e2e/metrics.rs). And every alarm stays within
 * CloudWatch's limits, which no emulator checks.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { contractViolation, loadMetricContract, MetricContract } from '../lib/metrics';
import { synth } from './helpers';

const contract = loadMetricContract();

/** A metric a template reads: namespace, name, dimensions (token values as '<token>'), and where. */
interface Read {
  where: string;
  namespace: string;
  name: string;
  dimensions: Record<string, string>;
}

const value = (v: unknown) => (typeof v === 'string' ? v : '<token>');

function alarmReads(template: any): Read[] {
  const out: Read[] = [];
  for (const [id, r] of Object.entries<any>(template.Resources)) {
    if (r.Type !== 'AWS::CloudWatch::Alarm') continue;
    const p = r.Properties;
    const dims = (list: any[] = []) => Object.fromEntries(list.map((d) => [d.Name, value(d.Value)]));
    if (p.MetricName) out.push({ where: id, namespace: value(p.Namespace), name: p.MetricName, dimensions: dims(p.Dimensions) });
    for (const m of p.Metrics ?? []) {
      const metric = m.MetricStat?.Metric;
      if (metric) out.push({ where: id, namespace: value(metric.Namespace), name: metric.MetricName, dimensions: dims(metric.Dimensions) });
    }
  }
  return out;
}

/** The dashboard's body with every token replaced by '<token>', parsed. */
function dashboardBodies(template: any): Array<[string, any]> {
  return Object.entries<any>(template.Resources)
    .filter(([, r]) => r.Type === 'AWS::CloudWatch::Dashboard')
    .map(([id, r]) => {
      const body = r.Properties.DashboardBody;
      const text = typeof body === 'string' ? body : body['Fn::Join'][1].map((part: unknown) => (typeof part === 'string' ? part : '<token>')).join('');
      return [id, JSON.parse(text)];
    });
}

function dashboardReads(template: any): Read[] {
  const out: Read[] = [];
  for (const [id, body] of dashboardBodies(template)) {
    for (const widget of body.widgets) {
      for (const line of widget.properties?.metrics ?? []) {
        const first = line[0];
        if (typeof first === 'object') {
          // An expression: SEARCH('{namespace,Dim,...} MetricName="Name"', ...) names a schema.
          const search = /SEARCH\('\{([^}]*)\} MetricName="([^"]+)"/.exec(first.expression ?? '');
          if (search) {
            const [namespace, ...dims] = search[1].split(',');
            out.push({ where: `${id} "${widget.properties.title}"`, namespace, name: search[2], dimensions: Object.fromEntries(dims.map((d) => [d, '<any>'])) });
          }
          continue;
        }
        // [namespace, name, dim1, value1, ..., {options}?]
        const parts = line.filter((p: unknown) => typeof p === 'string');
        const dimensions: Record<string, string> = {};
        for (let i = 2; i + 1 < parts.length; i += 2) dimensions[parts[i]] = parts[i + 1];
        out.push({ where: `${id} "${widget.properties.title}"`, namespace: parts[0], name: parts[1], dimensions });
      }
    }
  }
  return out;
}

/** What in `template` reads a metric of `namespace` that the programs do not emit. */
function violations(template: any, namespace: string, c: MetricContract = contract): string[] {
  const reads = [...alarmReads(template), ...dashboardReads(template)].filter((r) => r.namespace === namespace);
  return reads.flatMap((r) => {
    // A SEARCH names dimensions, not values; a token is a version resolved at deploy.
    const dims = Object.fromEntries(Object.entries(r.dimensions).map(([k, v]) => [k, v === '<any>' || v === '<token>' ? anyValue(c, k) : v]));
    const why = contractViolation(c, r.name, dims);
    return why ? [`${r.where}: ${why}`] : [];
  });
}

/** A value the contract accepts for dimension `name` (what a wildcard or a token stands for). */
function anyValue(c: MetricContract, name: string): string {
  return c.dimensions[name]?.values?.[0] ?? 'free-form';
}

/**
 * Alarms on metric math that reference more than 10 metrics: CloudWatch refuses them ("Alarms
 * based on metric math expressions can reference a maximum of 10 metrics. This is a hard limit",
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-limits.html).
 */
function overMetricLimit(template: any): string[] {
  return Object.entries<any>(template.Resources)
    .filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm' && r.Properties.Metrics)
    .filter(([, r]) => r.Properties.Metrics.filter((m: any) => m.MetricStat).length > 10)
    .map(([id]) => id);
}

const stages = [synth('prod'), synth('dev'), synth('dev', { notifications: 'direct' })];

describe('the metrics contract', () => {
  test.each(stages.map((s) => [s.config.prefix, s.config.notifications, s] as const))(
    '%s (%s): every yuba metric an alarm or the dashboard reads is one the programs emit',
    (prefix, _mode, s) => {
      const template = s.template.toJSON();
      const reads = [...alarmReads(template), ...dashboardReads(template)].filter((r) => r.namespace === prefix);
      // The check has something to check: alarms and widgets of every kind read yuba metrics.
      expect([...new Set(reads.map((r) => r.name))]).toEqual(expect.arrayContaining(['Jobs', 'ReplicationLag', 'IngestRecords', 'VariantFailures']));
      expect(reads.some((r) => 'FunctionVersion' in r.dimensions)).toBe(true);
      expect(violations(template, prefix)).toEqual([]);
    },
  );

  test('a renamed metric, an unknown dimension value or a set never emitted is caught, in alarms and dashboards', () => {
    const template = stages[0].template.toJSON();
    const broken = JSON.parse(JSON.stringify(template).replace(/"MetricName":"ReplicationLag"/g, '"MetricName":"ReplicationLatency"'));
    expect(violations(broken, 'yuba-prod').join('\n')).toContain('ReplicationLatency is not a metric yuba emits');
    const badValue = JSON.parse(JSON.stringify(template).replace(/"Value":"not_enqueued"/g, '"Value":"unenqueued"'));
    expect(violations(badValue, 'yuba-prod').join('\n')).toContain('Record=unenqueued is never emitted');
    const dashboard = JSON.parse(JSON.stringify(template).replace(/\{yuba-prod,Outcome,Failure\}/g, '{yuba-prod,Failure}'));
    expect(violations(dashboard, 'yuba-prod').join('\n')).toContain('Jobs is not emitted with dimensions [Failure]');
    // A metric that is not per version, read by version.
    const perVersion: MetricContract = JSON.parse(JSON.stringify(contract));
    for (const m of Object.values(perVersion.metrics)) (m as { perVersion: boolean }).perVersion = false;
    expect(violations(template, 'yuba-prod', perVersion).join('\n')).toContain('is not emitted per FunctionVersion');
  });

  test.each(stages.map((s) => [s.config.prefix, s.config.notifications, s] as const))('%s (%s): no alarm references more than 10 metrics', (_p, _m, s) => {
    expect(overMetricLimit(s.template.toJSON())).toEqual([]);
  });

  test('the 10-metric rule catches an alarm with 11', () => {
    const template = stages[0].template.toJSON();
    const [id, alarm] = Object.entries<any>(template.Resources).find(([, r]) => r.Type === 'AWS::CloudWatch::Alarm' && r.Properties.Metrics)!;
    const metric = alarm.Properties.Metrics.find((m: any) => m.MetricStat);
    alarm.Properties.Metrics = [...alarm.Properties.Metrics, ...Array.from({ length: 11 }, (_, i) => ({ ...metric, Id: `extra${i}` }))];
    expect(overMetricLimit(template)).toEqual([id]);
  });
});

describe('the canary watches the new version', () => {
  const t: Template = stages[0].template;
  const json = t.toJSON();

  test('the worker rolls back on its job failure ratio and permanent failures, by FunctionVersion, per minute', () => {
    const alarms = Object.entries<any>(json.Resources).filter(([id, r]) => r.Type === 'AWS::CloudWatch::Alarm' && id.startsWith('LambdasWorkerCanary'));
    const ids = alarms.map(([id]) => id);
    expect(ids.some((id) => id.includes('CanaryFailureRatio'))).toBe(true);
    expect(ids.some((id) => id.includes('CanaryPermanentFailures'))).toBe(true);
    for (const [, a] of alarms.filter(([id]) => !id.includes('CanaryErrors'))) {
      for (const m of a.Properties.Metrics.filter((x: any) => x.MetricStat)) {
        expect(m.MetricStat.Period).toBe(60);
        const version = m.MetricStat.Metric.Dimensions.find((d: any) => d.Name === 'FunctionVersion');
        expect(version.Value).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^LambdasWorkerCurrentVersion/), 'Version'] });
      }
    }
    const group = Object.values<any>(json.Resources).find(
      (r) => r.Type === 'AWS::CodeDeploy::DeploymentGroup' && JSON.stringify(r.Properties.AlarmConfiguration).includes('LambdasWorkerCanaryCanaryFailureRatio'),
    );
    expect(group).toBeDefined();
  });

  test('ingest rolls back on records it could not enqueue', () => {
    const a = Object.entries<any>(json.Resources).find(([id, r]) => r.Type === 'AWS::CloudWatch::Alarm' && id.startsWith('LambdasIngestCanaryCanaryNotEnqueued'));
    expect(a).toBeDefined();
    const p = a![1].Properties;
    expect(p.MetricName).toBe('IngestRecords');
    expect(p.Period).toBe(60);
    expect(p.Dimensions).toEqual(
      expect.arrayContaining([{ Name: 'Record', Value: 'not_enqueued' }, { Name: 'FunctionVersion', Value: { 'Fn::GetAtt': [expect.stringMatching(/^LambdasIngestCurrentVersion/), 'Version'] } }]),
    );
  });

  test('a pre-traffic hook probes each new version, which it alone may invoke, before any traffic', () => {
    for (const fn of ['yuba-prod-worker', 'yuba-prod-ingest']) {
      const [aliasId, alias] = Object.entries<any>(json.Resources).find(
        ([, r]) => r.Type === 'AWS::Lambda::Alias' && JSON.stringify(r.Properties.FunctionName).includes(fn === 'yuba-prod-worker' ? 'LambdasWorker' : 'LambdasIngest'),
      )!;
      const hookRef = alias.UpdatePolicy.CodeDeployLambdaAliasUpdate.BeforeAllowTrafficHook;
      const hookId = hookRef.Ref;
      const hook = json.Resources[hookId];
      expect(hook.Properties.FunctionName).toBe(`${fn}-canary`);
      expect(hook.Properties.Environment.Variables.TARGET).toEqual({ Ref: expect.stringMatching(/CurrentVersion/) });
      // The alias update (which starts the CodeDeploy deployment) waits for the hook's update:
      // CloudFormation orders a Ref in an UpdatePolicy like any other (cfn-lint W3005 says so).
      expect(hookRef).toEqual({ Ref: hookId });
      expect(aliasId).toBeTruthy();
    }
  });
});
