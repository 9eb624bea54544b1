/**
 * yuba's own metrics, as the programs emit them: the contract `cdk/lib/generated/metrics.json`,
 * written from the Rust catalog (libs/startup) by `tests/tests/e2e/metrics.rs` under `cargo test`.
 * Every alarm and dashboard widget that reads a yuba metric builds it here, and a name, a
 * dimension set or a dimension value the programs do not emit fails synth, naming it: a renamed
 * metric can no longer leave an alarm watching nothing. `cdk/test/metrics.test.ts` checks the
 * synthesized templates against the same file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';

export interface MetricContract {
  readonly metrics: Record<
    string,
    { readonly unit: string; readonly emittedBy: string[]; readonly dimensionSets: string[][]; readonly perVersion: boolean }
  >;
  readonly dimensions: Record<string, { readonly values: string[] | null; readonly description?: string }>;
  /** The dimension that names the Lambda version a per-version metric was emitted by. */
  readonly versionDimension: string;
}

export const METRIC_CONTRACT_FILE = path.join(__dirname, 'generated', 'metrics.json');

export function loadMetricContract(file = METRIC_CONTRACT_FILE): MetricContract {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as MetricContract;
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join('\0') === [...b].sort().join('\0');

/**
 * Why `metricName` with `dimensions` is not something the programs emit (undefined if it is).
 * Values that are tokens (a Lambda version resolved at deploy) are accepted for free-form
 * dimensions only.
 */
export function contractViolation(contract: MetricContract, metricName: string, dimensions: Record<string, string>): string | undefined {
  const metric = contract.metrics[metricName];
  if (!metric) return `${metricName} is not a metric yuba emits (known: ${Object.keys(contract.metrics).join(', ')})`;
  const names = Object.keys(dimensions);
  const version = contract.versionDimension;
  const usual = names.filter((n) => n !== version);
  if (names.includes(version) && !metric.perVersion) return `${metricName} is not emitted per ${version}`;
  // A per-version metric is also emitted with the version alone: the version's total.
  const versionTotal = names.length === 1 && names[0] === version;
  if (!versionTotal && !metric.dimensionSets.some((set) => sameSet(set, usual))) {
    return `${metricName} is not emitted with dimensions [${usual.join(', ')}] (its sets: ${metric.dimensionSets.map((s) => `[${s.join(', ')}]`).join(' ')})`;
  }
  for (const [name, value] of Object.entries(dimensions)) {
    const allowed = contract.dimensions[name]?.values;
    if (allowed === undefined) return `${name} is not a dimension yuba emits`;
    if (allowed !== null && !allowed.includes(value)) return `${name}=${value} is never emitted (values: ${allowed.join(', ')})`;
  }
  return undefined;
}

/** The values a closed dimension takes (an error for a free-form one). */
export function dimensionValues(contract: MetricContract, name: string): string[] {
  const values = contract.dimensions[name]?.values;
  if (!values) throw new Error(`metrics contract: ${name} has no closed list of values`);
  return values;
}

/** Builds yuba metrics of one namespace (a stage's), held to the contract. */
export class YubaMetrics {
  constructor(
    readonly namespace: string,
    readonly contract: MetricContract = loadMetricContract(),
  ) {}

  metric(metricName: string, dimensionsMap: Record<string, string>, statistic: string, period = Duration.minutes(1), label?: string): cloudwatch.Metric {
    const why = contractViolation(this.contract, metricName, dimensionsMap);
    if (why) throw new Error(`metrics contract (${path.relative(process.cwd(), METRIC_CONTRACT_FILE)}): ${why}`);
    return new cloudwatch.Metric({ namespace: this.namespace, metricName, dimensionsMap, statistic, period, label });
  }

  /** The same metric as emitted by one Lambda version (a token at synth: the version being deployed). */
  ofVersion(metricName: string, dimensionsMap: Record<string, string>, version: string, statistic: string, period = Duration.minutes(1)): cloudwatch.Metric {
    return this.metric(metricName, { ...dimensionsMap, [this.contract.versionDimension]: version }, statistic, period);
  }

  /**
   * Every series of `metricName` with exactly these dimension names (a SEARCH expression: one line
   * per value, whatever values the programs emit), e.g. Jobs by Outcome.
   */
  search(metricName: string, dimensions: string[], statistic: string, label: string, period = Duration.minutes(5)): cloudwatch.MathExpression {
    const metric = this.contract.metrics[metricName];
    const versionTotal = metric?.perVersion && dimensions.length === 1 && dimensions[0] === this.contract.versionDimension;
    if (!versionTotal && !metric?.dimensionSets.some((set) => sameSet(set, dimensions))) {
      throw new Error(`metrics contract: ${metricName} is not emitted with dimensions [${dimensions.join(', ')}]`);
    }
    const schema = [this.namespace, ...dimensions].join(',');
    return new cloudwatch.MathExpression({
      expression: `SEARCH('{${schema}} MetricName="${metricName}"', '${statistic}', ${period.toSeconds()})`,
      label,
      period,
    });
  }

  values(dimension: string): string[] {
    return dimensionValues(this.contract, dimension);
  }
}
