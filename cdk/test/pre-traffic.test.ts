/**
 * The pre-traffic probe (hooks/pre-traffic/index.js) against a loopback server that speaks the
 * three documented protocols it uses, through the real AWS SDK clients: S3 PutObject (REST),
 * Lambda Invoke (REST-JSON, `POST /2015-03-31/functions/{name}/invocations`, the function's
 * error in `X-Amz-Function-Error`) and CodeDeploy PutLifecycleEventHookExecutionStatus (JSON 1.1,
 * `X-Amz-Target: CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus`). No emulator has
 * CodeDeploy, and moto's Lambda needs Docker to run a function.
 */
import * as fs from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as path from 'path';
import { loadCanaryJob } from '../lib/canary';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const hook = require(path.join(__dirname, '..', 'hooks', 'pre-traffic', 'index.js'));

interface Seen {
  puts: Array<{ path: string; contentType?: string; body: Buffer }>;
  invokes: Array<{ path: string; payload: any }>;
  verdicts: any[];
}

/** What the fake Lambda answers to an invocation: a body and, optionally, a function error. */
type Answer = { body: string; functionError?: string };

async function withAws(answer: Answer, run: (seen: Seen) => Promise<void>): Promise<void> {
  const seen: Seen = { puts: [], invokes: [], verdicts: [] };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const target = req.headers['x-amz-target'];
      if (req.method === 'PUT') {
        seen.puts.push({ path: decodeURIComponent((req.url ?? '').split('?')[0]), contentType: req.headers['content-type'], body });
        res.writeHead(200, { ETag: '"0123456789abcdef0123456789abcdef"' });
        res.end();
      } else if (req.method === 'POST' && req.url?.startsWith('/2015-03-31/functions/')) {
        seen.invokes.push({ path: decodeURIComponent(req.url), payload: JSON.parse(body.toString('utf8')) });
        res.writeHead(200, {
          'Content-Type': 'application/json',
          'X-Amz-Executed-Version': '7',
          ...(answer.functionError ? { 'X-Amz-Function-Error': answer.functionError } : {}),
        });
        res.end(answer.body);
      } else if (target === 'CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus') {
        const verdict = JSON.parse(body.toString('utf8'));
        seen.verdicts.push(verdict);
        res.writeHead(200, { 'Content-Type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify({ lifecycleEventHookExecutionId: verdict.lifecycleEventHookExecutionId }));
      } else {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ message: `unexpected ${req.method} ${req.url}` }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const saved = { ...process.env };
  Object.assign(process.env, {
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ENDPOINT_URL_LAMBDA: endpoint,
    AWS_ENDPOINT_URL_CODEDEPLOY: endpoint,
    TARGET: 'arn:aws:lambda:eu-west-1:123456789012:function:yuba-prod-worker:7',
    CANARY_BUCKET: 'canary-bucket',
  });
  try {
    await run(seen);
  } finally {
    process.env = saved;
    await new Promise((resolve) => server.close(resolve));
  }
}

const event = { DeploymentId: 'd-ABC123', LifecycleEventHookExecutionId: 'hook-execution-1' };
const job = loadCanaryJob();


function asWorker() {
  process.env.KIND = 'worker';
  process.env.CANARY_KEY = `${job.keyPrefix}worker.png`;
  process.env.CANARY_JOB = JSON.stringify({ message: job.message, fields: job.fields });
}

describe('pre-traffic probe', () => {
  // The hook logs its verdict as one JSON line (CloudWatch Logs); not for the test output.
  beforeAll(() => jest.spyOn(console, 'log').mockImplementation(() => undefined));
  afterAll(() => jest.restoreAllMocks());

  test('worker: puts a PNG, sends the new version one replicate job for it, and passes it on an empty batchItemFailures', async () => {
    await withAws({ body: '{"batchItemFailures":[]}' }, async (seen) => {
      asWorker();
      const result = await hook.handler(event);
      expect(result).toEqual({ status: 'Succeeded', failure: undefined });
      expect(seen.puts).toHaveLength(1);
      expect(seen.puts[0].path).toBe(`/canary-bucket/${job.keyPrefix}worker.png`);
      expect(seen.puts[0].contentType).toBe('image/png');
      expect(seen.puts[0].body.subarray(1, 4).toString('ascii')).toBe('PNG');
      // The version's ARN names the function and its version.
      expect(seen.invokes).toHaveLength(1);
      expect(seen.invokes[0].path).toContain('function:yuba-prod-worker:7');
      const record = seen.invokes[0].payload.Records[0];
      expect(record.eventSource).toBe('aws:sqs');
      const sent = JSON.parse(record.body);
      expect(sent).toMatchObject({ ...job.message, [job.fields.bucket]: 'canary-bucket', [job.fields.key]: `${job.keyPrefix}worker.png` });
      expect(seen.verdicts).toEqual([{ deploymentId: 'd-ABC123', lifecycleEventHookExecutionId: 'hook-execution-1', status: 'Succeeded' }]);
    });
  });

  test('worker: a failed canary job fails the deployment', async () => {
    await withAws({ body: '{"batchItemFailures":[{"itemIdentifier":"canary-d-ABC123"}]}' }, async (seen) => {
      asWorker();
      const result = await hook.handler(event);
      expect(result.status).toBe('Failed');
      expect(result.failure).toContain('failed the canary job');
      expect(seen.verdicts.map((v) => v.status)).toEqual(['Failed']);
    });
  });

  test('a crashed invocation, or an answer that is not a batch response, fails the deployment', async () => {
    await withAws({ body: '{"errorType":"Runtime.ExitError"}', functionError: 'Unhandled' }, async (seen) => {
      asWorker();
      expect((await hook.handler(event)).failure).toContain('failed the invocation (Unhandled)');
      expect(seen.verdicts.map((v) => v.status)).toEqual(['Failed']);
    });
    await withAws({ body: 'null' }, async (seen) => {
      asWorker();
      expect((await hook.handler(event)).failure).toContain('not a partial batch response');
      expect(seen.verdicts.map((v) => v.status)).toEqual(['Failed']);
    });
    await withAws({ body: '{}' }, async (seen) => {
      asWorker();
      expect((await hook.handler(event)).failure).toContain('no batchItemFailures');
      expect(seen.verdicts.map((v) => v.status)).toEqual(['Failed']);
    });
  });

  test('ingest: sends the S3 notification of the object; success is an invocation without error', async () => {
    await withAws({ body: 'null' }, async (seen) => {
      process.env.KIND = 'ingest';
      process.env.CANARY_KEY = `${job.keyPrefix}ingest probe.png`;
      delete process.env.CANARY_JOB;
      const result = await hook.handler(event);
      expect(result.status).toBe('Succeeded');
      const record = seen.invokes[0].payload.Records[0];
      expect(record.eventSource).toBe('aws:s3');
      // Keys in S3 notifications are URL-encoded, a space as '+'.
      expect(record.s3.object.key).toBe(`${job.keyPrefix}ingest+probe.png`);
      expect(record.s3.object.size).toBe(seen.puts[0].body.length);
      expect(record.s3.object.eTag).toBe('0123456789abcdef0123456789abcdef');
    });
  });

  test('a probe that cannot run (a missing setting) is a failed deployment, never a hung one', async () => {
    await withAws({ body: 'null' }, async (seen) => {
      process.env.KIND = 'worker';
      delete process.env.CANARY_KEY;
      const result = await hook.handler(event);
      expect(result.failure).toContain('CANARY_KEY is not set');
      expect(seen.verdicts.map((v) => v.status)).toEqual(['Failed']);
      expect(seen.invokes).toHaveLength(0);
    });
  });
});

/**
 * The probe's two events and its PNG, built with fixed inputs, are testdata/ files that
 * tests/tests/e2e/lambda.rs feeds to the real yuba-worker and yuba-ingest under a loopback Lambda
 * Runtime API: what the probe sends is what the programs accept. A change here rewrites the
 * files and fails once, so that the Rust test runs on the new shapes.
 */
describe('the probe and the real programs share their inputs', () => {
  const dir = path.join(__dirname, '..', 'hooks', 'pre-traffic', 'testdata');
  const bucket = 'yuba-canary-probe';
  const now = new Date('2026-12-01T00:00:00.000Z');
  const png: Buffer = hook.canaryPng();
  const expected: Record<string, Buffer> = {
    'canary.png': png,
    'worker-event.json': Buffer.from(
      JSON.stringify(hook.sqsEvent('d-FIXTURE', hook.canaryJob(job, bucket, `${job.keyPrefix}worker.png`), now), null, 2) + '\n',
    ),
    'ingest-event.json': Buffer.from(
      JSON.stringify(hook.s3Event(bucket, `${job.keyPrefix}ingest.png`, png.length, '0123456789abcdef0123456789abcdef', now), null, 2) + '\n',
    ),
  };

  test.each(Object.keys(expected))('testdata/%s is up to date', (name) => {
    const file = path.join(dir, name);
    const current = fs.existsSync(file) ? fs.readFileSync(file) : undefined;
    if (!current || !current.equals(expected[name])) {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(file, expected[name]);
      throw new Error(`${file} was stale and has been rewritten: run the tests again, and tests/tests/e2e/lambda.rs with it`);
    }
  });
});
