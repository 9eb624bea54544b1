/**
 * One stage of yuba's AWS side, composed from constructs with one job each:
 * source bucket + notifications, queues, Lambdas (ingest, worker) with canary deployments,
 * the Fargate worker, the scheduled reconciler, observability, and the optional delivery path.
 */
import { CfnOutput, Duration, Stack, StackProps, Tags } from 'aws-cdk-lib';
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
import { Queues } from './queues';
import { Reconciler } from './reconciler';
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
  /** cdk-nag acknowledgements that matched nothing in this stack (expected: the conditional ones). */
  readonly unusedNagAcknowledgements: Acknowledgement[];

  constructor(scope: Construct, id: string, props: YubaStackProps) {
    super(scope, id, props);
    const c = props.config;
    Tags.of(this).add('project', 'yuba');
    Tags.of(this).add('stage', c.stage);

    const workerCredentials = loadCredentials(this, c.gcp.workerCredentialsFile, 'worker');
    const reconcilerCredentials = loadCredentials(this, c.gcp.reconcilerCredentialsFile, 'reconciler');

    const needLogs = c.source.mode === 'create' || c.delivery.enabled;
    const logs = needLogs ? logsBucket(this, c) : undefined;

    this.source = new SourceBucket(this, 'Source', { config: c, accessLogs: logs });
    this.queues = new Queues(this, 'Queues', {
      config: c,
      eventsQueue: c.notifications === 'queue',
      fargateVisibility: Duration.seconds(FARGATE_VISIBILITY_SECONDS),
      ingestTimeout: INGEST_TIMEOUT,
    });
    this.lambdas = new Lambdas(this, 'Lambdas', { config: c, queues: this.queues, source: this.source, workerCredentials });

    // S3 -> ingest: through the events queue (durable: survives ingest outages and throttles,
    // with its own DLQ) or straight to the ingest alias. One rule per prefix x suffix, since an S3
    // rule takes one of each; ingest filters again with the same lists.
    const destination = this.queues.events
      ? new s3n.SqsDestination(this.queues.events.queue)
      : new s3n.LambdaDestination(this.lambdas.ingest.alias);
    const filters = filterCombinations(c.source.prefixes, c.source.suffixes);
    for (const event of [s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED]) {
      for (const f of filters) this.source.bucket.addEventNotification(event, destination, ...(f ? [f] : []));
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
    });
    this.observability = new Observability(this, 'Observability', {
      config: c,
      queues: this.queues,
      lambdas: this.lambdas,
      fargateWorker: this.fargateWorker,
      reconciler: this.reconciler,
    });
    if (c.delivery.enabled && logs) {
      this.delivery = new Delivery(this, 'Delivery', {
        config: c,
        bucket: this.source.bucket,
        bucketIsOwned: c.source.mode === 'create',
        logs,
      });
    }

    // What terraform/ needs (worker_role_arns, reconciler_role_arns): fixed names, known before deploy.
    const names = roleNames(c);
    const arn = (name: string) => `arn:${this.partition}:iam::${this.account}:role/${name}`;
    new CfnOutput(this, 'WorkerRoleArns', { value: [arn(names.lambdaWorker), arn(names.fargateWorker)].join(',') });
    new CfnOutput(this, 'ReconcilerRoleArn', { value: arn(names.reconciler) });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.observability.topic.topicArn });
    new CfnOutput(this, 'DashboardName', { value: c.prefix });

    // Last, once every resource exists (the bucket notifications handler is added lazily, above).
    this.unusedNagAcknowledgements = applyNagSuppressions(this, {
      sourceBucket: this.source.bucket,
      hasCertificate: Boolean(c.delivery.certificateArn),
      hasWebAcl: Boolean(c.delivery.webAclArn),
      hasGeoRestriction: Boolean(c.delivery.allowCountries?.length),
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
