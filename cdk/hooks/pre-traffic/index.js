'use strict';
/**
 * CodeDeploy's BeforeAllowTraffic hook of a yuba Lambda (worker or ingest): before any traffic
 * reaches the new version, send it one synthetic unit of work and fail the deployment unless it
 * does it. At low traffic the canary's alarms may see no job at all in their window; this probe
 * makes sure the version was tried at least once.
 *
 * - worker: puts a small PNG in the stack's canary bucket, then invokes the new version with an
 *   SQS batch of one replicate job for it (the message the Rust model writes,
 *   cdk/lib/generated/canary-job.json, `force`: copied even if the replica is up to date). The
 *   worker answers with a partial batch response; an empty `batchItemFailures` means the object
 *   was read, uploaded and verified by GCS (crc32c), its variants made.
 * - ingest: puts the object, then invokes the new version with the S3 notification of it. Ingest
 *   fails the invocation when a job could not be put on a work queue.
 *
 * The verdict goes to CodeDeploy (PutLifecycleEventHookExecutionStatus) whatever happens; a
 * probe that throws is a failed deployment, never a hung one.
 *
 * Environment (set by cdk/lib/canary.ts): KIND (worker | ingest), TARGET (the new version's ARN),
 * CANARY_BUCKET, CANARY_KEY (under the reserved canary prefix), CANARY_JOB (worker: the job
 * message template with its `fields`).
 */
const zlib = require('zlib');
const { LambdaClient, InvokeCommand } = require('@aws-sdk/client-lambda');
const { S3Client, PutObjectCommand } = require('@aws-sdk/client-s3');
const { CodeDeployClient, PutLifecycleEventHookExecutionStatusCommand } = require('@aws-sdk/client-codedeploy');

/** A 96 x 64 RGB gradient as a PNG: big enough for every variant profile to shrink (or keep) it. */
function canaryPng() {
  const width = 96;
  const height = 64;
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) row.set([(x * 255) / width, (y * 255) / height, 128], 1 + x * 3);
    rows.push(row);
  }
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body) >>> 0);
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The replicate job for the canary object, from the template the Rust model generated. */
function canaryJob(template, bucket, key) {
  const message = { ...template.message };
  message[template.fields.bucket] = bucket;
  message[template.fields.key] = key;
  return JSON.stringify(message);
}

/** An SQS trigger event of one message, as Lambda's event source mapping delivers it. */
function sqsEvent(deploymentId, body, now) {
  return {
    Records: [
      {
        messageId: `canary-${deploymentId}`,
        body,
        attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(now.getTime()) },
        messageAttributes: {},
        eventSource: 'aws:sqs',
      },
    ],
  };
}

/** An S3 event notification of one created object. */
function s3Event(bucket, key, size, etag, now) {
  return {
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        eventTime: now.toISOString(),
        eventName: 'ObjectCreated:Put',
        s3: {
          s3SchemaVersion: '1.0',
          bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` },
          // S3 URL-encodes keys in notifications (a space is '+').
          object: { key: encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/'), size, eTag: etag },
        },
      },
    ],
  };
}

/** Tries the new version once; the reason it failed, or undefined. */
async function probe(env, deploymentId, clients) {
  const png = canaryPng();
  const put = await clients.s3.send(
    new PutObjectCommand({ Bucket: env.CANARY_BUCKET, Key: env.CANARY_KEY, Body: png, ContentType: 'image/png' }),
  );
  const etag = (put.ETag ?? '').replace(/"/g, '');
  const now = new Date();
  const payload =
    env.KIND === 'worker'
      ? sqsEvent(deploymentId, canaryJob(JSON.parse(env.CANARY_JOB), env.CANARY_BUCKET, env.CANARY_KEY), now)
      : s3Event(env.CANARY_BUCKET, env.CANARY_KEY, png.length, etag, now);
  const out = await clients.lambda.send(new InvokeCommand({ FunctionName: env.TARGET, Payload: Buffer.from(JSON.stringify(payload)) }));
  const answer = out.Payload ? Buffer.from(out.Payload).toString('utf8') : '';
  if (out.FunctionError) return `the new version failed the invocation (${out.FunctionError}): ${answer.slice(0, 1000)}`;
  if (env.KIND === 'worker') {
    let failures;
    try {
      failures = JSON.parse(answer).batchItemFailures;
    } catch (e) {
      return `the new version answered something that is not a partial batch response: ${answer.slice(0, 1000)}`;
    }
    if (!Array.isArray(failures)) return `the new version's answer has no batchItemFailures: ${answer.slice(0, 1000)}`;
    if (failures.length > 0) return `the new version failed the canary job for s3://${env.CANARY_BUCKET}/${env.CANARY_KEY} (see its log)`;
  }
  return undefined;
}

function clientsFromEnvironment() {
  // Endpoints and credentials come from the standard environment (AWS_ENDPOINT_URL_<SERVICE> in tests).
  return { s3: new S3Client({}), lambda: new LambdaClient({}), codedeploy: new CodeDeployClient({}) };
}

exports.handler = async (event) => {
  const env = process.env;
  const clients = clientsFromEnvironment();
  let failure;
  try {
    for (const name of ['KIND', 'TARGET', 'CANARY_BUCKET', 'CANARY_KEY']) {
      if (!env[name]) throw new Error(`${name} is not set (the hook's environment comes from cdk/lib/canary.ts)`);
    }
    if (env.KIND !== 'worker' && env.KIND !== 'ingest') throw new Error(`KIND is ${env.KIND}, not worker or ingest`);
    failure = await probe(env, event.DeploymentId, clients);
  } catch (e) {
    failure = `the probe could not run: ${e && e.message ? e.message : e}`;
  }
  const status = failure ? 'Failed' : 'Succeeded';
  console.log(JSON.stringify({ deploymentId: event.DeploymentId, target: env.TARGET, kind: env.KIND, status, failure }));
  await clients.codedeploy.send(
    new PutLifecycleEventHookExecutionStatusCommand({
      deploymentId: event.DeploymentId,
      lifecycleEventHookExecutionId: event.LifecycleEventHookExecutionId,
      status,
    }),
  );
  return { status, failure };
};

// For the tests that hold these shapes to what the real programs accept (cdk/test/pre-traffic.test.ts
// writes them to testdata/, tests/tests/e2e/lambda.rs feeds them to yuba-worker and yuba-ingest).
exports.canaryPng = canaryPng;
exports.canaryJob = canaryJob;
exports.sqsEvent = sqsEvent;
exports.s3Event = s3Event;
