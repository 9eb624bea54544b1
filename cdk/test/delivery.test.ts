/**
 * The delivery path's rules, each a function over the synthesized template's JSON that returns
 * what breaks it (empty: none), run on the stages with the delivery path and on copies of their
 * templates broken one rule at a time, each of which must fail. No emulator checks any of these:
 * CloudFront, origin access control and Lambda's resource policies exist only in AWS.
 *
 * - yuba-serve's function URL is AWS_IAM (origin access control signs only for it) and streams
 *   its responses (originals past Lambda's 6 MB buffered limit), outside any VPC (no streaming
 *   through a function URL there).
 * - The function's resource policy admits CloudFront for this distribution only, with both
 *   actions a function URL made since October 2025 needs.
 * - Every origin is reached through origin access control: S3 with an `s3` one, yuba-serve's URL
 *   with a `lambda` one; no other custom origin (nothing CloudFront cannot authenticate to).
 * - Originals: S3 first, yuba-serve on failover. Variants: `VARIANTS_PATH_PATTERN`, straight to
 *   yuba-serve. GET and HEAD only.
 * - No viewer header, cookie or query string reaches yuba-serve, and never the viewer's Host.
 * - What the edge cached is served for at most `delivery.edgeCacheSeconds`, then revalidated: the
 *   bound on how long a deleted image is still served.
 * - yuba-serve's role is named as the permissions contract says.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import { Overrides, StageConfig, StageName } from '../lib/config';
import { FAILOVER_STATUS_CODES, VARIANTS_PATH_PATTERN } from '../lib/delivery';
import { synth } from './helpers';

type Json = any;

const CONTRACT = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'lib', 'generated', 'aws-iam.json'), 'utf8'));
const SERVE_PROGRAM = 'serve-lambda';
const PRINCIPAL = 'cloudfront.amazonaws.com';

/**
 * Managed origin request policies by id, which pass every viewer header (Host too, but for
 * AllViewerExceptHostHeader), https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/using-managed-origin-request-policies.html.
 */
const MANAGED_ORIGIN_REQUEST_POLICIES: Record<string, string> = {
  [cloudfront.OriginRequestPolicy.ALL_VIEWER.originRequestPolicyId]: 'AllViewer',
  [cloudfront.OriginRequestPolicy.ALL_VIEWER_AND_CLOUDFRONT_2022.originRequestPolicyId]: 'AllViewerAndCloudFrontHeaders-2022-06',
  [cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER.originRequestPolicyId]: 'AllViewerExceptHostHeader',
};

/**
 * Headers in a cache key go to the origin whatever the origin request policy says ("Even when
 * this field is set to none, any headers that are listed in a CachePolicy are included in origin
 * requests", https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-cloudfront-originrequestpolicy-headersconfig.html).
 * CachingOptimized keys on no header but the normalised Accept-Encoding
 * (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/using-managed-cache-policies.html).
 */
const HOSTLESS_MANAGED_CACHE_POLICIES = new Set([cloudfront.CachePolicy.CACHING_OPTIMIZED.cachePolicyId]);

const byType = (t: Json, type: string): Array<[string, Json]> => Object.entries<Json>(t.Resources).filter(([, r]) => r.Type === type);
const refId = (v: Json): string | undefined => v?.Ref ?? v?.['Fn::GetAtt']?.[0];

/** yuba-serve's function (its description names the program), or undefined. */
function serveFunction(t: Json): string | undefined {
  const binary = CONTRACT.programs[SERVE_PROGRAM].binary;
  const found = byType(t, 'AWS::Lambda::Function').filter(([, f]) => String(f.Properties.Description ?? '').startsWith(`yuba ${binary} `));
  return found.length === 1 ? found[0][0] : undefined;
}

/** The function URLs that target yuba-serve. */
function serveUrls(t: Json, fnId: string): Array<[string, Json]> {
  return byType(t, 'AWS::Lambda::Url').filter(([, u]) => refId(u.Properties.TargetFunctionArn) === fnId);
}

/** The URL is AWS_IAM and RESPONSE_STREAM; the function is in no VPC. */
function functionUrlProblems(t: Json): string[] {
  const fnId = serveFunction(t);
  if (!fnId) return ['no single yuba-serve function'];
  const out: string[] = [];
  const urls = serveUrls(t, fnId);
  if (urls.length !== 1) return [`yuba-serve has ${urls.length} function URLs, not 1`];
  const p = urls[0][1].Properties;
  // "To use OAC, you must specify AWS_IAM as the value for the AuthType parameter."
  // (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-restricting-access-to-lambda.html)
  if (p.AuthType !== 'AWS_IAM') out.push(`the function URL's AuthType is ${p.AuthType}, not AWS_IAM (origin access control signs only for AWS_IAM)`);
  // Buffered responses stop at 6 MB, streamed ones at 200 MB
  // (https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html).
  if (p.InvokeMode !== 'RESPONSE_STREAM') out.push(`the function URL's InvokeMode is ${p.InvokeMode ?? 'BUFFERED (the default)'}, not RESPONSE_STREAM`);
  // Same page: function URLs do not stream responses from a function in a VPC.
  if (t.Resources[fnId].Properties.VpcConfig) out.push('yuba-serve runs in a VPC, where a function URL cannot stream its response');
  return out;
}

/** The one distribution's logical id. */
function distributionId(t: Json): string | undefined {
  const found = byType(t, 'AWS::CloudFront::Distribution');
  return found.length === 1 ? found[0][0] : undefined;
}

/** `arn:PARTITION:cloudfront::ACCOUNT:distribution/ID` of this template's distribution. */
function isDistributionArn(v: Json, distId: string): boolean {
  const parts: Json[] = v?.['Fn::Join']?.[1] ?? [];
  return parts.some((p) => p?.Ref === distId) && parts.some((p) => typeof p === 'string' && p.includes(':cloudfront::'));
}

/** Whether a permission's FunctionName names yuba-serve (its ARN, its name, or its URL's FunctionArn). */
function namesServe(t: Json, v: Json, fnId: string): boolean {
  if (refId(v) === fnId) return true;
  return v?.['Fn::GetAtt']?.[1] === 'FunctionArn' && refId(t.Resources[v['Fn::GetAtt'][0]]?.Properties?.TargetFunctionArn) === fnId;
}

/**
 * CloudFront may invoke yuba-serve for this distribution only, with lambda:InvokeFunctionUrl and,
 * for URLs made since October 2025, lambda:InvokeFunction with lambda:InvokedViaFunctionUrl
 * (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html: "Starting in October 2025, new
 * function URLs will require both lambda:InvokeFunctionUrl and lambda:InvokeFunction
 * permissions"); no other principal, and no grant without the distribution's SourceArn.
 */
function permissionProblems(t: Json): string[] {
  const fnId = serveFunction(t);
  const distId = distributionId(t);
  if (!fnId || !distId) return ['no single yuba-serve function and distribution'];
  const grants = byType(t, 'AWS::Lambda::Permission')
    .map(([, p]) => p.Properties)
    .filter((p) => namesServe(t, p.FunctionName, fnId));
  const out: string[] = [];
  for (const p of grants) {
    if (p.Principal !== PRINCIPAL || !isDistributionArn(p.SourceArn, distId)) {
      out.push(`a ${p.Action} grant to ${JSON.stringify(p.Principal)} that is not CloudFront's for this distribution (SourceArn ${JSON.stringify(p.SourceArn)})`);
    }
  }
  const ok = grants.filter((p) => p.Principal === PRINCIPAL && isDistributionArn(p.SourceArn, distId));
  if (!ok.some((p) => p.Action === 'lambda:InvokeFunctionUrl')) out.push('no lambda:InvokeFunctionUrl for CloudFront with the distribution as SourceArn');
  if (!ok.some((p) => p.Action === 'lambda:InvokeFunction' && p.InvokedViaFunctionUrl === true)) {
    out.push('no lambda:InvokeFunction for CloudFront with the distribution as SourceArn and InvokedViaFunctionUrl true');
  }
  return out;
}

/** Whether an origin's domain is yuba-serve's function URL's host (what FunctionUrlOrigin writes). */
function isServeUrlDomain(t: Json, domain: Json): boolean {
  const fnId = serveFunction(t);
  const select = domain?.['Fn::Select'];
  const url = select?.[1]?.['Fn::Split']?.[1]?.['Fn::GetAtt'];
  return select?.[0] === 2 && url?.[1] === 'FunctionUrl' && fnId !== undefined && refId(t.Resources[url[0]]?.Properties?.TargetFunctionArn) === fnId;
}

/**
 * Every origin through origin access control of its kind: S3 with an `s3` one, yuba-serve's URL
 * with a `lambda` one that always signs. A custom origin that is anything else is one CloudFront
 * cannot authenticate to (OAC signs for AWS origins only).
 */
function originProblems(t: Json): string[] {
  const distId = distributionId(t);
  if (!distId) return ['no single distribution'];
  const out: string[] = [];
  for (const o of t.Resources[distId].Properties.DistributionConfig.Origins) {
    const kind = o.S3OriginConfig ? 's3' : isServeUrlDomain(t, o.DomainName) ? 'lambda' : undefined;
    if (!kind) {
      out.push(`origin ${o.Id} (${JSON.stringify(o.DomainName)}) is neither the S3 bucket nor yuba-serve's function URL: CloudFront cannot authenticate to it`);
      continue;
    }
    const oac = t.Resources[refId(o.OriginAccessControlId) ?? '']?.Properties?.OriginAccessControlConfig;
    if (!oac) out.push(`origin ${o.Id} has no origin access control`);
    else if (oac.OriginAccessControlOriginType !== kind || oac.SigningBehavior !== 'always' || oac.SigningProtocol !== 'sigv4') {
      out.push(`origin ${o.Id}'s origin access control is ${oac.OriginAccessControlOriginType}/${oac.SigningBehavior}/${oac.SigningProtocol}, not ${kind}/always/sigv4`);
    }
  }
  return out;
}

/** The distribution's origins that are yuba-serve, and the groups that fail over to one. */
function serveTargets(t: Json, distId: string): { origins: Set<string>; groups: Set<string> } {
  const config = t.Resources[distId].Properties.DistributionConfig;
  const origins = new Set<string>(config.Origins.filter((o: Json) => isServeUrlDomain(t, o.DomainName)).map((o: Json) => o.Id));
  const groups = new Set<string>(
    (config.OriginGroups?.Items ?? []).filter((g: Json) => g.Members.Items.some((m: Json) => origins.has(m.OriginId))).map((g: Json) => g.Id),
  );
  return { origins, groups };
}

/**
 * Originals: the default behaviour is an origin group, the S3 origin first and yuba-serve on
 * failover for FAILOVER_STATUS_CODES. Variants: a behaviour of VARIANTS_PATH_PATTERN straight to
 * yuba-serve. Every behaviour allows GET and HEAD only (yuba-serve answers nothing else, and a
 * signed PUT or POST to a function URL would need its body's hash).
 */
function behaviourProblems(t: Json): string[] {
  const distId = distributionId(t);
  if (!distId) return ['no single distribution'];
  const config = t.Resources[distId].Properties.DistributionConfig;
  const { origins } = serveTargets(t, distId);
  const out: string[] = [];
  const group = (config.OriginGroups?.Items ?? []).find((g: Json) => g.Id === config.DefaultCacheBehavior.TargetOriginId);
  const members: string[] = group?.Members.Items.map((m: Json) => m.OriginId) ?? [];
  const s3 = new Set<string>(config.Origins.filter((o: Json) => o.S3OriginConfig).map((o: Json) => o.Id));
  if (members.length !== 2 || !s3.has(members[0]) || !origins.has(members[1])) out.push('originals: the default behaviour is not an origin group of the S3 origin, then yuba-serve');
  const codes = [...(group?.FailoverCriteria.StatusCodes.Items ?? [])].sort();
  if (JSON.stringify(codes) !== JSON.stringify([...FAILOVER_STATUS_CODES].sort())) out.push(`originals fail over on ${codes}, not ${FAILOVER_STATUS_CODES}`);
  const variants = (config.CacheBehaviors ?? []).filter((b: Json) => b.PathPattern === VARIANTS_PATH_PATTERN);
  if (variants.length !== 1 || !origins.has(variants[0].TargetOriginId)) out.push(`variants: no behaviour ${VARIANTS_PATH_PATTERN} straight to yuba-serve`);
  for (const b of [config.DefaultCacheBehavior, ...(config.CacheBehaviors ?? [])]) {
    if ([...b.AllowedMethods].sort().join() !== 'GET,HEAD') out.push(`behaviour ${b.PathPattern ?? '(default)'} allows ${b.AllowedMethods}, not GET and HEAD only`);
  }
  return out;
}

/** What an origin request policy passes of a viewer's headers: problems, by name. */
function forwardedHeaderProblems(t: Json, policy: Json): string[] {
  if (typeof policy === 'string') {
    const managed = MANAGED_ORIGIN_REQUEST_POLICIES[policy];
    return [managed ? `the managed policy ${managed} forwards viewer headers` : `the managed policy ${policy} is not known to forward nothing`];
  }
  const config = t.Resources[refId(policy) ?? '']?.Properties?.OriginRequestPolicyConfig;
  if (!config) return [`origin request policy ${JSON.stringify(policy)} is not in the template`];
  const h = config.HeadersConfig;
  const listed = (h.Headers ?? []).map((n: string) => n.toLowerCase());
  const out: string[] = [];
  // allExcept passes Host unless it is listed; whitelist passes what it lists; the others pass all.
  const host = h.HeaderBehavior === 'allExcept' ? !listed.includes('host') : h.HeaderBehavior === 'whitelist' ? listed.includes('host') : h.HeaderBehavior !== 'none';
  if (host) out.push(`origin request policy ${refId(policy)} forwards the viewer's Host`);
  if (h.HeaderBehavior !== 'none') out.push(`origin request policy ${refId(policy)} forwards viewer headers (${h.HeaderBehavior} ${listed.join(',')})`);
  if (config.CookiesConfig.CookieBehavior !== 'none') out.push(`origin request policy ${refId(policy)} forwards cookies`);
  if (config.QueryStringsConfig.QueryStringBehavior !== 'none') out.push(`origin request policy ${refId(policy)} forwards query strings`);
  return out;
}

/** A cache policy's key headers go to the origin too: never Host. */
function cacheKeyHostProblems(t: Json, policy: Json): string[] {
  if (typeof policy === 'string') return HOSTLESS_MANAGED_CACHE_POLICIES.has(policy) ? [] : [`the managed cache policy ${policy} is not known to leave Host out of the cache key`];
  const h = t.Resources[refId(policy) ?? '']?.Properties?.CachePolicyConfig?.ParametersInCacheKeyAndForwardedToOrigin?.HeadersConfig;
  if (!h) return [`cache policy ${JSON.stringify(policy)} is not in the template`];
  const host = h.HeaderBehavior === 'whitelist' && (h.Headers ?? []).some((n: string) => n.toLowerCase() === 'host');
  return host ? [`cache policy ${refId(policy)} keys on Host, which then reaches the origin`] : [];
}

/**
 * Every behaviour that reaches yuba-serve (directly or on failover) passes it no viewer header,
 * cookie or query string: a function URL refuses a Host other than its own, and yuba-serve reads
 * only the path and the headers CloudFront itself sends.
 */
function forwardingProblems(t: Json): string[] {
  const distId = distributionId(t);
  if (!distId) return ['no single distribution'];
  const config = t.Resources[distId].Properties.DistributionConfig;
  const { origins, groups } = serveTargets(t, distId);
  const out: string[] = [];
  for (const b of [config.DefaultCacheBehavior, ...(config.CacheBehaviors ?? [])]) {
    if (!origins.has(b.TargetOriginId) && !groups.has(b.TargetOriginId)) continue;
    const where = `behaviour ${b.PathPattern ?? '(default)'}`;
    if (b.ForwardedValues) out.push(`${where} uses legacy ForwardedValues`);
    if (!b.OriginRequestPolicyId) out.push(`${where} has no origin request policy`);
    else out.push(...forwardedHeaderProblems(t, b.OriginRequestPolicyId).map((p) => `${where}: ${p}`));
    out.push(...cacheKeyHostProblems(t, b.CachePolicyId).map((p) => `${where}: ${p}`));
  }
  return out;
}

/**
 * Every behaviour's cache policy keeps what it cached for at most the stage's
 * `delivery.edgeCacheSeconds`: MaxTTL caps the origin's max-age and DefaultTTL is the lifetime of
 * an answer without one (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/Expiration.html;
 * "The Maximum TTL is set to 5 minutes (300 seconds) and the Cache-Control max-age header is set
 * to 1 hour (3600 seconds). In this case, CloudFront caches the object for 5 minutes",
 * https://repost.aws/knowledge-center/cloudfront-cache-files-time). A managed policy is refused:
 * CachingOptimized keeps objects up to a year, and the bound must be the stage's.
 */
function cacheLifetimeProblems(t: Json, bound: number): string[] {
  const distId = distributionId(t);
  if (!distId) return ['no single distribution'];
  const config = t.Resources[distId].Properties.DistributionConfig;
  const out: string[] = [];
  for (const b of [config.DefaultCacheBehavior, ...(config.CacheBehaviors ?? [])]) {
    const where = `behaviour ${b.PathPattern ?? '(default)'}`;
    if (typeof b.CachePolicyId === 'string') {
      out.push(`${where}: the managed cache policy ${b.CachePolicyId} sets its own lifetimes, not the stage's ${bound} s`);
      continue;
    }
    const policy = t.Resources[refId(b.CachePolicyId) ?? '']?.Properties?.CachePolicyConfig;
    if (!policy) {
      out.push(`${where}: cache policy ${JSON.stringify(b.CachePolicyId)} is not in the template`);
      continue;
    }
    for (const field of ['MaxTTL', 'DefaultTTL']) {
      // Unset, CloudFormation's defaults are a year (MaxTTL) and a day (DefaultTTL).
      if (!(policy[field] <= bound)) out.push(`${where}: ${field} ${policy[field] ?? '(unset)'} s exceeds the stage's edgeCacheSeconds ${bound}`);
    }
  }
  return out;
}

/** yuba-serve's role is PREFIX-ROLE, ROLE from the permissions contract (terraform trusts it by name). */
function roleProblems(t: Json, prefix: string): string[] {
  const fnId = serveFunction(t);
  if (!fnId) return ['no single yuba-serve function'];
  const roleName = t.Resources[refId(t.Resources[fnId].Properties.Role) ?? '']?.Properties?.RoleName;
  const want = `${prefix}-${CONTRACT.programs[SERVE_PROGRAM].role}`;
  return roleName === want ? [] : [`yuba-serve's role is named ${roleName ?? '(generated)'}, the contract says ${want}`];
}

function allProblems(t: Json, config: StageConfig): string[] {
  const prefix = config.prefix;
  return [
    ...cacheLifetimeProblems(t, config.delivery.edgeCacheSeconds),
    ...functionUrlProblems(t),
    ...permissionProblems(t),
    ...originProblems(t),
    ...behaviourProblems(t),
    ...forwardingProblems(t),
    ...roleProblems(t, prefix),
  ];
}

const CASES: Array<[string, StageName, Overrides<StageConfig>]> = [
  ['prod', 'prod', {}],
  ['dev, a created bucket, with delivery', 'dev', { source: { mode: 'create' }, delivery: { enabled: true } }],
];
const synthesized = new Map<string, ReturnType<typeof synth>>();
function stage(name: string): ReturnType<typeof synth> {
  const [, s, overrides] = CASES.find(([n]) => n === name)!;
  if (!synthesized.has(name)) synthesized.set(name, synth(s, overrides));
  return synthesized.get(name)!;
}
const prodCopy = (): Json => JSON.parse(JSON.stringify(stage('prod').template.toJSON()));
const resource = (t: Json, type: string, match: (r: Json) => boolean = () => true): Json => byType(t, type).find(([, r]) => match(r))![1];
const distributionConfig = (t: Json): Json => resource(t, 'AWS::CloudFront::Distribution').Properties.DistributionConfig;
const serveOrigin = (t: Json): Json => distributionConfig(t).Origins.find((o: Json) => o.CustomOriginConfig);

describe('the delivery path', () => {
  test.each(CASES.map(([name]) => [name]))('%s: every rule holds', (name) => {
    const { template, config } = stage(name);
    const t = template.toJSON();
    // The checks found what they look at, so that they cannot pass by finding nothing.
    expect(serveFunction(t)).toBeDefined();
    expect(byType(t, 'AWS::Lambda::Permission').filter(([, p]) => p.Properties.Principal === PRINCIPAL)).toHaveLength(2);
    expect(distributionConfig(t).Origins).toHaveLength(2);
    expect(allProblems(t, config)).toEqual([]);
  });

  test("the dashboard shows the origin's requests, latency and renders", () => {
    const [, dashboard] = byType(stage('prod').template.toJSON(), 'AWS::CloudWatch::Dashboard')[0];
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const metric of ['OriginRequests', 'OriginLatency', 'OriginRenders']) expect(body).toContain(metric);
  });

  test('a stage without the delivery path has no yuba-serve', () => {
    const t = synth('dev').template.toJSON();
    expect(serveFunction(t)).toBeUndefined();
    expect(byType(t, 'AWS::CloudFront::Distribution')).toEqual([]);
  });

  test("the edge's cache lifetime is the stage's edgeCacheSeconds", () => {
    const policies = (seconds: number) => byType(synth('prod', { delivery: { edgeCacheSeconds: seconds } }).template.toJSON(), 'AWS::CloudFront::CachePolicy').map(([, p]) => p.Properties.CachePolicyConfig);
    expect(policies(60)).toEqual([expect.objectContaining({ MinTTL: 0, DefaultTTL: 60, MaxTTL: 60 })]);
    expect(() => synth('prod', { delivery: { edgeCacheSeconds: 31_536_001 } })).toThrow(/delivery.edgeCacheSeconds: must be a whole number of seconds/);
    expect(() => synth('prod', { delivery: { edgeCacheSeconds: -1 } })).toThrow(/delivery.edgeCacheSeconds/);
  });

  test("the function URL's timeout reaches CloudFront, up to 60 s without a quota increase", () => {
    const timeout = (seconds: number) => serveOrigin(synth('prod', { delivery: { serve: { timeoutSeconds: seconds } } }).template.toJSON()).CustomOriginConfig.OriginReadTimeout;
    expect(timeout(20)).toBe(20);
    expect(timeout(300)).toBe(60);
  });
});

describe('the checks fail on broken copies', () => {
  const prefix = () => stage('prod').config.prefix;
  const url = (t: Json) => resource(t, 'AWS::Lambda::Url').Properties;
  const permission = (t: Json, action: string) => resource(t, 'AWS::Lambda::Permission', (r) => r.Properties.Action === action);

  test('a function URL with AuthType NONE, or buffered', () => {
    const t = prodCopy();
    url(t).AuthType = 'NONE';
    delete url(t).InvokeMode;
    expect(functionUrlProblems(t)).toEqual([expect.stringMatching(/AuthType is NONE, not AWS_IAM/), expect.stringMatching(/InvokeMode is BUFFERED \(the default\)/)]);
  });

  test('yuba-serve in a VPC', () => {
    const t = prodCopy();
    t.Resources[serveFunction(t)!].Properties.VpcConfig = { SubnetIds: ['subnet-1'], SecurityGroupIds: ['sg-1'] };
    expect(functionUrlProblems(t)).toEqual([expect.stringMatching(/runs in a VPC/)]);
  });

  test('without the lambda:InvokeFunction grant (the construct of older CDK versions made none)', () => {
    const t = prodCopy();
    const [id] = byType(t, 'AWS::Lambda::Permission').find(([, p]) => p.Properties.Action === 'lambda:InvokeFunction')!;
    delete t.Resources[id];
    expect(permissionProblems(t)).toEqual([expect.stringMatching(/^no lambda:InvokeFunction for CloudFront/)]);
  });

  test('lambda:InvokeFunction without InvokedViaFunctionUrl', () => {
    const t = prodCopy();
    delete permission(t, 'lambda:InvokeFunction').Properties.InvokedViaFunctionUrl;
    expect(permissionProblems(t)).toEqual([expect.stringMatching(/^no lambda:InvokeFunction .*InvokedViaFunctionUrl true$/)]);
  });

  test('without the lambda:InvokeFunctionUrl grant', () => {
    const t = prodCopy();
    permission(t, 'lambda:InvokeFunctionUrl').Properties.Action = 'lambda:GetFunctionUrlConfig';
    expect(permissionProblems(t)).toEqual([expect.stringMatching(/^no lambda:InvokeFunctionUrl for CloudFront/)]);
  });

  test('a grant to every distribution, or to anyone', () => {
    const t = prodCopy();
    delete permission(t, 'lambda:InvokeFunctionUrl').Properties.SourceArn;
    permission(t, 'lambda:InvokeFunction').Properties.Principal = '*';
    expect(permissionProblems(t)).toEqual([
      expect.stringMatching(/^a lambda:InvokeFunctionUrl grant to "cloudfront.amazonaws.com" that is not CloudFront's for this distribution/),
      expect.stringMatching(/^a lambda:InvokeFunction grant to "\*"/),
      expect.stringMatching(/^no lambda:InvokeFunctionUrl/),
      expect.stringMatching(/^no lambda:InvokeFunction for/),
    ]);
  });

  test('a function URL origin without origin access control, or with an S3 one', () => {
    const t = prodCopy();
    delete serveOrigin(t).OriginAccessControlId;
    expect(originProblems(t)).toEqual([expect.stringMatching(/has no origin access control$/)]);
    const u = prodCopy();
    resource(u, 'AWS::CloudFront::OriginAccessControl', (r) => r.Properties.OriginAccessControlConfig.OriginAccessControlOriginType === 'lambda').Properties.OriginAccessControlConfig.OriginAccessControlOriginType = 's3';
    expect(originProblems(u)).toEqual([expect.stringMatching(/origin access control is s3\/always\/sigv4, not lambda\/always\/sigv4$/)]);
  });

  test('the old HTTP failover (an origin CloudFront cannot authenticate to)', () => {
    const t = prodCopy();
    serveOrigin(t).DomainName = 'images-fallback.example.com';
    delete serveOrigin(t).OriginAccessControlId;
    expect(originProblems(t)).toEqual([expect.stringMatching(/"images-fallback.example.com"\) is neither the S3 bucket nor yuba-serve's function URL/)]);
  });

  test('variants under another path, originals without the failover, a method beyond GET and HEAD', () => {
    const t = prodCopy();
    const config = distributionConfig(t);
    config.CacheBehaviors[0].PathPattern = '/v/*';
    config.OriginGroups.Items[0].Members.Items.reverse();
    config.DefaultCacheBehavior.AllowedMethods = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'PATCH', 'POST', 'DELETE'];
    expect(behaviourProblems(t)).toEqual([
      expect.stringMatching(/^originals: the default behaviour is not an origin group of the S3 origin, then yuba-serve/),
      expect.stringMatching(/^variants: no behaviour \/_yuba-variants\/\* straight to yuba-serve/),
      expect.stringMatching(/^behaviour \(default\) allows .*POST.*, not GET and HEAD only/),
    ]);
  });

  test('Host added to the origin request policy', () => {
    const t = prodCopy();
    resource(t, 'AWS::CloudFront::OriginRequestPolicy').Properties.OriginRequestPolicyConfig.HeadersConfig = { HeaderBehavior: 'whitelist', Headers: ['Host'] };
    // Both behaviours reach yuba-serve (the default one on failover), and share the policy.
    expect(forwardingProblems(t)).toEqual([
      expect.stringMatching(/^behaviour \(default\): .* forwards the viewer's Host$/),
      expect.stringMatching(/^behaviour \(default\): .* forwards viewer headers \(whitelist host\)$/),
      expect.stringMatching(/^behaviour \/_yuba-variants\/\*: .* forwards the viewer's Host$/),
      expect.stringMatching(/^behaviour \/_yuba-variants\/\*: .* forwards viewer headers \(whitelist host\)$/),
    ]);
  });

  test('every viewer header but Host, cookies and query strings', () => {
    const t = prodCopy();
    distributionConfig(t).CacheBehaviors[0].OriginRequestPolicyId = cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER.originRequestPolicyId;
    const config = resource(t, 'AWS::CloudFront::OriginRequestPolicy').Properties.OriginRequestPolicyConfig;
    config.HeadersConfig = { HeaderBehavior: 'allExcept', Headers: ['host'] };
    config.CookiesConfig.CookieBehavior = 'all';
    config.QueryStringsConfig.QueryStringBehavior = 'all';
    expect(forwardingProblems(t)).toEqual([
      expect.stringMatching(/^behaviour \(default\): .* forwards viewer headers \(allExcept host\)$/),
      expect.stringMatching(/^behaviour \(default\): .* forwards cookies$/),
      expect.stringMatching(/^behaviour \(default\): .* forwards query strings$/),
      'behaviour /_yuba-variants/*: the managed policy AllViewerExceptHostHeader forwards viewer headers',
    ]);
  });

  test('Host in the cache key, which CloudFront then sends whatever the origin request policy says', () => {
    const t = prodCopy();
    t.Resources.HostKeyed = {
      Type: 'AWS::CloudFront::CachePolicy',
      Properties: { CachePolicyConfig: { ParametersInCacheKeyAndForwardedToOrigin: { HeadersConfig: { HeaderBehavior: 'whitelist', Headers: ['Host'] } } } },
    };
    distributionConfig(t).CacheBehaviors[0].CachePolicyId = { Ref: 'HostKeyed' };
    expect(forwardingProblems(t)).toEqual(['behaviour /_yuba-variants/*: cache policy HostKeyed keys on Host, which then reaches the origin']);
  });

  test('the managed CachingOptimized policy (a year at the edge), or a MaxTTL past the bound', () => {
    const t = prodCopy();
    const bound = stage('prod').config.delivery.edgeCacheSeconds;
    distributionConfig(t).DefaultCacheBehavior.CachePolicyId = cloudfront.CachePolicy.CACHING_OPTIMIZED.cachePolicyId;
    resource(t, 'AWS::CloudFront::CachePolicy').Properties.CachePolicyConfig.MaxTTL = 31_536_000;
    expect(cacheLifetimeProblems(t, bound)).toEqual([
      `behaviour (default): the managed cache policy ${cloudfront.CachePolicy.CACHING_OPTIMIZED.cachePolicyId} sets its own lifetimes, not the stage's ${bound} s`,
      `behaviour ${VARIANTS_PATH_PATTERN}: MaxTTL 31536000 s exceeds the stage's edgeCacheSeconds ${bound}`,
    ]);
  });

  test("yuba-serve's role named otherwise than the contract says", () => {
    const t = prodCopy();
    resource(t, 'AWS::IAM::Role', (r) => r.Properties.RoleName === `${prefix()}-serve-lambda`).Properties.RoleName = `${prefix()}-serve`;
    expect(roleProblems(t, prefix())).toEqual([`yuba-serve's role is named ${prefix()}-serve, the contract says ${prefix()}-serve-lambda`]);
  });
});
