// A Node.js function: GET /fn/greet-node?name=Ada answers a JSON greeting; a POST body is hashed.
//
//   curl -s 'localhost:8080/fn/greet-node?name=Ada'
//   curl -s localhost:8080/fn/greet-node -d 'some bytes'
const { createHash } = require('node:crypto');

const query = new URLSearchParams(process.env.QUERY_STRING ?? '');
const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const body = Buffer.concat(chunks);
  const reply = {
    greeting: `Hello, ${query.get('name') ?? 'world'}!`,
    method: process.env.REQUEST_METHOD,
    bodyBytes: body.length,
    sha256: body.length > 0 ? createHash('sha256').update(body).digest('hex') : null,
    node: process.version,
  };
  process.stdout.write('Content-Type: application/json\r\n\r\n');
  process.stdout.write(`${JSON.stringify(reply)}\n`);
});
