/**
 * @module
 * The host/agent wire protocol (runtime/agent/protocol.ts): frame encoding, FrameDecoder over any
 * chunking of the byte stream and its size limit, and the byte layout of SPAWN and RESIZE payloads.
 */
import { describe, expect, it } from 'vitest';
import { FRAME, FrameDecoder, HEADER_SIZE, MAX_FRAME, encodeFrame, encodeResize, encodeSpawn, type Frame } from '../../../runtime/agent/protocol.ts';

/** Frames as plain values (payload copied), for comparison. */
function plain(frames: Frame[]): Array<{ type: number; payload: number[] }> {
  return frames.map((f) => ({ type: f.type, payload: [...f.payload] }));
}

/** Feeds `stream` to a fresh decoder in chunks of the given sizes (the rest in a last chunk). */
function decodeInChunks(stream: Buffer, sizes: number[]): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let offset = 0;
  for (const size of sizes) {
    frames.push(...decoder.push(stream.subarray(offset, offset + size)).map((f) => ({ type: f.type, payload: Buffer.from(f.payload) })));
    offset += size;
  }
  if (offset < stream.length) frames.push(...decoder.push(stream.subarray(offset)));
  return frames;
}

const SAMPLE: Array<[number, Buffer]> = [
  [FRAME.HELLO, Buffer.from('fnix-agent 1 65536')],
  [FRAME.STDOUT, Buffer.from([0, 1, 2, 0xff, 0x0a, 0x0d])],
  [FRAME.STDIN, Buffer.alloc(0)],
  [FRAME.STDERR, Buffer.from('héllo\n')],
  [FRAME.KILL, Buffer.alloc(0)],
  [FRAME.EXIT, Buffer.from([0, 0, 0, 0, 3, 0])],
];
const SAMPLE_STREAM = Buffer.concat(SAMPLE.map(([type, payload]) => encodeFrame(type, payload)));
const SAMPLE_PLAIN = SAMPLE.map(([type, payload]) => ({ type, payload: [...payload] }));

describe('encodeFrame', () => {
  it('writes [type:u8][length:u32 big-endian][payload]', () => {
    const frame = encodeFrame(0x82, Buffer.from('abc'));
    expect([...frame]).toEqual([0x82, 0, 0, 0, 3, 0x61, 0x62, 0x63]);
  });

  it('encodes a missing or empty payload as a bare header', () => {
    expect([...encodeFrame(FRAME.KILL)]).toEqual([FRAME.KILL, 0, 0, 0, 0]);
    expect([...encodeFrame(FRAME.STDIN, new Uint8Array(0))]).toEqual([FRAME.STDIN, 0, 0, 0, 0]);
  });

  it('writes lengths above 16 bits big-endian', () => {
    const frame = encodeFrame(FRAME.STDOUT, Buffer.alloc(0x012345, 7));
    expect(frame.length).toBe(HEADER_SIZE + 0x012345);
    expect([...frame.subarray(0, HEADER_SIZE)]).toEqual([FRAME.STDOUT, 0x00, 0x01, 0x23, 0x45]);
  });

  it('accepts a plain Uint8Array payload', () => {
    expect([...encodeFrame(FRAME.STDIN, new Uint8Array([9, 8]))]).toEqual([FRAME.STDIN, 0, 0, 0, 2, 9, 8]);
  });
});

describe('FrameDecoder', () => {
  it('round-trips frames pushed as one chunk, in order', () => {
    expect(plain(new FrameDecoder().push(SAMPLE_STREAM))).toEqual(SAMPLE_PLAIN);
  });

  it('decodes the same frames when the stream arrives one byte at a time', () => {
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    for (let i = 0; i < SAMPLE_STREAM.length; i++) {
      const out = decoder.push(SAMPLE_STREAM.subarray(i, i + 1));
      frames.push(...out.map((f) => ({ type: f.type, payload: Buffer.from(f.payload) })));
    }
    expect(plain(frames)).toEqual(SAMPLE_PLAIN);
  });

  it('decodes the same frames whichever byte boundary the stream is split at', () => {
    for (let cut = 0; cut <= SAMPLE_STREAM.length; cut++) {
      expect(plain(decodeInChunks(SAMPLE_STREAM, [cut]))).toEqual(SAMPLE_PLAIN);
    }
  });

  it('decodes the same frames when split at every pair of boundaries', () => {
    const stream = Buffer.concat(SAMPLE.slice(0, 3).map(([type, payload]) => encodeFrame(type, payload)));
    const expected = SAMPLE_PLAIN.slice(0, 3);
    for (let a = 0; a <= stream.length; a++) {
      for (let b = 0; a + b <= stream.length; b++) {
        expect(plain(decodeInChunks(stream, [a, b]))).toEqual(expected);
      }
    }
  });

  it('returns a frame only once it is complete and keeps the remainder', () => {
    const decoder = new FrameDecoder();
    const frame = encodeFrame(FRAME.STDOUT, Buffer.from('hello'));
    expect(decoder.push(frame.subarray(0, 4))).toEqual([]);
    expect(decoder.push(frame.subarray(4, 9))).toEqual([]);
    const next = encodeFrame(FRAME.READY, Buffer.from([1]));
    const out = decoder.push(Buffer.concat([frame.subarray(9), next.subarray(0, 2)]));
    expect(plain(out)).toEqual([{ type: FRAME.STDOUT, payload: [...Buffer.from('hello')] }]);
    expect(plain(decoder.push(next.subarray(2)))).toEqual([{ type: FRAME.READY, payload: [1] }]);
  });

  it('decodes consecutive empty-payload frames', () => {
    const stream = Buffer.concat([encodeFrame(FRAME.KILL), encodeFrame(FRAME.STDIN), encodeFrame(FRAME.KILL)]);
    expect(plain(new FrameDecoder().push(stream))).toEqual([
      { type: FRAME.KILL, payload: [] },
      { type: FRAME.STDIN, payload: [] },
      { type: FRAME.KILL, payload: [] },
    ]);
  });

  it('returns nothing for an empty chunk', () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(Buffer.alloc(0))).toEqual([]);
    expect(plain(decoder.push(encodeFrame(FRAME.KILL)))).toEqual([{ type: FRAME.KILL, payload: [] }]);
  });

  it('keeps earlier payloads intact while later chunks arrive', () => {
    const decoder = new FrameDecoder();
    const first = encodeFrame(FRAME.STDOUT, Buffer.from('first'));
    const second = encodeFrame(FRAME.STDOUT, Buffer.from('second'));
    const [kept] = decoder.push(Buffer.concat([first, second.subarray(0, 3)]));
    decoder.push(second.subarray(3));
    expect(kept!.payload.toString()).toBe('first');
  });

  it('accepts a frame of exactly MAX_FRAME bytes', () => {
    const payload = Buffer.alloc(MAX_FRAME, 0xab);
    const frames = new FrameDecoder().push(encodeFrame(FRAME.STDOUT, payload));
    expect(frames).toHaveLength(1);
    expect(frames[0]!.payload.length).toBe(MAX_FRAME);
    expect(frames[0]!.payload.equals(payload)).toBe(true);
  });

  it('throws as soon as a header announces more than MAX_FRAME bytes', () => {
    const header = Buffer.alloc(HEADER_SIZE);
    header[0] = FRAME.STDOUT;
    header.writeUInt32BE(MAX_FRAME + 1, 1);
    expect(() => new FrameDecoder().push(header)).toThrow(RangeError);
    header.writeUInt32BE(0xffffffff, 1);
    expect(() => new FrameDecoder().push(header)).toThrow(RangeError);
  });

  it('throws on an oversized header that follows valid frames in the same chunk, and when it arrives in pieces', () => {
    const header = Buffer.alloc(HEADER_SIZE);
    header[0] = FRAME.STDERR;
    header.writeUInt32BE(MAX_FRAME + 1, 1);
    expect(() => new FrameDecoder().push(Buffer.concat([encodeFrame(FRAME.KILL), header]))).toThrow(RangeError);

    const decoder = new FrameDecoder();
    expect(decoder.push(header.subarray(0, 3))).toEqual([]);
    expect(() => decoder.push(header.subarray(3))).toThrow(RangeError);
  });
});

/** Decodes a SPAWN frame by hand, following the documented layout. */
function readSpawn(frame: Buffer) {
  expect(frame[0]).toBe(FRAME.SPAWN);
  const length = frame.readUInt32BE(1);
  expect(frame.length).toBe(HEADER_SIZE + length);
  const p = frame.subarray(HEADER_SIZE);
  const flags = p[0]!;
  const cols = p.readUInt16BE(1);
  const rows = p.readUInt16BE(3);
  const argc = p.readUInt16BE(5);
  const envc = p.readUInt16BE(7);
  const strings: string[] = [];
  let offset = 9;
  while (offset < p.length) {
    const nul = p.indexOf(0, offset);
    expect(nul).not.toBe(-1); // every string is NUL-terminated, including the last
    strings.push(p.subarray(offset, nul).toString('utf8'));
    offset = nul + 1;
  }
  expect(strings).toHaveLength(1 + argc + envc);
  return { flags, cols, rows, argc, envc, cwd: strings[0], argv: strings.slice(1, 1 + argc), env: strings.slice(1 + argc) };
}

describe('encodeSpawn', () => {
  it('lays out flags, sizes, counts, then cwd, argv and NAME=value env as NUL-terminated strings', () => {
    const frame = encodeSpawn({
      argv: ['./main.sh', '--name', 'wörld', ''],
      env: { PATH: '/bin:/usr/bin', EMPTY: '', EQ: 'a=b' },
      cwd: '/fn',
    });
    expect(readSpawn(frame)).toEqual({
      flags: 0,
      cols: 0,
      rows: 0,
      argc: 4,
      envc: 3,
      cwd: '/fn',
      argv: ['./main.sh', '--name', 'wörld', ''],
      env: ['PATH=/bin:/usr/bin', 'EMPTY=', 'EQ=a=b'],
    });
  });

  it('matches the exact bytes for a small request', () => {
    const frame = encodeSpawn({ argv: ['ls'], env: { A: '1' }, cwd: '/' });
    const payload = [0, 0, 0, 0, 0, 0, 1, 0, 1, ...Buffer.from('/\0ls\0A=1\0')];
    expect([...frame]).toEqual([FRAME.SPAWN, 0, 0, 0, payload.length, ...payload]);
  });

  it('sets flag 1 and writes cols and rows big-endian for a tty', () => {
    const frame = encodeSpawn({ argv: ['sh'], env: {}, cwd: '/fn', tty: { cols: 300, rows: 0x0102 } });
    const decoded = readSpawn(frame);
    expect(decoded).toMatchObject({ flags: 1, cols: 300, rows: 258, argc: 1, envc: 0, argv: ['sh'], env: [] });
    expect([...frame.subarray(HEADER_SIZE + 1, HEADER_SIZE + 5)]).toEqual([0x01, 0x2c, 0x01, 0x02]);
  });

  it('treats tty: undefined like no tty', () => {
    expect(readSpawn(encodeSpawn({ argv: ['x'], env: {}, cwd: '/', tty: undefined }))).toMatchObject({ flags: 0, cols: 0, rows: 0 });
  });

  it('writes multi-byte UTF-8 and counts argc/envc above 255 as u16', () => {
    const argv = Array.from({ length: 300 }, (_, i) => `arg-${i}-€`);
    const env = Object.fromEntries(Array.from({ length: 260 }, (_, i) => [`V${i}`, `${i}`]));
    const decoded = readSpawn(encodeSpawn({ argv, env, cwd: '/fn' }));
    expect(decoded.argc).toBe(300);
    expect(decoded.envc).toBe(260);
    expect(decoded.argv).toEqual(argv);
    expect(decoded.env[259]).toBe('V259=259');
  });

  it.each([
    ['cwd', { argv: ['x'], env: {}, cwd: '/f\0n' }],
    ['an argument', { argv: ['x', 'a\0b'], env: {}, cwd: '/fn' }],
    ['the program', { argv: ['\0'], env: {}, cwd: '/fn' }],
    ['an env value', { argv: ['x'], env: { A: 'v\0' }, cwd: '/fn' }],
    ['an env name', { argv: ['x'], env: { 'A\0B': 'v' }, cwd: '/fn' }],
  ])('refuses NUL in %s', (_where, request) => {
    expect(() => encodeSpawn(request)).toThrow(TypeError);
  });
});

describe('encodeResize', () => {
  it('writes a RESIZE frame of [cols:u16][rows:u16]', () => {
    expect([...encodeResize(80, 24)]).toEqual([FRAME.RESIZE, 0, 0, 0, 4, 0, 80, 0, 24]);
    expect([...encodeResize(0xffff, 0x1234)]).toEqual([FRAME.RESIZE, 0, 0, 0, 4, 0xff, 0xff, 0x12, 0x34]);
  });

  it('refuses sizes that do not fit in 16 bits', () => {
    expect(() => encodeResize(0x10000, 24)).toThrow(RangeError);
    expect(() => encodeResize(80, -1)).toThrow(RangeError);
  });

  it('decodes back through FrameDecoder', () => {
    const [frame] = new FrameDecoder().push(encodeResize(132, 43));
    expect(frame!.type).toBe(FRAME.RESIZE);
    expect([frame!.payload.readUInt16BE(0), frame!.payload.readUInt16BE(2)]).toEqual([132, 43]);
  });
});
