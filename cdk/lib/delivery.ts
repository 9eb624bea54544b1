/**
 * The optional delivery path: a CloudFront distribution in front of the source bucket and of
 * yuba-serve (serve.ts), the origin that reads the GCS replica.
 *
 * - Originals (the default behaviour): an origin group reads the S3 bucket first and fails over
 *   to yuba-serve when S3 answers 403/404 (a key S3 lost, or never had: without s3:ListBucket S3
 *   answers 403 for a missing key) or 5xx (S3 unavailable).
 * - Variants (`VARIANTS_PATH_PATTERN`): straight to yuba-serve; only the replica has them.
 * - Both are cached at the edge for at most `delivery.edgeCacheSeconds`, then revalidated by ETag
 *   (see cachePolicy): the bound on how long a deleted image is still served.
 *
 * Both origins are reached through origin access control, which signs only for AWS origins (S3,
 * Lambda function URLs, MediaStore, MediaPackage): the replica bucket is private (terraform
 * enforces public access prevention), so no origin may be one CloudFront cannot authenticate to.
 * The function URL is `AWS_IAM`, and its resource policy admits this distribution only, with both
 * actions a function URL needs (test/delivery.test.ts holds the template to each rule).
 */
import { CfnOutput, Duration, Stack } from 'aws-cdk-lib';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { StageConfig } from './config';

/** Status codes from S3 that send a request for an original to yuba-serve. */
export const FAILOVER_STATUS_CODES = [403, 404, 500, 502, 503, 504];

/**
 * The behaviour of variants: yuba-serve's URL scheme puts them under this prefix
 * (`yuba_delivery::path::VARIANTS_PREFIX`, libs/delivery/src/path.rs); tests/tests/e2e/tidy.rs
 * reads this constant and holds it to VARIANTS_PREFIX.
 */
export const VARIANTS_PATH_PATTERN = '/_yuba-variants/*';

/**
 * CloudFront's wait for the origin's response, and between its packets: the serve function's
 * timeout, up to 60 s. Longer needs a quota increase ("up to 180 seconds", the origin's
 * readTimeout, https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_cloudfront_origins.FunctionUrlOriginProps.html).
 */
export const MAX_READ_TIMEOUT_SECONDS = 60;

export interface DeliveryProps {
  readonly config: StageConfig;
  readonly bucket: s3.IBucket;
  /** Whether the bucket is created in this app (its policy can then be written here). */
  readonly bucketIsOwned: boolean;
  readonly logs: s3.IBucket;
  /** yuba-serve's function URL (AWS_IAM, RESPONSE_STREAM). */
  readonly serveUrl: lambda.IFunctionUrl;
}

export class Delivery extends Construct {
  readonly distribution: cloudfront.Distribution;
  /** What reaches yuba-serve from a viewer's request: nothing (see originRequestPolicy). */
  readonly originRequestPolicy: cloudfront.OriginRequestPolicy;
  /** How long the edge serves what it cached: at most `delivery.edgeCacheSeconds` (see cachePolicy). */
  readonly cachePolicy: cloudfront.CachePolicy;

  constructor(scope: Construct, id: string, props: DeliveryProps) {
    super(scope, id);
    const c = props.config;
    const d = c.delivery;
    const primary = origins.S3BucketOrigin.withOriginAccessControl(props.bucket, {
      // Read only: the distribution never writes to the bucket.
      originAccessLevels: [cloudfront.AccessLevel.READ],
    });
    // The construct adds the function's resource policy for this distribution: lambda:InvokeFunctionUrl,
    // and lambda:InvokeFunction with lambda:InvokedViaFunctionUrl, which function URLs made since
    // October 2025 also need (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html).
    const serve = origins.FunctionUrlOrigin.withOriginAccessControl(props.serveUrl, {
      readTimeout: Duration.seconds(Math.min(d.serve.timeoutSeconds, MAX_READ_TIMEOUT_SECONDS)),
    });
    this.originRequestPolicy = originRequestPolicy(this, c);
    this.cachePolicy = cachePolicy(this, c);
    const behaviour = {
      viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
      // Origin groups fail over only for GET, HEAD and OPTIONS, and yuba-serve answers GET and
      // HEAD only; a signed PUT or POST to a function URL would need the body's hash besides.
      allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
      // Conditional requests and ranges are CloudFront's own, from its cache, for at most
      // edgeCacheSeconds whatever the origin's Cache-Control says (see cachePolicy).
      cachePolicy: this.cachePolicy,
      originRequestPolicy: this.originRequestPolicy,
      compress: false, // images are compressed already
    };
    const certificate = d.certificateArn ? acm.Certificate.fromCertificateArn(this, 'Certificate', d.certificateArn) : undefined;
    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: `yuba ${c.stage}: S3 ${c.source.name}, failover and variants from yuba-serve`,
      defaultBehavior: {
        origin: new origins.OriginGroup({ primaryOrigin: primary, fallbackOrigin: serve, fallbackStatusCodes: FAILOVER_STATUS_CODES }),
        ...behaviour,
      },
      additionalBehaviors: { [VARIANTS_PATH_PATTERN]: { origin: serve, ...behaviour } },
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
    if (!props.bucketIsOwned) this.bucketPolicyOutput(props.bucket);
    new CfnOutput(this, 'DistributionDomain', { value: this.distribution.distributionDomainName });
  }

  /** CDK cannot edit an imported bucket's policy: print the statement the bucket owner adds. */
  private bucketPolicyOutput(bucket: s3.IBucket): void {
    const stack = Stack.of(this);
    new CfnOutput(this, 'BucketPolicyStatement', {
      description: 'Add this statement to the source bucket policy so CloudFront (OAC) can read it',
      value: stack.toJsonString({
        Sid: 'YubaCloudFrontRead',
        Effect: 'Allow',
        Principal: { Service: 'cloudfront.amazonaws.com' },
        Action: 's3:GetObject',
        Resource: bucket.arnForObjects('*'),
        Condition: { StringEquals: { 'AWS:SourceArn': `arn:${stack.partition}:cloudfront::${stack.account}:distribution/${this.distribution.distributionId}` } },
      }),
    });
  }
}

/**
 * The origin request policy of both behaviours: no viewer header, cookie or query string. yuba-serve
 * reads the path and, for ranges and revalidation, the headers CloudFront itself sends; the
 * viewer's Host in particular must never reach a function URL, which refuses a Host other than its
 * own. The managed AllViewerExceptHostHeader would drop Host but pass every other viewer header
 * (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/using-managed-origin-request-policies.html),
 * which yuba-serve does not read and which would only make the origin's answers depend on them.
 */
function originRequestPolicy(scope: Construct, c: StageConfig): cloudfront.OriginRequestPolicy {
  return new cloudfront.OriginRequestPolicy(scope, 'OriginRequests', {
    originRequestPolicyName: `${c.prefix}-delivery`,
    comment: 'yuba: no viewer header (never Host), cookie or query string to the origins',
    headerBehavior: cloudfront.OriginRequestHeaderBehavior.none(),
    cookieBehavior: cloudfront.OriginRequestCookieBehavior.none(),
    queryStringBehavior: cloudfront.OriginRequestQueryStringBehavior.none(),
  });
}

/**
 * The cache policy of both behaviours: what CloudFront cached is served for at most
 * `delivery.edgeCacheSeconds`, then revalidated. MaxTTL caps the origin's `Cache-Control: max-age`
 * ("The Maximum TTL is set to 5 minutes (300 seconds) and the Cache-Control max-age header is set
 * to 1 hour (3600 seconds). In this case, CloudFront caches the object for 5 minutes",
 * https://repost.aws/knowledge-center/cloudfront-cache-files-time), and DefaultTTL is the lifetime
 * of an answer without one. Once expired, CloudFront asks the origin again and "if the CloudFront
 * cache already has the latest version, the origin returns a 304 status code"
 * (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/Expiration.html): S3 and
 * yuba-serve both answer If-None-Match with the source's ETag, so an unchanged image costs a
 * request and no bytes, and a deleted one becomes a 404 within the bound.
 *
 * The other way, invalidating on every delete and overwrite, was rejected on cost and limits:
 * past 1,000 paths a month each path costs $0.005
 * (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/PayingForInvalidation.html),
 * an image with three variants is four paths, and at most 3,000 paths may be in progress per
 * distribution (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/InvalidationLimits.html),
 * so a bulk delete would queue for hours. The managed CachingOptimized policy keeps objects up to a
 * year (its MaxTTL), which is what this policy replaces.
 *
 * Nothing is in the key but the path: no header (never Host, which would then reach the origin),
 * cookie, query string or encoding (images are not compressed).
 */
function cachePolicy(scope: Construct, c: StageConfig): cloudfront.CachePolicy {
  const edge = Duration.seconds(c.delivery.edgeCacheSeconds);
  return new cloudfront.CachePolicy(scope, 'Cache', {
    cachePolicyName: `${c.prefix}-delivery`,
    comment: `yuba: cached at the edge for at most ${c.delivery.edgeCacheSeconds} s, then revalidated by ETag`,
    minTtl: Duration.seconds(0),
    defaultTtl: edge,
    maxTtl: edge,
    headerBehavior: cloudfront.CacheHeaderBehavior.none(),
    cookieBehavior: cloudfront.CacheCookieBehavior.none(),
    queryStringBehavior: cloudfront.CacheQueryStringBehavior.none(),
    enableAcceptEncodingGzip: false,
    enableAcceptEncodingBrotli: false,
  });
}
