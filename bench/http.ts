/**
 * @module
 * The benchmark's HTTP client: node:http with keep-alive connections, as a load generator would use,
 * checking every answer byte for byte.
 */
import { Agent, request } from 'node:http';

/** What one request sends and must get back. */
export interface Exchange {
  url: string;
  body?: Buffer | undefined;
  expected: Buffer;
}

/** A keep-alive client with up to `sockets` connections. */
export function createClient(sockets: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: sockets });
  return {
    /** Sends the request; resolves with the time to the first body byte, in ms. Throws on a wrong answer. */
    send(exchange: Exchange): Promise<{ firstByteMs: number }> {
      return new Promise((resolve, reject) => {
        const t0 = performance.now();
        let firstByteMs = NaN;
        const req = request(
          exchange.url,
          {
            agent,
            method: exchange.body ? 'POST' : 'GET',
            headers: exchange.body ? { 'content-length': exchange.body.length } : {},
          },
          (res) => {
            const parts: Buffer[] = [];
            res.on('data', (chunk: Buffer) => {
              if (parts.length === 0) firstByteMs = performance.now() - t0;
              parts.push(chunk);
            });
            res.on('error', reject);
            res.on('end', () => {
              const body = Buffer.concat(parts);
              if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}: ${body.subarray(0, 200).toString()}`));
              else if (!body.equals(exchange.expected)) reject(new Error(`wrong body (${body.length} bytes)`));
              else resolve({ firstByteMs });
            });
          },
        );
        req.on('error', reject);
        req.end(exchange.body);
      });
    },
    close(): void {
      agent.destroy();
    },
  };
}
