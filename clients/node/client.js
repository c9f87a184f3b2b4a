#!/usr/bin/env node
// Calls the gateway's gRPC host from Node.js using only protos/openai.proto (loaded at run time),
// to prove that the contract works across languages:
//
//   node clients/node/client.js --target 127.0.0.1:8002 --tenant contoso --message "Hello"
//
// Prints one JSON object: {"echo": ..., "chat": ..., "stream": [...], "invalid": {code, details}}.
// Options: --token <JWT> (sent as "authorization: Bearer <JWT>" instead of the tenant field),
// --x-tenant <name> (sent as "x-tenant" metadata), --deadline <seconds> (default 30).
// Exit code 0 when every call behaved as expected, 1 otherwise.
'use strict';

const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO = path.resolve(__dirname, '..', '..', 'protos', 'openai.proto');

function options() {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', default: '127.0.0.1:8002' },
      tenant: { type: 'string', default: '' },
      'x-tenant': { type: 'string' },
      token: { type: 'string' },
      message: { type: 'string', default: 'Hello from Node.js' },
      value: { type: 'string', default: '7' },
      deadline: { type: 'string', default: '30' },
    },
  });
  return values;
}

function loadService() {
  const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition);
  return pkg.OpenAiRestApi.OpenAIServiceGrpc;
}

function unary(client, method, request, metadata, deadline) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: deadline() }, (error, reply) =>
      error ? reject(error) : resolve(reply));
  });
}

function streaming(client, request, metadata, deadline) {
  return new Promise((resolve, reject) => {
    const parts = [];
    const call = client.GetChatCompletionsStreaming(request, metadata, { deadline: deadline() });
    call.on('data', (reply) => parts.push(reply.message));
    call.on('error', reject);
    call.on('end', () => resolve(parts));
  });
}

async function main() {
  const args = options();
  const Service = loadService();
  const client = new Service(args.target, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (args['x-tenant']) metadata.set('x-tenant', args['x-tenant']);
  if (args.token) metadata.set('authorization', `Bearer ${args.token}`);
  const deadline = () => new Date(Date.now() + Number(args.deadline) * 1000);
  const conversation = [{ role: 'user', content: args.message }];
  const request = { tenant: args.tenant, conversation };

  const result = {};
  try {
    const echo = await unary(client, 'Echo', { tenant: args.tenant, value: Number(args.value) }, metadata, deadline);
    result.echo = echo.message;
    result.chat = (await unary(client, 'GetChatCompletions', request, metadata, deadline)).result;
    result.stream = await streaming(client, request, metadata, deadline);
    try {
      await unary(client, 'GetChatCompletions', { tenant: args.tenant, conversation: [] }, metadata, deadline);
      result.invalid = { code: 'OK', details: '' };
    } catch (error) {
      result.invalid = { code: grpc.status[error.code], details: error.details };
    }
  } catch (error) {
    result.error = { code: grpc.status[error.code] ?? String(error.code), details: error.details ?? String(error) };
  } finally {
    client.close();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  const ok = !result.error && result.invalid && result.invalid.code === 'INVALID_ARGUMENT';
  process.exitCode = ok ? 0 : 1;
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exitCode = 1;
});
