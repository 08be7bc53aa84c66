// The "hello" handler as today's functions run it: the interpreter starts for each request and prints the body.
// .cjs: CommonJS wherever it runs (on the host, fnix's package.json says "type": "module").
process.stdout.write('hello\n');
