// A minimal Lambda runtime loop for Node, as the managed nodejs20.x runtime
// runs a handler (without its native HTTP client): load the handler module
// (init), then forever GET the next event from AWS_LAMBDA_RUNTIME_API, call
// the handler, POST its result (or error).
// Usage: node lambda_runtime.js [handler module, default ./lambda_handler.js]
'use strict';

const http = require('node:http');
const path = require('node:path');

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const base = '/2018-06-01/runtime';
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function call(method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: urlPath, agent, headers: body === undefined ? {} : {
      'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
    } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  let handler;
  try {
    handler = require(path.resolve(process.argv[2] || path.join(__dirname, 'lambda_handler.js'))).handler;
  } catch (err) {
    await call('POST', `${base}/init/error`, JSON.stringify({ errorMessage: err.message, errorType: err.name }));
    process.exit(1);
  }
  for (;;) {
    const next = await call('GET', `${base}/invocation/next`);
    const id = next.headers['lambda-runtime-aws-request-id'];
    try {
      const result = await handler(JSON.parse(next.body), { awsRequestId: id });
      await call('POST', `${base}/invocation/${id}/response`, JSON.stringify(result));
    } catch (err) {
      await call('POST', `${base}/invocation/${id}/error`, JSON.stringify({ errorMessage: err.message, errorType: err.name }));
    }
  }
}

main();
