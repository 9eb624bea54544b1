/**
 * The source bucket (imported by name, or created) and the read-only access yuba needs on it.
 *
 * Grants are written out, not `grantRead`, and are what lib/generated/aws-iam.json (generated from
 * the permissions the Rust crates declare beside their calls) says a reader needs; test/iam.test.ts
 * holds every role to it. A reader calls GetObject and HeadObject (HeadObject is authorised by
 * s3:GetObject), GetObject pinned to a version on a versioned bucket (a cut read resumes pinned
 * to its version: s3:GetObjectVersion), and needs s3:ListBucket on the bucket even when it does not
 * list: without it S3 answers a HEAD or GET of a missing key with 403 instead of 404, so every
 * delete job (which checks that the key is still absent) and every "source is gone" job would
 * fail as access denied. Nothing else, on nothing else.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { StageConfig } from './config';

export interface SourceBucketProps {
  readonly config: StageConfig;
  /** Bucket for S3 server access logs of a created bucket. */
  readonly accessLogs?: s3.IBucket;
}

export class SourceBucket extends Construct {
  readonly bucket: s3.IBucket;
  readonly key?: kms.IKey;
  private readonly versioned: boolean;

  constructor(scope: Construct, id: string, props: SourceBucketProps) {
    super(scope, id);
    const c = props.config;
    if (c.source.mode === 'create') {
      this.versioned = true;
      this.bucket = new s3.Bucket(this, 'Bucket', {
        bucketName: c.source.name,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        encryption: s3.BucketEncryption.S3_MANAGED,
        enforceSSL: true,
        versioned: true,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        serverAccessLogsBucket: props.accessLogs,
        serverAccessLogsPrefix: props.accessLogs ? `s3/${c.source.name}/` : undefined,
        // Old versions are yuba's undo for overwrites in S3, not forever.
        lifecycleRules: [{ noncurrentVersionExpiration: Duration.days(30), abortIncompleteMultipartUploadAfter: Duration.days(2) }],
        removalPolicy: c.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
        autoDeleteObjects: false,
      });
    } else {
      this.versioned = c.source.versioned;
      this.bucket = s3.Bucket.fromBucketName(this, 'Bucket', c.source.name);
    }
    if (c.source.kmsKeyArn) {
      this.key = kms.Key.fromKeyArn(this, 'Key', c.source.kmsKeyArn);
    }
  }

  /**
   * What a reader of the source needs (yuba-aws's S3_READS, and S3_LISTING: the same
   * s3:ListBucket): read an object (and its versions) by key, tell a missing key (404, not 403),
   * list the bucket. On the whole bucket: ingest filters keys, the roles do not, so a
   * reconciler run over any prefix and a delete of any key get their answers.
   */
  grantRead(grantee: iam.IGrantable): void {
    const actions = ['s3:GetObject'];
    if (this.versioned) actions.push('s3:GetObjectVersion');
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ReadSourceObjects', actions, resources: [this.bucket.arnForObjects('*')] }),
    );
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ListSource', actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }),
    );
    this.grantDecrypt(grantee);
  }

  private grantDecrypt(grantee: iam.IGrantable): void {
    if (!this.key) return;
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'DecryptSourceObjects',
        actions: ['kms:Decrypt'],
        resources: [this.key.keyArn],
        // Only when S3 asks on the reader's behalf, for this bucket.
        conditions: { StringEquals: { 'kms:ViaService': `s3.${this.bucket.stack.region}.amazonaws.com` } },
      }),
    );
  }
}
