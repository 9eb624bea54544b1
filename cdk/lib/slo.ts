/**
 * The replication SLO: its SLI as CloudWatch metric math, the multi-window multi-burn-rate
 * alarms on it, and the remaining error budget.
 *
 * The SLI counts every job that mattered, over a window:
 *
 * - good: replicated within the lag objective after its upload (`ReplicationLag` samples of
 *   `Outcome=replicated` under the objective: the trimmed count `TC(:objective)`, bounds as
 *   absolute values, https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Statistics-definitions.html;
 *   EMF values keep their distribution, so trimmed statistics apply to them);
 * - late: replicated, but later (the other `ReplicationLag` samples). A job whose attempt failed
 *   and whose retry succeeded is judged here, by its final lag;
 * - dead-lettered: jobs that failed for good, waiting in a work queue's DLQ (the worst depth of
 *   each in the window). Messages moved to a DLQ by its redrive policy are not counted in NumberOfMessagesSent
 *   (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html),
 *   hence the depth;
 * - stuck: still queued past the objective (a queue's visible messages, in a window where its
 *   oldest message is older than the objective). While the workers are down nothing else is
 *   emitted, so this is what keeps an outage from looking green.
 *
 * bad = late + dead-lettered + stuck; ratio = bad / (replicated + dead-lettered + stuck). Both
 * queue terms are upper bounds (the worst moment of the window), never under-counts.
 *
 * Jobs without an upload time (the reconciler's repairs) have no lag and are not in the SLI.
 *
 * An alarm on metric math may reference at most 10 metrics ("a hard limit that cannot be
 * increased", https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-limits.html):
 * this one takes 2 + 2 + 2 per queue, 10 with the events queue; cdk/test/metrics.test.ts holds
 * every alarm to the limit.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import { BurnRateAlarm, StageConfig } from './config';
import { YubaMetrics } from './metrics';
import { Queues } from './queues';

/** The SLI's bad-job ratio over one window (`window` is the period of every metric in it). */
export function badJobRatio(c: StageConfig, queues: Queues, m: YubaMetrics, window: Duration): cloudwatch.MathExpression {
  const objectiveMs = c.alarms.lagObjectiveSeconds * 1000;
  const lag = (statistic: string) => m.metric('ReplicationLag', { Outcome: 'replicated' }, statistic, window);
  const usingMetrics: Record<string, cloudwatch.IMetric> = {
    ontime: lag(`TC(:${objectiveMs})`),
    replicated: lag('SampleCount'),
  };
  const dead: string[] = [];
  const stuck: string[] = [];
  // Jobs dead-lettered: the work queues' DLQs. The events DLQ holds notifications, not jobs (its
  // own alarm pages), and leaving it out keeps the alarm within CloudWatch's 10 metrics.
  [queues.lambdaWork, queues.fargateWork].forEach((q, i) => {
    usingMetrics[`dlq${i}`] = q.dlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: window });
    dead.push(`FILL(dlq${i}, 0)`);
  });
  // Stuck: every queue, the events queue too (ingest down is an outage of replication).
  queues.all.forEach((q, i) => {
    usingMetrics[`age${i}`] = q.queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: window });
    usingMetrics[`queued${i}`] = q.queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: window });
    stuck.push(`IF(FILL(age${i}, 0) > ${c.alarms.lagObjectiveSeconds}, FILL(queued${i}, 0), 0)`);
  });
  const late = '(FILL(replicated, 0) - FILL(ontime, 0))';
  const failed = `(${dead.join(' + ')} + ${stuck.join(' + ')})`;
  return new cloudwatch.MathExpression({
    expression: `(${late} + ${failed}) / MAX([FILL(replicated, 0) + ${failed}, 1])`,
    usingMetrics,
    period: window,
    label: 'bad jobs / jobs (late, dead-lettered, stuck)',
  });
}

/** How a burn-rate alarm is named and described. */
export function burnRateName(b: BurnRateAlarm): string {
  return `burn-${b.rate}x-${b.longWindowMinutes}m`;
}

export interface SloAlarmsProps {
  readonly config: StageConfig;
  readonly queues: Queues;
  readonly metrics: YubaMetrics;
}

/**
 * One composite alarm per configured burn rate: ALARM when the bad-job ratio is above
 * rate x budget over both its long and its short window. The window alarms themselves notify
 * no one; only the composites do.
 */
export class SloAlarms extends Construct {
  readonly composites: cloudwatch.CompositeAlarm[] = [];
  /** The window alarms, long then short, per burn rate. */
  readonly windows: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: SloAlarmsProps) {
    super(scope, id);
    const c = props.config;
    const budget = c.alarms.errorBudget;
    for (const b of c.alarms.burnRates) {
      const name = burnRateName(b);
      const threshold = b.rate * budget;
      const window = (which: 'long' | 'short', minutes: number) => {
        const a = new cloudwatch.Alarm(this, `${name}-${which}`, {
          alarmName: `${c.prefix}-slo-${name}-${which}`,
          alarmDescription: `Bad-job ratio above ${threshold} (${b.rate}x the ${budget * 100}% budget) over ${minutes} minutes. Part of ${c.prefix}-slo-${name}.`,
          metric: badJobRatio(c, props.queues, props.metrics, Duration.minutes(minutes)),
          threshold,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
        this.windows.push(a);
        return a;
      };
      const long = window('long', b.longWindowMinutes);
      const short = window('short', b.shortWindowMinutes);
      this.composites.push(
        new cloudwatch.CompositeAlarm(this, name, {
          compositeAlarmName: `${c.prefix}-slo-${name}`,
          alarmDescription:
            `The replication SLO's error budget (${budget * 100}% of jobs over ${c.alarms.budgetDays} days) is burning ${b.rate}x too fast: ` +
            `over ${b.longWindowMinutes} and ${b.shortWindowMinutes} minutes, more than ${(threshold * 100).toFixed(1)}% of jobs were late ` +
            `(>${c.alarms.lagObjectiveSeconds} s), dead-lettered or stuck. Runbook: cdk/README.md "What pages".`,
          alarmRule: cloudwatch.AlarmRule.allOf(long, short),
        }),
      );
    }
  }
}

/** What is left of the error budget over the compliance period, in percent (negative: overspent). */
export function remainingBudget(c: StageConfig, queues: Queues, m: YubaMetrics): cloudwatch.MathExpression {
  const period = Duration.days(c.alarms.budgetDays);
  return new cloudwatch.MathExpression({
    expression: `100 * (1 - ratio / ${c.alarms.errorBudget})`,
    usingMetrics: { ratio: badJobRatio(c, queues, m, period) },
    period,
    label: `error budget left (${c.alarms.budgetDays} days)`,
  });
}
