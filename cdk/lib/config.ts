/**
 * The typed configuration of one stage (dev, prod) of the yuba AWS app.
 *
 * Defaults live here, per stage; `cdk.json` (or `-c yuba:<stage>=<json>` on the command line)
 * overrides any field. Everything that differs between an SRE team's accounts (account, region,
 * bucket names, the GCP credential files) comes from there, never from code.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import { SETTINGS, settingProblem } from './settings';

export type StageName = 'dev' | 'prod';

/**
 * How S3 events reach ingest: `queue`, S3 notifications to the events queue; `direct`, S3
 * notifications invoke ingest; `eventbridge`, the bucket sends its events to EventBridge and a
 * rule sends them to the events queue (for a bucket whose own notifications would overlap ours).
 */
export type NotificationMode = 'queue' | 'direct' | 'eventbridge';

export const NOTIFICATION_MODES: readonly NotificationMode[] = ['queue', 'direct', 'eventbridge'];

export interface SourceBucketConfig {
  /** Name of the bucket to replicate. */
  readonly name: string;
  /** `import` (the usual case: an existing bucket) or `create` (a new, private, versioned bucket). */
  readonly mode: 'import' | 'create';
  /**
   * Whether the bucket is versioned. Grants `s3:GetObjectVersion`, which the worker needs to resume
   * a cut read pinned to the version it started on. Always true for a created bucket.
   */
  readonly versioned: boolean;
  /** The KMS key of an imported SSE-KMS bucket: the readers get `kms:Decrypt` on it, nothing else. */
  readonly kmsKeyArn?: string;
  /** Only keys starting with one of these are notified (S3 filters: one rule per prefix x suffix). */
  readonly prefixes: string[];
  /** Only keys ending with one of these are notified. */
  readonly suffixes: string[];
}

export interface LambdaWorkerConfig {
  /** Objects larger than this (or of unknown size) go to the Fargate queue: YUBA_ROUTE_THRESHOLD_BYTES. */
  readonly routeThresholdBytes: number;
  /** Jobs one invocation works on at once (YUBA_CONCURRENCY). */
  readonly concurrency: number;
  readonly timeoutSeconds: number;
  /** SQS batch size of the event source. */
  readonly batchSize: number;
  /** Maximum batching window of the event source. */
  readonly batchWindowSeconds: number;
  /** Maximum concurrent invocations the event source starts (2..1000). */
  readonly maxConcurrency: number;
  /** Reserved concurrency of the function: a ceiling that protects the account, >= maxConcurrency. */
  readonly reservedConcurrency?: number;
}

export interface FargateWorkerConfig {
  /** Task size. Memory is checked against the worker's formula at synth time. */
  readonly cpu: number;
  readonly memoryMiB: number;
  /** YUBA_CONCURRENCY of one task. */
  readonly concurrency: number;
  readonly maxTasks: number;
  /** Messages (visible + in flight) one task is expected to carry: the scaling target. */
  readonly backlogPerTask: number;
  /**
   * Tasks that run even when the queue is empty: the warm minimum. 0 scales to zero when idle,
   * and the first large object then waits for the pool's scale-from-zero time
   * (`fargateScaleOutSeconds`), which the lag objective must cover (checked by `validate`).
   */
  readonly minTasks: number;
  /**
   * The image's digest (sha256:...), to deploy an image other than the one `make package` built
   * last, e.g. to roll back to an earlier one. Unset: the package's (target/package/manifest.json).
   * The image lives in the stage's ECR repository (`imageRepositoryName`), always named by digest.
   */
  readonly imageDigest?: string;
}

export interface ReconcilerConfig {
  /** EventBridge Scheduler expression. */
  readonly schedule: string;
  readonly timezone: string;
  readonly cpu: number;
  readonly memoryMiB: number;
  /**
   * How long the scheduled backfill waits for the work queues to hold none of its jobs before it
   * looks at the keys it enqueued again (YUBA_RECONCILE_VERIFY_ENQUEUED): in sync is repaired,
   * still drifting is failed (exit 1, ReconcileFailed). Longer than the Fargate pool's scale-out
   * from zero (fargateScaleOutSeconds), or large objects' jobs would not even have started.
   */
  readonly verifyEnqueuedSeconds: number;
  /** Extra YUBA_RECONCILE_* settings (e.g. YUBA_RECONCILE_PREFIX); the task runs `backfill --json --no-checkpoint`. */
  readonly environment: Record<string, string>;
  /**
   * Where S3 Inventory writes the source bucket's reports: the scheduled run reads the newest
   * report instead of listing the bucket (README "Reconcile"), and its role may read that folder
   * and nothing else of the bucket. Undefined: the run lists the source bucket.
   */
  readonly sourceInventory?: SourceInventoryConfig;
  /**
   * Key-range shards of the scheduled run (2..40; undefined: one task). The schedule then starts
   * a Step Functions execution: a plan task cuts the source inventory (required) into this many
   * parts, the shards run at once (each retried alone if it fails), and a merge task's exit
   * code is the run's verdict (lib/reconcile-fanout.ts).
   */
  readonly shards?: number;
}

export interface SourceInventoryConfig {
  /** The inventory configuration's destination bucket. */
  readonly bucket: string;
  /** The configuration's folder in it, `destination-prefix/source-bucket/config-ID/` (ending in /). */
  readonly folder: string;
  /**
   * The task's ephemeral storage (21-200 GiB on Fargate), where the report is sorted: about
   * 100 bytes per object, so 200 GiB holds a report of some 2 billion objects.
   */
  readonly storageGiB: number;
}

/**
 * One alarm of the multi-window, multi-burn-rate pattern (Google SRE workbook, "Alerting on
 * SLOs"): it fires when the error budget burns `rate` times faster than the objective allows over
 * both the long window (enough budget is gone to matter) and the short one (it is still burning),
 * so it pages fast for a sharp outage and stops paging soon after recovery.
 */
export interface BurnRateAlarm {
  readonly rate: number;
  readonly longWindowMinutes: number;
  readonly shortWindowMinutes: number;
}

export interface AlarmConfig {
  /**
   * The replication lag objective: a job replicated later than this after its upload is late (bad
   * for the SLO); the queues' oldest message above it alarms.
   */
  readonly lagObjectiveSeconds: number;
  /** The error budget: the share of jobs that may be bad (late, dead-lettered, stuck) over `budgetDays` (0.01 = 1 %). */
  readonly errorBudget: number;
  /** The SLO's compliance period, over which the budget is spent (the dashboard's remaining budget). */
  readonly budgetDays: number;
  /** The burn-rate alarms (none of them gates deploys: see observability.ts). */
  readonly burnRates: BurnRateAlarm[];
  /** E-mail addresses subscribed to the alarm topic (optional; subscribe anything else to the topic). */
  readonly emails: string[];
}

/**
 * The delivery origin, yuba-serve, on Lambda: the function behind CloudFront's function URL origin
 * (lib/serve.ts). It answers one request per instance, streaming the body: past the first 6 MB a
 * streamed response is capped at 2 MB/s, so `timeoutSeconds` bounds the largest original the
 * failover can serve (about 6 MB + 2 MB/s x timeout; docs/DEPLOY.md).
 */
export interface ServeConfig {
  /** The function's memory: with variants, at least the worker's rule for one job (renders on a miss). */
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  /** Reserved concurrency of the function: a ceiling on renders at once across instances. */
  readonly reservedConcurrency?: number;
}

export interface DeliveryConfig {
  /**
   * A CloudFront distribution: originals from the source bucket (origin access control), failing
   * over to yuba-serve (a Lambda function URL, also through origin access control); variants
   * straight from yuba-serve. Every origin is one CloudFront can authenticate to.
   */
  readonly enabled: boolean;
  readonly serve: ServeConfig;
  /** Optional custom domain and ACM certificate (us-east-1); enforces TLS 1.2 when given. */
  readonly domainNames?: string[];
  readonly certificateArn?: string;
  readonly priceClass: 'PriceClass_100' | 'PriceClass_200' | 'PriceClass_All';
  /**
   * The longest CloudFront serves what it cached before asking the origin again (the cache
   * policy's MaxTTL, which caps the origin's max-age): the bound on how long a deleted or
   * replaced image is still served from the edge. Past it CloudFront revalidates by ETag, and an
   * unchanged object costs a 304 (lib/delivery.ts, docs/DEPLOY.md "How long CloudFront serves a
   * deleted image").
   */
  readonly edgeCacheSeconds: number;
  /** Optional AWS WAF web ACL (ARN, in us-east-1) for the distribution. */
  readonly webAclArn?: string;
  /** Optional ISO country codes the distribution serves (allow list); empty: everywhere. */
  readonly allowCountries?: string[];
}

export interface GcpConfig {
  /** The replica bucket (terraform output bucket_name): YUBA_GCS_BUCKET. */
  readonly bucket: string;
  /** Files with terraform's worker_credentials_json / reconciler_credentials_json outputs. */
  readonly workerCredentialsFile: string;
  readonly reconcilerCredentialsFile: string;
  /** The file with terraform's serve_credentials_json: read only when delivery is enabled. */
  readonly serveCredentialsFile: string;
}

/**
 * The CloudWatch namespace a stage's workers and reconciler write their metrics in
 * (YUBA_METRICS_NAMESPACE), and its dashboard and alarms read: one per stage, so that a dev stage
 * deployed into the production account never counts into production's alarms or rollbacks.
 */
export function metricsNamespace(c: StageConfig): string {
  return c.prefix;
}

/** The stage's ECR repository (the Registry stack makes it; the image holds the worker and the reconciler). */
export function imageRepositoryName(c: StageConfig): string {
  return `${c.prefix}-fargate`;
}

export interface StageConfig {
  readonly stage: StageName;
  /** Prefix of every physical name (roles, queues, functions, cluster). */
  readonly prefix: string;
  readonly account?: string;
  readonly region?: string;
  readonly source: SourceBucketConfig;
  readonly notifications: NotificationMode;
  readonly gcp: GcpConfig;
  /** YUBA_VARIANTS (a JSON document) for both worker homes; empty: no variants. */
  readonly variants: string;
  readonly mirrorDeletes: boolean;
  readonly lambdaWorker: LambdaWorkerConfig;
  readonly fargateWorker: FargateWorkerConfig;
  readonly reconciler: ReconcilerConfig;
  readonly alarms: AlarmConfig;
  readonly delivery: DeliveryConfig;
  /** Times a message is received before it goes to its DLQ. */
  readonly maxReceiveCount: number;
  /** How long DLQ messages are kept (days, max 14). */
  readonly dlqRetentionDays: number;
  readonly logRetentionDays: number;
  /** NAT gateways of the task VPC: 0 runs tasks in public subnets with public IPs and no ingress. */
  readonly natGateways: number;
  /** Canary deployment config of the Lambda aliases (a CodeDeploy predefined config name). */
  readonly canary: 'CANARY_10PERCENT_5MINUTES' | 'CANARY_10PERCENT_10MINUTES' | 'CANARY_10PERCENT_30MINUTES' | 'LINEAR_10PERCENT_EVERY_1MINUTE' | 'ALL_AT_ONCE';
  /** Keep (RETAIN) or delete (DESTROY) stateful resources the app creates, on stack deletion. */
  readonly retainData: boolean;
}

/**
 * The worker's memory rule, as the programs apply it (libs/replicate/src/memory.rs): the contract
 * `cdk/lib/generated/memory.json`, written from the Rust constants by `tests/tests/e2e/memory.rs`
 * under `cargo test`, with worked examples of the budget that `cdk/test/config.test.ts` holds
 * `imagesBudgetBytes` to. The worker admits image work by this budget: a job waits while it is
 * taken, and an image whose render would exceed all of it gets no variants
 * (`too_large_for_memory`). The CDK sizes the workers so that the budget holds `concurrency` of
 * the photo below at once.
 */
export interface MemoryContract {
  /** The variable that gives a process its memory in MiB (YUBA_MEMORY_MIB); set on the Fargate tasks. */
  readonly memorySetting: string;
  /** What the process takes before any job: the binary, the runtime, the clients. */
  readonly processBaseMiB: number;
  /** The share of what the base and the uploads leave that is kept back for the allocator. */
  readonly allocatorSlackPercent: number;
  /** With variants, a process whose budget is below this refuses to start. */
  readonly minImagesBudgetMiB: number;
  /** The photo the deployment is sized for, and one job's memory for it (its render and the source held whole). */
  readonly photo: { readonly description: string; readonly jobMiB: number };
  readonly examples: ReadonlyArray<{
    readonly memoryMiB: number;
    readonly uploadChunkBytes: number;
    readonly parallelUploads: number;
    readonly concurrency: number;
    /** null: the base and the uploads take more than the memory. */
    readonly imagesBudgetBytes: number | null;
  }>;
}

export const MEMORY_CONTRACT_FILE = path.join(__dirname, 'generated', 'memory.json');

export function loadMemoryContract(file = MEMORY_CONTRACT_FILE): MemoryContract {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as MemoryContract;
}

/** The contract the workers are sized by. */
export const MEMORY: MemoryContract = loadMemoryContract();

const MIB = 1024 * 1024;
/** The programs' defaults of YUBA_UPLOAD_CHUNK_BYTES and YUBA_GCS_PARALLEL_UPLOADS (libs/gcs), which the stacks do not set. */
export const DEFAULT_UPLOAD_CHUNK_BYTES = 8 * MIB;
export const DEFAULT_PARALLEL_UPLOADS = 4;
/** The reconciler's `--concurrency` default (YUBA_RECONCILE_CONCURRENCY; bins/reconciler/src/cli.rs). */
export const RECONCILER_DEFAULT_CONCURRENCY = 16;
/**
 * Lambda's memory range: "between 128 MB and 10,240 MB in 1-MB increments"
 * (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
 */
export const LAMBDA_MEMORY_MIB = { min: 128, max: 10240 } as const;

interface TemplateResources {
  readonly Resources?: Record<string, { readonly Type?: string; readonly Properties?: { readonly MemorySize?: unknown } }>;
}

/**
 * The Lambda functions of a synthesized template whose memory Lambda would refuse at deploy time
 * (LAMBDA_MEMORY_MIB), each named with what is wrong. A function without MemorySize gets
 * Lambda's default, 128 MB.
 */
export function lambdaMemoryProblems(template: TemplateResources): string[] {
  return Object.entries(template.Resources ?? {})
    .filter(([, r]) => r.Type === 'AWS::Lambda::Function' && r.Properties?.MemorySize !== undefined)
    .flatMap(([id, r]) => {
      const memory = r.Properties?.MemorySize;
      const ok = typeof memory === 'number' && Number.isInteger(memory) && memory >= LAMBDA_MEMORY_MIB.min && memory <= LAMBDA_MEMORY_MIB.max;
      return ok ? [] : [`${id}: MemorySize ${JSON.stringify(memory)} is not a whole number of MB from ${LAMBDA_MEMORY_MIB.min} to ${LAMBDA_MEMORY_MIB.max}`];
    });
}

/**
 * The streaming copies' buffers, bounded by the configuration whatever is sent: each job in
 * flight holds at most `parallelUploads + 1` chunks (README "Memory").
 */
export function streamingBytes(chunkBytes: number, parallelUploads: number, concurrency: number): number {
  return chunkBytes * (parallelUploads + 1) * concurrency;
}

/**
 * Bytes for image work in a process of `memoryMiB` (the Rust `images_budget`): what is left after
 * the process's base and the streaming buffers, less the allocator's slack; null when nothing is
 * left. Integer bytes, exactly as the worker computes them.
 */
export function imagesBudgetBytes(memoryMiB: number, chunkBytes: number, parallelUploads: number, concurrency: number): number | null {
  const left = memoryMiB * MIB - MEMORY.processBaseMiB * MIB - streamingBytes(chunkBytes, parallelUploads, concurrency);
  if (left < 0) return null;
  return left - Math.floor((left * MEMORY.allocatorSlackPercent) / 100);
}

const roundUp64 = (mib: number) => Math.ceil(mib / 64) * 64;

/**
 * The least memory (MiB, a multiple of 64) a worker running `concurrency` jobs at once needs
 * (README "Memory"): without variants, the process's base and its streaming buffers; with them,
 * enough that the images budget holds `concurrency` photos (MEMORY.photo) at once, and never less
 * than the budget the worker refuses to start below (MEMORY.minImagesBudgetMiB).
 */
export function workerMemoryMiB(concurrency: number, withVariants: boolean, chunkBytes = DEFAULT_UPLOAD_CHUNK_BYTES, parallelUploads = DEFAULT_PARALLEL_UPLOADS): number {
  if (!withVariants) return roundUp64(MEMORY.processBaseMiB + Math.ceil(streamingBytes(chunkBytes, parallelUploads, concurrency) / MIB));
  const photos = Math.max(concurrency * MEMORY.photo.jobMiB, MEMORY.minImagesBudgetMiB);
  return memoryForBudgetMiB(photos, chunkBytes, parallelUploads, concurrency);
}

/** The least memory (MiB, a multiple of 64) whose images budget is at least `budgetMiB`. */
function memoryForBudgetMiB(budgetMiB: number, chunkBytes: number, parallelUploads: number, concurrency: number): number {
  let memory = roundUp64(MEMORY.processBaseMiB + Math.ceil(streamingBytes(chunkBytes, parallelUploads, concurrency) / MIB));
  while ((imagesBudgetBytes(memory, chunkBytes, parallelUploads, concurrency) ?? -1) < budgetMiB * MIB) memory += 64;
  return memory;
}

const common = {
  notifications: 'queue' as NotificationMode,
  variants: '',
  mirrorDeletes: true,
  maxReceiveCount: 5,
  dlqRetentionDays: 14,
  canary: 'CANARY_10PERCENT_5MINUTES' as const,
};

/** The SRE workbook's page-worthy pair for a 30-day budget: 2 % of it in an hour, 5 % in six hours. */
export const DEFAULT_BURN_RATES: BurnRateAlarm[] = [
  { rate: 14.4, longWindowMinutes: 60, shortWindowMinutes: 5 },
  { rate: 6, longWindowMinutes: 360, shortWindowMinutes: 30 },
];

/**
 * yuba-serve's defaults: 1 GiB (the worker's floor with variants, and more CPU for a render on a
 * miss) and 30 s, CloudFront's default read timeout for an origin.
 */
export const DEFAULT_SERVE: ServeConfig = { memoryMiB: 1024, timeoutSeconds: 30 };
/** Five minutes: a deleted image leaves the edge within them, for a revalidation per hot object and edge cache per five minutes. */
export const DEFAULT_EDGE_CACHE_SECONDS = 300;
/** A cache policy's MaxTTL is at most a year (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-cloudfront-cachepolicy-cachepolicyconfig.html). */
const MAX_EDGE_CACHE_SECONDS = 31_536_000;

export const DEFAULTS: Record<StageName, StageConfig> = {
  dev: {
    ...common,
    stage: 'dev',
    prefix: 'yuba-dev',
    source: { name: 'yuba-dev-images', mode: 'import', versioned: false, prefixes: [], suffixes: [] },
    gcp: { bucket: 'yuba-dev-replica', workerCredentialsFile: 'config/dev-worker-gcp.json', reconcilerCredentialsFile: 'config/dev-reconciler-gcp.json', serveCredentialsFile: 'config/dev-serve-gcp.json' },
    lambdaWorker: {
      routeThresholdBytes: 64 * 1024 * 1024,
      concurrency: 4,
      timeoutSeconds: 60,
      batchSize: 10,
      batchWindowSeconds: 1,
      maxConcurrency: 5,
    },
    fargateWorker: {
      cpu: 512,
      memoryMiB: 1024,
      concurrency: 2,
      maxTasks: 2,
      backlogPerTask: 20,
      // Idle dev costs nothing; its lag objective covers the pool's scale from zero.
      minTasks: 0,
    },
    reconciler: { schedule: 'cron(0 3 * * ? *)', timezone: 'UTC', cpu: 512, memoryMiB: 1024, verifyEnqueuedSeconds: 1800, environment: {} },
    alarms: { lagObjectiveSeconds: 900, errorBudget: 0.05, budgetDays: 30, burnRates: DEFAULT_BURN_RATES, emails: [] },
    delivery: { enabled: false, serve: DEFAULT_SERVE, priceClass: 'PriceClass_100', edgeCacheSeconds: DEFAULT_EDGE_CACHE_SECONDS },
    logRetentionDays: 14,
    dlqRetentionDays: 7,
    natGateways: 0,
    canary: 'ALL_AT_ONCE',
    retainData: false,
  },
  prod: {
    ...common,
    stage: 'prod',
    prefix: 'yuba-prod',
    source: { name: 'yuba-prod-images', mode: 'import', versioned: true, prefixes: [], suffixes: [] },
    gcp: { bucket: 'yuba-prod-replica', workerCredentialsFile: 'config/prod-worker-gcp.json', reconcilerCredentialsFile: 'config/prod-reconciler-gcp.json', serveCredentialsFile: 'config/prod-serve-gcp.json' },
    lambdaWorker: {
      routeThresholdBytes: 64 * 1024 * 1024,
      concurrency: 8,
      // Objects over routeThresholdBytes go to Fargate, so a job here is seconds. A message whose
      // invocation dies (a timeout, a crash) returns after the queue's visibility, 6 x timeout =
      // 12 minutes; one that fails returns after the worker's own backoff (YUBA_RETRY_*_SECONDS).
      timeoutSeconds: 120,
      batchSize: 10,
      batchWindowSeconds: 2,
      maxConcurrency: 50,
      reservedConcurrency: 100,
    },
    fargateWorker: {
      cpu: 1024,
      memoryMiB: 2048,
      concurrency: 8,
      maxTasks: 20,
      backlogPerTask: 40,
      // A 120 s objective cannot wait for a scale from zero (fargateScaleOutSeconds): one task
      // stays warm (1 vCPU / 2 GiB ARM64, on-demand).
      minTasks: 1,
    },
    reconciler: { schedule: 'cron(0 3 * * ? *)', timezone: 'UTC', cpu: 1024, memoryMiB: 2048, verifyEnqueuedSeconds: 1800, environment: {} },
    alarms: { lagObjectiveSeconds: 120, errorBudget: 0.01, budgetDays: 30, burnRates: DEFAULT_BURN_RATES, emails: [] },
    delivery: { enabled: true, serve: DEFAULT_SERVE, priceClass: 'PriceClass_All', edgeCacheSeconds: DEFAULT_EDGE_CACHE_SECONDS },
    logRetentionDays: 90,
    natGateways: 2,
    retainData: true,
  },
};

/** A deep partial, for overrides from context. */
export type Overrides<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : Overrides<T[K]>) : T[K] };

function merge<T>(base: T, over: unknown): T {
  if (over === undefined || over === null) return base;
  if (typeof base !== 'object' || base === null || Array.isArray(base) || typeof over !== 'object' || Array.isArray(over)) {
    return over as T;
  }
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) {
    out[k] = merge((base as Record<string, unknown>)[k], v);
  }
  return out as T;
}

/** The stage's configuration: defaults, then overrides; validated so that a bad value fails synth with its name. */
export function stageConfig(stage: StageName, overrides?: Overrides<StageConfig> | string): StageConfig {
  const over = typeof overrides === 'string' ? (JSON.parse(overrides) as Overrides<StageConfig>) : overrides;
  const config = merge(DEFAULTS[stage], over);
  refuseRemovedFields(config);
  validate(config);
  return config;
}

/**
 * Fields an earlier version took, with what replaces them: a cdk.json written for that version
 * must fail synth, not deploy with the setting silently dropped.
 */
const REMOVED_FIELDS: Record<string, Record<string, string>> = {
  delivery: {
    failoverDomain:
      'removed: the failover origin is yuba-serve, a Lambda function URL behind origin access control (delivery.serve); CloudFront cannot authenticate to any other origin that reads the private replica',
    failoverPath: 'removed with failoverDomain: yuba-serve reads the URL scheme of libs/delivery (docs/design/delivery.md)',
  },
  fargateWorker: {
    onDemandBase: 'use fargateWorker.minTasks (tasks kept warm); the pool is on-demand only, since ARM64 tasks cannot count on Fargate Spot',
    spotWeight: 'removed: the pool is on-demand only, since ARM64 tasks cannot count on Fargate Spot (lib/fargate-worker.ts)',
    onDemandWeight: 'removed: the pool is on-demand only',
  },
};

function refuseRemovedFields(c: StageConfig): void {
  for (const [section, fields] of Object.entries(REMOVED_FIELDS)) {
    const given = (c as unknown as Record<string, Record<string, unknown>>)[section] ?? {};
    for (const [field, why] of Object.entries(fields)) if (field in given) fail(c, `${section}.${field}`, why);
  }
}

/**
 * S3's rules for general purpose bucket names: 3-63 characters of lowercase letters, digits, dots
 * and hyphens, starting and ending with a letter or digit, no two adjacent dots, not an IP
 * address, and none of the reserved prefixes (xn--, sthree-, amzn-s3-demo-) or suffixes
 * (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3).
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
 */
export function bucketNameProblem(name: string): string | undefined {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name)) {
    return `${JSON.stringify(name)} is not an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit`;
  }
  if (name.includes('..')) return `${JSON.stringify(name)} has two adjacent dots, which S3 bucket names may not`;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return `${JSON.stringify(name)} is formatted as an IP address, which S3 bucket names may not be`;
  const prefix = ['xn--', 'sthree-', 'amzn-s3-demo-'].find((p) => name.startsWith(p));
  if (prefix) return `${JSON.stringify(name)} starts with ${prefix}, which S3 reserves`;
  const suffix = ['-s3alias', '--ol-s3', '.mrap', '--x-s3', '--table-s3'].find((p) => name.endsWith(p));
  if (suffix) return `${JSON.stringify(name)} ends with ${suffix}, which S3 reserves`;
  return undefined;
}

/** The ephemeral storage a Fargate task may have (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_EphemeralStorage.html). */
export const FARGATE_EPHEMERAL_STORAGE_GIB = { min: 21, max: 200 } as const;

/** The setting a source inventory reaches the reconciler as (bins/reconciler/src/cli.rs). */
export const SOURCE_INVENTORY_SETTING = 'YUBA_RECONCILE_SOURCE_INVENTORY';

/** The settings a shard's plan and index reach the reconciler as (bins/reconciler/src/cli.rs). */
export const PLAN_SETTING = 'YUBA_RECONCILE_PLAN';
export const SHARD_SETTING = 'YUBA_RECONCILE_SHARD';
/** The setting a run's key prefix reaches the reconciler as (bins/reconciler/src/cli.rs); a shard refuses it. */
export const RECONCILE_PREFIX_SETTING = 'YUBA_RECONCILE_PREFIX';

/**
 * The most shards a stage runs: the shards are the iterations of an inline Map state, which runs
 * at most 40 at once ("In this mode, the Map state supports up to 40 concurrent iterations",
 * https://docs.aws.amazon.com/step-functions/latest/dg/state-map-inline.html); more would wait
 * for one another, and a billion keys is 25 million a shard at 40.
 */
export const MAX_STAGE_SHARDS = 40;

function validateShards(c: StageConfig): void {
  for (const name of [PLAN_SETTING, SHARD_SETTING]) {
    if (name in c.reconciler.environment) fail(c, `reconciler.environment.${name}`, 'is set by the sharded run\'s state machine (reconciler.shards), per task');
  }
  const shards = c.reconciler.shards;
  if (shards === undefined) return;
  if (!(Number.isInteger(shards) && shards >= 2 && shards <= MAX_STAGE_SHARDS)) {
    fail(c, 'reconciler.shards', `must be a whole number, 2..${MAX_STAGE_SHARDS} (the shards run as an inline Map's iterations, at most 40 at once); leave it out for one task`);
  }
  if (!c.reconciler.sourceInventory) fail(c, 'reconciler.shards', 'needs reconciler.sourceInventory: the plan cuts the inventory report into the shards\' parts');
  if (c.source.prefixes.length > 0) fail(c, 'reconciler.shards', 'covers the whole bucket (a plan has no prefix): leave source.prefixes empty, or run one task');
  // A shard's range is its part of the plan: the reconciler refuses --shard with --prefix, from
  // its flag or its variable alike (bins/reconciler/src/cli.rs, `conflicts_with_all` on `shard`).
  if (RECONCILE_PREFIX_SETTING in c.reconciler.environment) {
    fail(c, `reconciler.environment.${RECONCILE_PREFIX_SETTING}`, 'is refused by every shard (reconciler.shards covers the whole bucket): leave it out, or run one task');
  }
}

function validateSourceInventory(c: StageConfig): void {
  const sourceProblem = bucketNameProblem(c.source.name);
  if (sourceProblem) fail(c, 'source.name', sourceProblem);
  if (SOURCE_INVENTORY_SETTING in c.reconciler.environment) {
    fail(c, `reconciler.environment.${SOURCE_INVENTORY_SETTING}`, 'is set from reconciler.sourceInventory, which also grants the task reading it: set that instead');
  }
  const inv = c.reconciler.sourceInventory;
  if (inv === undefined) return;
  const problem = bucketNameProblem(inv.bucket);
  if (problem) fail(c, 'reconciler.sourceInventory.bucket', problem);
  if (!inv.folder.endsWith('/') || inv.folder.startsWith('/')) {
    fail(c, 'reconciler.sourceInventory.folder', `${JSON.stringify(inv.folder)}: name the configuration's folder, destination-prefix/${c.source.name}/config-ID/, ending in / and not starting with it`);
  }
  const { min, max } = FARGATE_EPHEMERAL_STORAGE_GIB;
  if (!(Number.isInteger(inv.storageGiB) && inv.storageGiB >= min && inv.storageGiB <= max)) {
    fail(c, 'reconciler.sourceInventory.storageGiB', `must be a whole number of GiB, ${min}..${max} (Fargate's ephemeral storage)`);
  }
}

function fail(config: StageConfig, field: string, why: string): never {
  throw new Error(`yuba:${config.stage}: ${field}: ${why}`);
}

/**
 * A stage's prefix. It names every AWS resource of the stage (role names are at most 64
 * characters: the longest is PREFIX-reconciler-task), and on the GCP side terraform derives the
 * stage's service accounts (PREFIX-reconciler: 6-30 characters, starting with a letter) and its
 * workload identity pool (PREFIX-aws: the prefix gcp- is Google's) from it. scripts/check_terraform.py
 * reads this rule and holds terraform's aws_stage_prefix to it.
 */
export const STAGE_PREFIX = /^(?!gcp)[a-z][a-z0-9-]{0,19}$/;

export function validate(c: StageConfig): void {
  const lw = c.lambdaWorker;
  if (lw.timeoutSeconds < 1 || lw.timeoutSeconds > 900) fail(c, 'lambdaWorker.timeoutSeconds', 'must be 1..900');
  // 6 x timeout (the visibility timeout Lambda's SQS guidance asks for) must fit SQS's 12 hours.
  if (lw.batchSize < 1 || lw.batchSize > 10000) fail(c, 'lambdaWorker.batchSize', 'must be 1..10000');
  if (lw.batchSize > 10 && lw.batchWindowSeconds < 1) fail(c, 'lambdaWorker.batchWindowSeconds', 'a batch size over 10 needs a batching window');
  if (lw.maxConcurrency < 2 || lw.maxConcurrency > 1000) fail(c, 'lambdaWorker.maxConcurrency', 'must be 2..1000 (SQS event source limit)');
  if (lw.reservedConcurrency !== undefined && lw.reservedConcurrency < lw.maxConcurrency) {
    fail(c, 'lambdaWorker.reservedConcurrency', 'must be at least maxConcurrency, or the event source is throttled');
  }
  const lambdaNeeds = workerMemoryMiB(lw.concurrency, c.variants !== '');
  if (lambdaNeeds > LAMBDA_MEMORY_MIB.max) {
    fail(c, 'lambdaWorker.concurrency', `${lw.concurrency} jobs at once need ${lambdaNeeds} MiB (README "Memory": ${memoryNeeds(lw.concurrency, c.variants !== '')}), more than Lambda's ${LAMBDA_MEMORY_MIB.max} MiB: lower it`);
  }
  const fw = c.fargateWorker;
  const variants = c.variants !== '';
  const needed = workerMemoryMiB(fw.concurrency, variants);
  if (fw.memoryMiB < needed) {
    fail(c, 'fargateWorker.memoryMiB', `${fw.memoryMiB} MiB is too little for concurrency ${fw.concurrency}: the worker needs at least ${needed} MiB (README "Memory": ${memoryNeeds(fw.concurrency, variants)})`);
  }
  if (fw.maxTasks < 1) fail(c, 'fargateWorker.maxTasks', 'must be at least 1');
  if (fw.minTasks < 0 || fw.minTasks > fw.maxTasks) fail(c, 'fargateWorker.minTasks', 'must be 0..maxTasks');
  validateAlarms(c);
  // A message keeps its first enqueue time in the DLQ: the DLQ must keep messages longer than the
  // work queues (4 days), or redriven messages would expire almost at once.
  if (c.dlqRetentionDays < 5 || c.dlqRetentionDays > 14) fail(c, 'dlqRetentionDays', 'must be 5..14 (longer than the 4-day queues)');
  if (c.maxReceiveCount < 1 || c.maxReceiveCount > 1000) fail(c, 'maxReceiveCount', 'must be 1..1000');
  if (!STAGE_PREFIX.test(c.prefix)) fail(c, 'prefix', 'a lowercase letter, then lowercase letters, digits and dashes, at most 20 in all, not starting with "gcp"');
  if (c.variants !== '') {
    try {
      JSON.parse(c.variants);
    } catch (e) {
      fail(c, 'variants', `not JSON: ${(e as Error).message}`);
    }
  }
  validateReconcilerMemory(c);
  validateSourceInventory(c);
  validateShards(c);
  if (c.delivery.domainNames && !c.delivery.certificateArn) fail(c, 'delivery.certificateArn', 'required with domainNames');
  validateServe(c);
  // A misspelt mode must not fall through to another one (anything not 'queue' used to mean direct).
  if (!NOTIFICATION_MODES.includes(c.notifications)) fail(c, 'notifications', `${JSON.stringify(c.notifications)} is not one of ${NOTIFICATION_MODES.join(', ')}`);
}

/**
 * yuba-serve renders a missing variant with the worker's transform and memory admission, one
 * request per Lambda instance: with variants its memory must hold one job by the worker's rule.
 * Its timeout is a Lambda timeout (1-900 s).
 */
function validateServe(c: StageConfig): void {
  const s = c.delivery.serve;
  if (!Number.isInteger(s.timeoutSeconds) || s.timeoutSeconds < 1 || s.timeoutSeconds > 900) fail(c, 'delivery.serve.timeoutSeconds', 'must be a whole number of seconds, 1..900 (a Lambda timeout)');
  if (!Number.isInteger(s.memoryMiB) || s.memoryMiB < LAMBDA_MEMORY_MIB.min || s.memoryMiB > LAMBDA_MEMORY_MIB.max) {
    fail(c, 'delivery.serve.memoryMiB', `must be a whole number of MB from ${LAMBDA_MEMORY_MIB.min} to ${LAMBDA_MEMORY_MIB.max}`);
  }
  const variants = c.variants !== '';
  const needed = workerMemoryMiB(1, variants);
  if (s.memoryMiB < needed) fail(c, 'delivery.serve.memoryMiB', `${s.memoryMiB} MiB is too little to render a variant on a miss: at least ${needed} MiB (README "Memory": ${memoryNeeds(1, variants)})`);
  if (s.reservedConcurrency !== undefined && (!Number.isInteger(s.reservedConcurrency) || s.reservedConcurrency < 1)) fail(c, 'delivery.serve.reservedConcurrency', 'must be a whole number, at least 1');
  const edge = c.delivery.edgeCacheSeconds;
  if (!Number.isInteger(edge) || edge < 0 || edge > MAX_EDGE_CACHE_SECONDS) fail(c, 'delivery.edgeCacheSeconds', `must be a whole number of seconds, 0..${MAX_EDGE_CACHE_SECONDS} (a cache policy's MaxTTL)`);
}

/** What a worker of `concurrency` jobs needs memory for, in words, for synth's messages. */
function memoryNeeds(concurrency: number, withVariants: boolean): string {
  const streaming = Math.ceil(streamingBytes(DEFAULT_UPLOAD_CHUNK_BYTES, DEFAULT_PARALLEL_UPLOADS, concurrency) / MIB);
  const parts = `${MEMORY.processBaseMiB} MiB for the process and ${streaming} MiB of upload buffers`;
  if (!withVariants) return parts;
  return `${parts}, then ${concurrency} x ${MEMORY.photo.jobMiB} MiB for as many photos at once (${MEMORY.photo.description}) after the allocator's ${MEMORY.allocatorSlackPercent} %`;
}

/** A numeric setting of the reconciler's extra environment, or its default. */
function reconcilerSetting(c: StageConfig, name: string, fallback: number): number {
  const value = Number(c.reconciler.environment[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

/**
 * The reconciler repairs with the worker's code (backfill --inline, verify --deep), so with
 * variants it refuses to start when its images budget is below MEMORY.minImagesBudgetMiB: its
 * task must leave that much at its concurrency (YUBA_RECONCILE_CONCURRENCY, else the CLI's
 * default) and upload settings. Its memory reaches it as MEMORY.memorySetting, from memoryMiB.
 */
function validateReconcilerMemory(c: StageConfig): void {
  const r = c.reconciler;
  for (const name of Object.keys(r.environment)) {
    const problem = settingProblem(SETTINGS, 'yuba-reconciler', false, name);
    if (problem !== undefined) fail(c, `reconciler.environment.${name}`, problem);
  }
  const scaleOut = fargateScaleOutSeconds();
  if (!(r.verifyEnqueuedSeconds > scaleOut && r.verifyEnqueuedSeconds <= 43_200)) {
    fail(c, 'reconciler.verifyEnqueuedSeconds', `must be more than the Fargate pool's scale-out from zero (${scaleOut} s) and at most 43200`);
  }
  if (MEMORY.memorySetting in r.environment) {
    fail(c, `reconciler.environment.${MEMORY.memorySetting}`, 'is set from reconciler.memoryMiB (the task\'s memory): change that instead');
  }
  if (c.variants === '') return;
  const concurrency = reconcilerSetting(c, 'YUBA_RECONCILE_CONCURRENCY', RECONCILER_DEFAULT_CONCURRENCY);
  const chunk = reconcilerSetting(c, 'YUBA_UPLOAD_CHUNK_BYTES', DEFAULT_UPLOAD_CHUNK_BYTES);
  const parallel = reconcilerSetting(c, 'YUBA_GCS_PARALLEL_UPLOADS', DEFAULT_PARALLEL_UPLOADS);
  const budget = imagesBudgetBytes(r.memoryMiB, chunk, parallel, concurrency) ?? 0;
  if (budget < MEMORY.minImagesBudgetMiB * MIB) {
    const streaming = Math.ceil(streamingBytes(chunk, parallel, concurrency) / MIB);
    fail(
      c,
      'reconciler.memoryMiB',
      `${r.memoryMiB} MiB leaves ${Math.floor(budget / MIB)} MiB for variants at concurrency ${concurrency}, less than the ${MEMORY.minImagesBudgetMiB} MiB ` +
        `without which it refuses to start with variants (README "Memory": ${MEMORY.processBaseMiB} MiB for the process, ${streaming} MiB of upload buffers): ` +
        `give it at least ${memoryForBudgetMiB(MEMORY.minImagesBudgetMiB, chunk, parallel, concurrency)} MiB, or lower YUBA_RECONCILE_CONCURRENCY`,
    );
  }
}

/**
 * The Lambda worker's memory: the worker's rule for its concurrency (with variants, room for that
 * many photos at once), within Lambda's range, and never below a floor: more memory is also more
 * CPU on Lambda (one vCPU per 1,769 MB), which the copies and the transform use.
 */
export function lambdaWorkerMemoryMiB(c: StageConfig): number {
  const variants = c.variants !== '';
  const rule = workerMemoryMiB(c.lambdaWorker.concurrency, variants);
  const floor = variants ? 1024 : 512;
  return Math.min(LAMBDA_MEMORY_MIB.max, Math.max(LAMBDA_MEMORY_MIB.min, floor, rule));
}

/**
 * How long the Fargate pool takes from a message on its empty queue to a task receiving it, when
 * it runs no task (`minTasks: 0`). Each term is documented where it comes from:
 *
 * - `metricPeriodSeconds` x `evaluationPeriods`: the scale-out alarm's own datapoints (1-minute
 *   SQS metrics, the finest SQS publishes; 2 of them, so one noisy sample does not start a task).
 * - `sqsMetricDelaySeconds`: SQS publishes its CloudWatch metrics at one-minute intervals, and
 *   only for an active queue ("All metrics emit non-negative values only when the queue is
 *   active", https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html).
 *   The first datapoints of a queue idle for hours arrive late: 5 minutes is our allowance, not
 *   a documented bound, and the reason a stage with a tight objective keeps a warm task.
 * - `taskStartSeconds`: Fargate provisioning, the ENI, pulling an 18 MiB image from ECR in the
 *   region, and the worker's start (13.5 ms, docs/BENCHMARKS.md); 90 s is what Fargate tasks of
 *   this size commonly take, again an allowance.
 */
export const FARGATE_SCALE_OUT = {
  metricPeriodSeconds: 60,
  evaluationPeriods: 2,
  sqsMetricDelaySeconds: 300,
  taskStartSeconds: 90,
} as const;

export function fargateScaleOutSeconds(): number {
  const s = FARGATE_SCALE_OUT;
  return s.metricPeriodSeconds * s.evaluationPeriods + s.sqsMetricDelaySeconds + s.taskStartSeconds;
}

/** The longest period CloudWatch alarms take (a day; https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html, Period). */
const ALARM_MAX_PERIOD_MINUTES = 24 * 60;

function validateAlarms(c: StageConfig): void {
  const a = c.alarms;
  if (a.errorBudget <= 0 || a.errorBudget >= 1) fail(c, 'alarms.errorBudget', 'must be in (0, 1)');
  if (a.budgetDays < 1 || a.budgetDays > 90) fail(c, 'alarms.budgetDays', 'must be 1..90');
  if (a.lagObjectiveSeconds < 60) fail(c, 'alarms.lagObjectiveSeconds', 'must be at least 60 (SQS metrics are per minute)');
  a.burnRates.forEach((b, i) => {
    const field = `alarms.burnRates[${i}]`;
    if (b.rate * a.errorBudget >= 1) fail(c, field, `rate ${b.rate} x budget ${a.errorBudget} is 100 % or more of jobs bad: the alarm could never fire`);
    if (!Number.isInteger(b.shortWindowMinutes) || !Number.isInteger(b.longWindowMinutes) || b.shortWindowMinutes < 1) {
      fail(c, field, 'windows are whole minutes, at least 1');
    }
    if (b.shortWindowMinutes >= b.longWindowMinutes) fail(c, field, 'the short window must be shorter than the long one');
    if (b.longWindowMinutes > ALARM_MAX_PERIOD_MINUTES) fail(c, field, `the long window is an alarm period: at most ${ALARM_MAX_PERIOD_MINUTES} minutes`);
  });
  // The lag alarm must not fire on a pool that is merely starting: with no warm task, the first
  // large object waits the scale-out time before a task even receives it.
  const scaleOut = fargateScaleOutSeconds();
  if (c.fargateWorker.minTasks === 0 && a.lagObjectiveSeconds < scaleOut + FARGATE_SCALE_OUT.metricPeriodSeconds) {
    fail(
      c,
      'alarms.lagObjectiveSeconds',
      `${a.lagObjectiveSeconds} s is shorter than the Fargate pool's scale from zero (${scaleOut} s, FARGATE_SCALE_OUT) plus a minute: ` +
        `set fargateWorker.minTasks to 1 (a warm task) or the objective to at least ${scaleOut + FARGATE_SCALE_OUT.metricPeriodSeconds} s`,
    );
  }
}

export const duration = {
  lambdaTimeout: (c: StageConfig) => Duration.seconds(c.lambdaWorker.timeoutSeconds),
  /** Lambda's guidance for an SQS event source: visibility >= 6 x function timeout. */
  lambdaQueueVisibility: (c: StageConfig) => Duration.seconds(Math.min(6 * c.lambdaWorker.timeoutSeconds, 43200)),
};
