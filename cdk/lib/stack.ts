/**
 * One stage of yuba's AWS side, composed from constructs with one job each:
 * source bucket + notifications, queues, Lambdas (ingest, worker) with canary deployments,
 * the Fargate worker, the scheduled reconciler, observability, and the optional delivery path
 * (CloudFront with yuba-serve, the origin that reads the replica).
 */
import { CfnOutput, Duration, Stack, StackProps, Tags } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import { Construct } from 'constructs';
import { StageConfig } from './config';
import { Delivery } from './delivery';
import { FARGATE_VISIBILITY_SECONDS, FargateWorker } from './fargate-worker';
import { loadCredentials, roleNames } from './gcp';
import { INGEST_TIMEOUT, Lambdas } from './lambdas';
import { logsBucket } from './logs-bucket';
import { Network } from './network';
import { Observability } from './observability';
import { QueuePair, Queues, usesEventsQueue } from './queues';
import { Reconciler } from './reconciler';
import { Serve } from './serve';
import { SourceBucket } from './source';
import { Acknowledgement, applyNagSuppressions } from './nag';

export interface YubaStackProps extends StackProps {
  readonly config: StageConfig;
}

export class YubaStack extends Stack {
  readonly queues: Queues;
  readonly source: SourceBucket;
  readonly lambdas: Lambdas;
  readonly fargateWorker: FargateWorker;
  readonly reconciler: Reconciler;
  readonly observability: Observability;
  readonly delivery?: Delivery;
  /** yuba-serve's Lambda home, with the delivery path only (its function URL is CloudFront's origin). */
  readonly serve?: Serve;
  /** The rule that sends the bucket's EventBridge events to the events queue (notifications: 'eventbridge'). */
  readonly sourceEventsRule?: events.Rule;
  /** cdk-nag acknowledgements that matched nothing in this stack (expected: the conditional ones). */
  readonly unusedNagAcknowledgements: Acknowledgement[];

  constructor(scope: Construct, id: string, props: YubaStackProps) {
    super(scope, id, props);
    const c = props.config;
    Tags.of(this).add('project', 'yuba');
    Tags.of(this).add('stage', c.stage);

    const workerCredentials = loadCredentials(this, c.gcp.workerCredentialsFile, 'worker');
    const reconcilerCredentials = loadCredentials(this, c.gcp.reconcilerCredentialsFile, 'reconciler');

    const needLogs = c.source.mode === 'create' || c.delivery.enabled || (c.reconciler.shards ?? 1) > 1;
    const logs = needLogs ? logsBucket(this, c) : undefined;

    this.source = new SourceBucket(this, 'Source', { config: c, accessLogs: logs });
    this.queues = new Queues(this, 'Queues', {
      config: c,
      eventsQueue: usesEventsQueue(c.notifications),
      fargateVisibility: Duration.seconds(FARGATE_VISIBILITY_SECONDS),
      ingestTimeout: INGEST_TIMEOUT,
    });
    this.lambdas = new Lambdas(this, 'Lambdas', { config: c, queues: this.queues, source: this.source, workerCredentials });

    // S3 -> ingest: through the events queue (durable: survives ingest outages and throttles,
    // with its own DLQ) or straight to the ingest alias. One rule per prefix x suffix, since an S3
    // rule takes one of each; ingest filters again with the same lists. Or, with 'eventbridge',
    // no S3 notification at all (a bucket refuses one that overlaps its existing ones): the bucket
    // sends its events to EventBridge, and a rule sends this bucket's to the events queue.
    if (c.notifications === 'eventbridge') {
      this.sourceEventsRule = eventBridgeToQueue(this, c, this.source.bucket, this.queues);
    } else {
      const destination = this.queues.events
        ? new s3n.SqsDestination(this.queues.events.queue)
        : new s3n.LambdaDestination(this.lambdas.ingest.alias);
      const filters = filterCombinations(c.source.prefixes, c.source.suffixes);
      for (const event of [s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED]) {
        for (const f of filters) this.source.bucket.addEventNotification(event, destination, ...(f ? [f] : []));
      }
    }

    const network = new Network(this, 'Network', { config: c });
    this.fargateWorker = new FargateWorker(this, 'FargateWorker', {
      config: c,
      network,
      queues: this.queues,
      source: this.source,
      workerCredentials,
    });
    this.reconciler = new Reconciler(this, 'Reconciler', {
      config: c,
      network,
      queues: this.queues,
      source: this.source,
      reconcilerCredentials,
      accessLogs: logs,
    });
    if (c.delivery.enabled && logs) {
      // Its credentials are read only here: a stage without the delivery path needs no serve identity.
      const serveCredentials = loadCredentials(this, c.gcp.serveCredentialsFile, 'serve');
      this.serve = new Serve(this, 'Serve', { config: c, credentials: serveCredentials });
    }
    this.observability = new Observability(this, 'Observability', {
      config: c,
      queues: this.queues,
      lambdas: this.lambdas,
      fargateWorker: this.fargateWorker,
      reconciler: this.reconciler,
      serve: this.serve,
    });
    if (this.serve && logs) {
      this.delivery = new Delivery(this, 'Delivery', {
        config: c,
        bucket: this.source.bucket,
        bucketIsOwned: c.source.mode === 'create',
        logs,
        serveUrl: this.serve.url,
      });
    }

    // What terraform/ needs (worker_role_arns, reconciler_role_arns, serve_role_arns): fixed names, known before deploy.
    const names = roleNames(c);
    const arn = (name: string) => `arn:${this.partition}:iam::${this.account}:role/${name}`;
    new CfnOutput(this, 'WorkerRoleArns', { value: [arn(names.lambdaWorker), arn(names.fargateWorker)].join(',') });
    new CfnOutput(this, 'ReconcilerRoleArn', { value: arn(names.reconciler) });
    if (this.serve) new CfnOutput(this, 'ServeRoleArn', { value: arn(names.serve) });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.observability.topic.topicArn });
    new CfnOutput(this, 'DashboardName', { value: c.prefix });

    // Last, once every resource exists (the bucket notifications handler is added lazily, above).
    this.unusedNagAcknowledgements = applyNagSuppressions(this, {
      sourceBucket: this.source.bucket,
      hasCertificate: Boolean(c.delivery.certificateArn),
      hasWebAcl: Boolean(c.delivery.webAclArn),
      hasGeoRestriction: Boolean(c.delivery.allowCountries?.length),
      sourceInventory: c.reconciler.sourceInventory,
      sharded: this.reconciler.fanOut !== undefined,
    });
  }
}

/** Every prefix x suffix pair as an S3 filter; [undefined] when there is no filter at all. */
export function filterCombinations(prefixes: string[], suffixes: string[]): Array<s3.NotificationKeyFilter | undefined> {
  const ps: Array<string | undefined> = prefixes.length ? prefixes : [undefined];
  const ss: Array<string | undefined> = suffixes.length ? suffixes : [undefined];
  const out: Array<s3.NotificationKeyFilter | undefined> = [];
  for (const prefix of ps) for (const suffix of ss) out.push(prefix === undefined && suffix === undefined ? undefined : { prefix, suffix });
  return out;
}

/** EventBridge's default quota on the size of an event pattern (adjustable up to 4,096). */
const EVENT_PATTERN_MAX_CHARS = 2048;

/**
 * The bucket's S3 events through EventBridge: the bucket's EventBridge delivery turned on (the
 * notification configuration gets `EventBridgeConfiguration`, merged with what an imported bucket
 * already has, thanks to @aws-cdk/aws-s3:keepNotificationInImportedBucket), and a rule on the
 * default bus that sends this bucket's Object Created and Object Deleted events, with the key
 * filters, to the events queue. The queue's policy admits events.amazonaws.com for this rule only
 * (aws:SourceArn); SSE-SQS needs no key grant. Delivery is retried for EventBridge's maximum (24 h,
 * 185 attempts), then the event goes to the events DLQ, whose alarm already watches it.
 */
function eventBridgeToQueue(scope: Construct, c: StageConfig, bucket: s3.IBucket, queues: Queues): events.Rule {
  const queue: QueuePair | undefined = queues.events;
  if (!queue) throw new Error(`yuba:${c.stage}: notifications: 'eventbridge' needs the events queue (usesEventsQueue)`);
  const pattern = sourceEventPattern(bucket.bucketName, c.source.prefixes, c.source.suffixes);
  const named = sourceEventPattern(c.source.name, c.source.prefixes, c.source.suffixes);
  const size = JSON.stringify({ source: named.source, 'detail-type': named.detailType, detail: named.detail }).length;
  if (size > EVENT_PATTERN_MAX_CHARS) {
    throw new Error(
      `yuba:${c.stage}: source.prefixes: with notifications 'eventbridge' the prefixes x suffixes make an event pattern of ${size} characters, ` +
        `more than EventBridge's ${EVENT_PATTERN_MAX_CHARS}; use fewer (ingest filters on its own) or another notifications mode`,
    );
  }
  bucket.enableEventBridgeNotification();
  const rule = new events.Rule(scope, 'SourceEvents', {
    ruleName: `${c.prefix}-source-events`,
    description: `S3 Object Created/Deleted events of ${c.source.name} to the yuba events queue`,
    eventPattern: pattern,
  });
  rule.addTarget(
    new targets.SqsQueue(queue.queue, {
      deadLetterQueue: queue.dlq,
      maxEventAge: Duration.hours(24),
      retryAttempts: 185,
    }),
  );
  return rule;
}

/** The rule's pattern: S3's created and deleted events of this bucket, keys filtered as ingest does. */
export function sourceEventPattern(bucketName: string, prefixes: string[], suffixes: string[]): events.EventPattern {
  const key = eventBridgeKeyFilter(prefixes, suffixes);
  return {
    source: ['aws.s3'],
    detailType: ['Object Created', 'Object Deleted'],
    detail: { bucket: { name: [bucketName] }, ...(key ? { object: { key } } : {}) },
  };
}

/**
 * EventBridge matchers for `detail.object.key` that accept exactly the keys S3's filters and
 * ingest accept: starting with one of the prefixes and ending with one of the suffixes (an empty
 * list: no condition); undefined when there is no filter. The key is not URL-encoded in these
 * events, so the lists apply as they are. EventBridge cannot require two matchers of one field
 * at once, so a prefix and a suffix become a wildcard `prefix*suffix` (with `*` and `\` escaped),
 * plus, as exact keys, those too short for it in which the two overlap ("ab" x "bc": "abc").
 */
export function eventBridgeKeyFilter(prefixes: string[], suffixes: string[]): Array<string | Record<string, string>> | undefined {
  if (prefixes.length === 0 && suffixes.length === 0) return undefined;
  if (suffixes.length === 0) return prefixes.map((prefix) => ({ prefix }));
  if (prefixes.length === 0) return suffixes.map((suffix) => ({ suffix }));
  const escape = (s: string) => s.replace(/[\\*]/g, (ch) => `\\${ch}`);
  const wildcards = new Set<string>();
  const exact = new Set<string>();
  for (const p of prefixes) {
    for (const s of suffixes) {
      wildcards.add(`${escape(p)}*${escape(s)}`);
      for (let overlap = 1; overlap <= Math.min(p.length, s.length); overlap++) {
        if (p.endsWith(s.slice(0, overlap))) exact.add(p + s.slice(overlap));
      }
    }
  }
  return [...[...wildcards].map((wildcard) => ({ wildcard })), ...exact];
}
