/**
 * What the on-call sees: the SNS topic every alarm notifies, the alarms, and the dashboard.
 *
 * What pages, and why (cdk/README.md "What pages" is the runbook):
 * - the replication SLO's burn-rate alarms (slo.ts): jobs late, dead-lettered or stuck, burning
 *   the error budget too fast over a long and a short window at once;
 * - a DLQ that is not empty, a queue whose oldest message is past the lag objective, the
 *   reconciler's failed run, Lambda errors and throttles.
 *
 * Which alarms gate deploys: only the new version's own health, never the shared SLO. The
 * canary alarms (lambdas.ts) watch the version being deployed by its `FunctionVersion`
 * dimension; the SLO is everyone's, and rolling back on it would roll back the fix for the very
 * outage (a GCS incident, a quota) that burns it.
 *
 * yuba's own metrics are built through `YubaMetrics` (metrics.ts), held to the contract the Rust
 * catalog writes (cdk/lib/generated/metrics.json). The rest are AWS's.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { StageConfig, metricsNamespace } from './config';
import { FargateWorker } from './fargate-worker';
import { DeployedFunction, Lambdas } from './lambdas';
import { YubaMetrics } from './metrics';
import { Queues } from './queues';
import { Reconciler } from './reconciler';
import { Serve } from './serve';
import { SloAlarms, badJobRatio, remainingBudget } from './slo';

/**
 * Datapoints (1 minute each) the oldest message must stay past the objective before the lag
 * alarm fires. The age only grows while a message waits, so 3 in a row mean it waited the
 * objective and 2 minutes more: no single late sample pages.
 */
export const LAG_ALARM_MINUTES = 3;

export interface ObservabilityProps {
  readonly config: StageConfig;
  readonly queues: Queues;
  readonly lambdas: Lambdas;
  readonly fargateWorker: FargateWorker;
  readonly reconciler: Reconciler;
  /** The delivery origin, when the stage has the delivery path. */
  readonly serve?: Serve;
}

export class Observability extends Construct {
  readonly topic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;
  /** Every alarm that notifies the topic. */
  readonly alarms: cloudwatch.AlarmBase[] = [];
  readonly slo: SloAlarms;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const c = props.config;
    const { queues, lambdas, reconciler } = props;
    const metrics = new YubaMetrics(metricsNamespace(c));
    const account = Stack.of(this).account;

    // --- the topic: encrypted with a key CloudWatch may use, TLS-only, publishable by alarms.
    const key = new kms.Key(this, 'TopicKey', {
      alias: `alias/${c.prefix}-alarms`,
      description: 'yuba alarm topic',
      enableKeyRotation: true,
    });
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': account } },
      }),
    );
    // EventBridge delivers the reconciler's failed-run events to the same topic.
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'EventBridgePublish',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': account } },
      }),
    );
    this.topic = new sns.Topic(this, 'Alarms', { topicName: `${c.prefix}-alarms`, displayName: `yuba ${c.stage} alarms`, masterKey: key, enforceSSL: true });
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: { StringEquals: { 'aws:SourceAccount': account } },
      }),
    );
    for (const email of c.alarms.emails) this.topic.addSubscription(new subs.EmailSubscription(email));
    // The stopped task's event (exit codes, stop reason), or in shards the execution's (its ARN
    // and status; its history names the step), reaches on-call as it is.
    reconciler.failedRun.addTarget(new eventsTargets.SnsTopic(this.topic));
    const notify = new actions.SnsAction(this.topic);
    const notifies = (a: cloudwatch.AlarmBase) => {
      a.addAlarmAction(notify);
      a.addOkAction(notify);
      this.alarms.push(a);
    };
    const alarm = (id: string, props: cloudwatch.AlarmProps) => {
      const a = new cloudwatch.Alarm(this, id, { treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING, ...props });
      notifies(a);
      return a;
    };

    // --- queues: DLQ not empty, oldest message older than the lag objective.
    for (const q of queues.all) {
      alarm(`${cap(q.name)}DlqNotEmpty`, {
        alarmName: `${c.prefix}-${slug(q.name)}-dlq-not-empty`,
        alarmDescription: `Messages in the ${q.name} DLQ: jobs that failed ${c.maxReceiveCount} times. Inspect, fix, then redrive (README "Roll back and operate").`,
        metric: q.dlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(1) }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      });
      alarm(`${cap(q.name)}OldestMessage`, {
        alarmName: `${c.prefix}-${slug(q.name)}-lag`,
        alarmDescription: `The oldest message on the ${q.name} queue has been older than the ${c.alarms.lagObjectiveSeconds} s lag objective for ${LAG_ALARM_MINUTES} minutes.`,
        metric: q.queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(1) }),
        threshold: c.alarms.lagObjectiveSeconds,
        evaluationPeriods: LAG_ALARM_MINUTES,
        datapointsToAlarm: LAG_ALARM_MINUTES,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      });
    }

    // --- the lag objective on what users see: upload -> complete replica, p99.
    const lagP99 = metrics.metric('ReplicationLag', { Outcome: 'replicated' }, 'p99', Duration.minutes(5), 'upload→replica p99');
    alarm('ReplicationLagP99', {
      alarmName: `${c.prefix}-replication-lag-p99`,
      alarmDescription: `p99 of upload→replica latency above the ${c.alarms.lagObjectiveSeconds} s objective for 15 minutes.`,
      metric: lagP99,
      threshold: c.alarms.lagObjectiveSeconds * 1000,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    });

    // --- the SLO: multi-window, multi-burn-rate; the composites notify, never a deployment.
    this.slo = new SloAlarms(this, 'Slo', { config: c, queues, metrics });
    this.slo.composites.forEach(notifies);

    // --- Lambda: errors (whole invocations failing: a crash, a timeout) and throttles.
    for (const [name, f] of [['ingest', lambdas.ingest], ['worker', lambdas.worker]] as Array<[string, DeployedFunction]>) {
      alarm(`${cap(name)}Errors`, {
        alarmName: `${c.prefix}-${name}-errors`,
        alarmDescription: `${f.fn.functionName}: invocations failing (crash or timeout), 3 of 5 minutes.`,
        metric: f.fn.metricErrors({ statistic: 'Sum', period: Duration.minutes(1) }),
        threshold: 1,
        evaluationPeriods: 5,
        datapointsToAlarm: 3,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      });
      alarm(`${cap(name)}Throttles`, {
        alarmName: `${c.prefix}-${name}-throttles`,
        alarmDescription: `${f.fn.functionName}: throttled for 5 minutes (account concurrency or reserved concurrency too low).`,
        metric: f.fn.metricThrottles({ statistic: 'Sum', period: Duration.minutes(1) }),
        threshold: 1,
        evaluationPeriods: 5,
        datapointsToAlarm: 5,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      });
    }

    // --- the reconciler's alarms notify too.
    for (const a of [reconciler.failedRunAlarm, reconciler.scheduleFailureAlarm]) {
      a.addAlarmAction(notify);
      this.alarms.push(a);
    }

    this.dashboard = this.makeDashboard(c, props, metrics);
  }

  private makeDashboard(c: StageConfig, p: ObservabilityProps, metrics: YubaMetrics): cloudwatch.Dashboard {
    const { queues, lambdas, fargateWorker } = p;
    const yuba = metrics.metric.bind(metrics);
    const d = new cloudwatch.Dashboard(this, 'Dashboard', { dashboardName: c.prefix, defaultInterval: Duration.hours(6) });
    const minute = Duration.minutes(1);
    const objective = { value: c.alarms.lagObjectiveSeconds, label: 'lag objective', color: cloudwatch.Color.RED };

    d.addWidgets(
      new cloudwatch.TextWidget({
        markdown: `# yuba ${c.stage}\nS3 \`${c.source.name}\` → GCS \`${c.gcp.bucket}\`. Lag objective ${c.alarms.lagObjectiveSeconds} s, error budget ${c.alarms.errorBudget * 100} %. What pages and what to do: cdk/README.md "What pages, and what to do".`,
        width: 24,
        height: 2,
      }),
    );
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Replication lag: oldest message (s)',
        left: queues.all.map((q) => q.queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: minute, label: q.name })),
        leftAnnotations: [objective],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Replication lag: upload → replica (ms)',
        left: ['p50', 'p90', 'p99'].map((s) => yuba('ReplicationLag', { Outcome: 'replicated' }, s, Duration.minutes(5), s)),
        leftAnnotations: [{ ...objective, value: c.alarms.lagObjectiveSeconds * 1000 }],
        width: 12,
      }),
    );
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Objects replicated',
        left: [yuba('Jobs', { Outcome: 'replicated' }, 'Sum', Duration.minutes(5), 'replicated'), yuba('Jobs', { Outcome: 'deleted' }, 'Sum', Duration.minutes(5), 'deleted')],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Bytes replicated',
        left: [yuba('BytesReplicated', { Outcome: 'replicated' }, 'Sum', Duration.minutes(5), 'bytes')],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Jobs by outcome',
        left: [metrics.search('Jobs', ['Outcome'], 'Sum', 'jobs')],
        stacked: true,
        width: 8,
      }),
    );
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Failures by kind',
        left: [metrics.search('Jobs', ['Outcome', 'Failure'], 'Sum', 'failures')],
        stacked: true,
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Variant failures by error',
        left: [metrics.search('VariantFailures', ['VariantError'], 'Sum', 'variant failures')],
        stacked: true,
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'SLO: bad jobs / jobs (5 min)',
        left: [badJobRatio(c, queues, metrics, Duration.minutes(5))],
        leftAnnotations: [{ value: c.alarms.errorBudget, label: 'budget', color: cloudwatch.Color.ORANGE }],
        leftYAxis: { min: 0 },
        width: 5,
      }),
      new cloudwatch.SingleValueWidget({
        title: `Error budget left (${c.alarms.budgetDays} days, %)`,
        metrics: [remainingBudget(c, queues, metrics)],
        start: `-P${c.alarms.budgetDays}D`,
        setPeriodToTimeRange: true,
        width: 3,
      }),
    );
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Queue depth (visible / in flight)',
        left: queues.all.flatMap((q) => [
          q.queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: minute, label: `${q.name} visible` }),
          q.queue.metricApproximateNumberOfMessagesNotVisible({ statistic: 'Maximum', period: minute, label: `${q.name} in flight` }),
        ]),
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'DLQ depth',
        left: queues.all.map((q) => q.dlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: minute, label: `${q.name} DLQ` })),
        leftAnnotations: [{ value: 1, label: 'alarm', color: cloudwatch.Color.RED }],
        width: 12,
      }),
    );
    const fns = [lambdas.ingest.fn, lambdas.worker.fn];
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Lambda duration p50 / p99 (ms)',
        left: fns.flatMap((f) => ['p50', 'p99'].map((s) => f.metricDuration({ statistic: s, period: minute, label: `${f.node.id} ${s}` }))),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Lambda errors / throttles',
        left: fns.flatMap((f) => [
          f.metricErrors({ statistic: 'Sum', period: minute, label: `${f.node.id} errors` }),
          f.metricThrottles({ statistic: 'Sum', period: minute, label: `${f.node.id} throttles` }),
        ]),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Lambda concurrency',
        left: fns.map((f) => f.metric('ConcurrentExecutions', { statistic: 'Maximum', period: minute, label: f.node.id })),
        width: 8,
      }),
    );
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Ingest: what became of notification records',
        left: [metrics.search('IngestRecords', ['Record'], 'Sum', 'records')],
        stacked: true,
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Jobs by Lambda version (a canary beside the live one)',
        left: [metrics.search('Jobs', [metrics.contract.versionDimension], 'Sum', 'jobs', Duration.minutes(1))],
        width: 12,
      }),
    );
    const svc = fargateWorker.service;
    const ecsMetric = (metricName: string) =>
      new cloudwatch.Metric({
        namespace: 'ECS/ContainerInsights',
        metricName,
        dimensionsMap: { ClusterName: svc.cluster.clusterName, ServiceName: svc.serviceName },
        statistic: 'Maximum',
        period: minute,
        label: metricName,
      });
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Fargate worker: tasks and backlog',
        left: [ecsMetric('RunningTaskCount'), ecsMetric('DesiredTaskCount')],
        right: [fargateWorker.backlog],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Reconciler (daily backfill)',
        left: ['ReconcileDrift', 'ReconcileRepaired', 'ReconcileEnqueued', 'ReconcileFailed'].map((m) => yuba(m, { Command: 'backfill' }, 'Sum', Duration.hours(1), m)),
        width: 12,
      }),
    );
    if (p.serve) this.addDeliveryWidgets(d, metrics, p.serve);
    d.addWidgets(new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24 }));
    return d;
  }

  /** The delivery origin: how it answers (stored hits, renders on demand, refusals) and how fast. */
  private addDeliveryWidgets(d: cloudwatch.Dashboard, metrics: YubaMetrics, serve: Serve): void {
    const yuba = metrics.metric.bind(metrics);
    const fiveMinutes = Duration.minutes(5);
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Delivery origin: requests by how they were served',
        left: [metrics.search('OriginRequests', ['Served'], 'Sum', 'requests')],
        stacked: true,
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Delivery origin: latency to the head p50 / p99 (ms)',
        left: ['original', 'hit', 'rendered'].flatMap((served) =>
          ['p50', 'p99'].map((s) => yuba('OriginLatency', { Served: served }, s, fiveMinutes, `${served} ${s}`)),
        ),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Delivery origin: variants rendered on demand, Lambda errors',
        left: [yuba('OriginRenders', {}, 'Sum', fiveMinutes, 'renders')],
        right: [serve.fn.metricErrors({ statistic: 'Sum', period: fiveMinutes, label: 'errors' })],
        width: 8,
      }),
    );
  }
}

const cap = (s: string) => s.replace(/(^|\s)(\w)/g, (_, __, ch: string) => ch.toUpperCase());
const slug = (s: string) => s.replace(/\s+/g, '-');
