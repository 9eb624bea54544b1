/**
 * The SQS queues: the events queue (S3 notifications, or the bucket's EventBridge events, to
 * ingest) and the two work queues (jobs to the Lambda and the Fargate worker), each with its
 * dead-letter queue.
 *
 * Every queue: SQS-managed SSE (S3 notifications and EventBridge can publish to it, unlike an
 * AWS-managed KMS key), a policy that denies anything but TLS, and a redrive policy to its DLQ
 * after `maxReceiveCount` receives. yuba relies on the redrive: a permanently failing job is made
 * visible again at once, so it reaches the DLQ after `maxReceiveCount` receives instead of looping.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { NotificationMode, StageConfig, duration } from './config';

/**
 * Whether a notification mode delivers through the events queue: 'queue' (S3 sends to it) and
 * 'eventbridge' (an EventBridge rule does); 'direct' invokes ingest instead.
 */
export function usesEventsQueue(mode: NotificationMode): boolean {
  return mode === 'queue' || mode === 'eventbridge';
}

export interface QueuePair {
  readonly queue: sqs.Queue;
  readonly dlq: sqs.Queue;
}

export interface QueuesProps {
  readonly config: StageConfig;
  /** Whether S3 events go through the events queue (`usesEventsQueue(config.notifications)`). */
  readonly eventsQueue: boolean;
  /** Visibility timeout of the Fargate work queue: the worker's own YUBA_VISIBILITY_TIMEOUT_SECONDS. */
  readonly fargateVisibility: Duration;
  /** Timeout of the ingest function (the events queue's visibility is 6x it). */
  readonly ingestTimeout: Duration;
}

export class Queues extends Construct {
  readonly lambdaWork: QueuePair;
  readonly fargateWork: QueuePair;
  readonly events?: QueuePair;

  constructor(scope: Construct, id: string, props: QueuesProps) {
    super(scope, id);
    const c = props.config;
    // Lambda's SQS guidance: a visibility timeout of at least 6x the function timeout, so that a
    // batch retried by the poller after a throttle is not redelivered while still being worked on.
    this.lambdaWork = this.pair('LambdaWork', `${c.prefix}-work-lambda`, duration.lambdaQueueVisibility(c), c);
    // The Fargate worker extends visibility while a job runs (renewed every half), so the queue's
    // default only matters for a message whose worker died: it comes back after this long.
    this.fargateWork = this.pair('FargateWork', `${c.prefix}-work-fargate`, props.fargateVisibility, c);
    if (props.eventsQueue) {
      this.events = this.pair('Events', `${c.prefix}-events`, Duration.seconds(Math.min(6 * props.ingestTimeout.toSeconds(), 43200)), c);
    }
  }

  private pair(id: string, name: string, visibilityTimeout: Duration, c: StageConfig): QueuePair {
    const removalPolicy = c.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const dlq = new sqs.Queue(this, `${id}Dlq`, {
      queueName: `${name}-dlq`,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(c.dlqRetentionDays),
      removalPolicy,
    });
    const queue = new sqs.Queue(this, id, {
      queueName: name,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout,
      // Jobs are retried with backoff through visibility; 4 days is far beyond any retry schedule
      // and within the DLQ's retention, so a redriven message never expires on the way.
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: dlq, maxReceiveCount: c.maxReceiveCount },
      removalPolicy,
    });
    return { queue, dlq };
  }

  /** Every pair, for dashboards and alarms. */
  get all(): Array<{ name: string } & QueuePair> {
    const out = [
      { name: 'lambda work', ...this.lambdaWork },
      { name: 'fargate work', ...this.fargateWork },
    ];
    if (this.events) out.unshift({ name: 'events', ...this.events });
    return out;
  }
}
