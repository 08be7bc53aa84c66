// The "hello" handler as a long-lived server: Node.js's http module, one process for every request.
//
// fnix runs it with PORT set; bench/serve.ts runs the same file on the host too, with the same interpreter.
// Every GET answers "hello\n" (readyPath "/" included). X-Bench-Deploy tells which deployment answered
// (the manifest's env.BENCH_DEPLOY, which the benchmark changes with each push).
// .cjs: CommonJS wherever it runs (on the host, fnix's package.json says "type": "module").
const http = require('node:http');

const BODY = Buffer.from('hello\n');
const DEPLOY = process.env.BENCH_DEPLOY ?? '0';

const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length, 'x-bench-deploy': DEPLOY });
  res.end(BODY);
});
server.keepAliveTimeout = 65_000; // longer than the gateway keeps an idle connection
server.listen(Number(process.env.PORT), '127.0.0.1');
