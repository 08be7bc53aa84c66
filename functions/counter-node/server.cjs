// A serve function in Node.js's standard library: one process answers every request. (.cjs: CommonJS
// wherever it is run from, even beside a package.json of "type": "module".)
//
//   curl -s localhost:8080/fn/counter-node/hits              # {"hits":1,"instance":"i-...",...}
//   curl -s localhost:8080/fn/counter-node/hits              # {"hits":2,...}: the same process
//   curl -s -X POST localhost:8080/fn/counter-node/echo -d '{"a":1}'
//
// fnix starts it once per instance with PORT set and waits for GET /healthz to answer. Node serves
// requests concurrently, so the manifest lets one instance take 8 at once.
const http = require('node:http');

let hits = 0;

function answer(res, status, body) {
  const data = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && path === '/healthz') return answer(res, 200, { ok: true });
  if (req.method === 'GET' && (path === '/' || path === '/hits')) {
    hits += 1;
    return answer(res, 200, { hits, instance: process.env.FNIX_INSTANCE_ID, pid: process.pid, invocation: req.headers['x-fnix-invocation-id'] });
  }
  if (req.method === 'POST' && path === '/echo') {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      try {
        answer(res, 200, { echo: JSON.parse(Buffer.concat(chunks).toString() || 'null') });
      } catch (error) {
        answer(res, 400, { error: `the body is not JSON: ${error.message}` });
      }
    });
    return;
  }
  answer(res, 404, { error: `no route ${req.method} ${path}; try GET /hits or POST /echo` });
});
server.keepAliveTimeout = 65_000; // longer than the gateway keeps an idle connection
server.listen(Number(process.env.PORT), '127.0.0.1');
