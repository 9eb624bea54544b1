/**
 * The bucket access logs go to (S3 server access logs of a created source bucket, CloudFront
 * standard logs). CloudFront's standard logging writes with ACLs, hence BUCKET_OWNER_PREFERRED.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { StageConfig } from './config';

export function logsBucket(scope: Construct, c: StageConfig): s3.Bucket {
  return new s3.Bucket(scope, 'AccessLogs', {
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
    lifecycleRules: [{ expiration: Duration.days(c.logRetentionDays) }],
    removalPolicy: c.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    autoDeleteObjects: false,
  });
}
