/**
 * The optional delivery path: a CloudFront distribution whose origin group reads the S3 bucket
 * first (through origin access control) and fails over to the GCS replica's server when S3 answers
 * 403/404 (a variant, which only the replica has, or a key S3 lost) or 5xx (S3 unavailable).
 *
 * GCS itself is reached through `failoverDomain`: terraform/ makes the replica bucket private
 * (public access prevention) and grants `reader_members` (the image server behind the CDN), so the
 * failover origin is that server, or storage.googleapis.com only for a bucket that allows reads.
 */
import { CfnOutput, Stack } from 'aws-cdk-lib';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { StageConfig } from './config';

/** Status codes from S3 that send a request to the replica. */
export const FAILOVER_STATUS_CODES = [403, 404, 500, 502, 503, 504];

export interface DeliveryProps {
  readonly config: StageConfig;
  readonly bucket: s3.IBucket;
  /** Whether the bucket is created in this app (its policy can then be written here). */
  readonly bucketIsOwned: boolean;
  readonly logs: s3.IBucket;
}

export class Delivery extends Construct {
  readonly distribution: cloudfront.Distribution;

  constructor(scope: Construct, id: string, props: DeliveryProps) {
    super(scope, id);
    const c = props.config;
    const d = c.delivery;
    const primary = origins.S3BucketOrigin.withOriginAccessControl(props.bucket, {
      // Read only: the distribution never writes to the bucket.
      originAccessLevels: [cloudfront.AccessLevel.READ],
    });
    const failover = new origins.HttpOrigin(d.failoverDomain, {
      originPath: d.failoverPath || undefined,
      protocolPolicy: cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
      originSslProtocols: [cloudfront.OriginSslPolicy.TLS_V1_2],
    });
    const certificate = d.certificateArn ? acm.Certificate.fromCertificateArn(this, 'Certificate', d.certificateArn) : undefined;
    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: `yuba ${c.stage}: S3 ${c.source.name}, failover to the GCS replica`,
      defaultBehavior: {
        origin: new origins.OriginGroup({
          primaryOrigin: primary,
          fallbackOrigin: failover,
          fallbackStatusCodes: FAILOVER_STATUS_CODES,
        }),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        // Origin groups fail over only for GET, HEAD and OPTIONS; images need nothing else.
        allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
        cachePolicy: cloudfront.CachePolicy.CACHING_OPTIMIZED,
        compress: false, // images are compressed already
      },
      domainNames: d.domainNames,
      certificate,
      minimumProtocolVersion: cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      priceClass: d.priceClass as cloudfront.PriceClass,
      webAclId: d.webAclArn,
      geoRestriction: d.allowCountries?.length ? cloudfront.GeoRestriction.allowlist(...d.allowCountries) : undefined,
      enableLogging: true,
      logBucket: props.logs,
      logFilePrefix: 'cloudfront/',
    });
    if (!props.bucketIsOwned) {
      // CDK cannot edit an imported bucket's policy: print the statement the bucket owner adds.
      new CfnOutput(this, 'BucketPolicyStatement', {
        description: 'Add this statement to the source bucket policy so CloudFront (OAC) can read it',
        value: Stack.of(this).toJsonString({
          Sid: 'YubaCloudFrontRead',
          Effect: 'Allow',
          Principal: { Service: 'cloudfront.amazonaws.com' },
          Action: 's3:GetObject',
          Resource: props.bucket.arnForObjects('*'),
          Condition: { StringEquals: { 'AWS:SourceArn': `arn:${Stack.of(this).partition}:cloudfront::${Stack.of(this).account}:distribution/${this.distribution.distributionId}` } },
        }),
      });
    }
    new CfnOutput(this, 'DistributionDomain', { value: this.distribution.distributionDomainName });
  }
}
