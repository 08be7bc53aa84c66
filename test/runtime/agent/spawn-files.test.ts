/**
 * @module
 * The files of a SPAWN request (runtime/agent/protocol.ts encodeSpawn), which carry an invocation's
 * secrets to the agent: flag bit 1, then `[filec:u16]` and each file as name NUL, `[length:u32]`, bytes,
 * after the old fields, which are laid out as before. Names that are not plain file names and frames
 * above MAX_FRAME are refused, and no refusal quotes an env value or a file's bytes.
 */
import { describe, expect, it } from 'vitest';
import { FRAME, HEADER_SIZE, MAX_FRAME, encodeSpawn } from '../../../runtime/agent/protocol.ts';

/** The files at the end of a SPAWN frame with `strings` NUL-terminated strings before them. */
function readFiles(frame: Buffer, strings: number): Array<{ name: string; data: number[] }> {
  let offset = HEADER_SIZE + 9;
  for (let i = 0; i < strings; i += 1) offset = frame.indexOf(0, offset) + 1;
  const count = frame.readUInt16BE(offset);
  offset += 2;
  const files = [];
  for (let i = 0; i < count; i += 1) {
    const end = frame.indexOf(0, offset);
    const name = frame.toString('latin1', offset, end);
    const length = frame.readUInt32BE(end + 1);
    files.push({ name, data: [...frame.subarray(end + 5, end + 5 + length)] });
    offset = end + 5 + length;
  }
  expect(offset).toBe(frame.length);
  return files;
}

describe('encodeSpawn with files', () => {
  it('sets flag bit 1 and writes the files after the environment', () => {
    const frame = encodeSpawn({
      argv: ['./main.sh'],
      env: { A: '1' },
      cwd: '/fn',
      files: [
        { name: 'STRIPE_KEY', data: Buffer.from('sk') },
        { name: 'BINARY', data: Buffer.from([0, 255, 0]) },
      ],
    });
    expect(frame[0]).toBe(FRAME.SPAWN);
    expect(frame.readUInt32BE(1)).toBe(frame.length - HEADER_SIZE);
    expect(frame[HEADER_SIZE]).toBe(2);
    expect(readFiles(frame, 3)).toEqual([
      { name: 'STRIPE_KEY', data: [...Buffer.from('sk')] },
      { name: 'BINARY', data: [0, 255, 0] },
    ]);
  });

  it('keeps the old layout, byte for byte, without files or with none', () => {
    const old = encodeSpawn({ argv: ['ls'], env: { A: '1' }, cwd: '/' });
    expect(encodeSpawn({ argv: ['ls'], env: { A: '1' }, cwd: '/', files: [] })).toEqual(old);
    const payload = [0, 0, 0, 0, 0, 0, 1, 0, 1, ...Buffer.from('/\0ls\0A=1\0')];
    expect([...old]).toEqual([FRAME.SPAWN, 0, 0, 0, payload.length, ...payload]);
  });

  it('combines the tty flag with the files flag', () => {
    const frame = encodeSpawn({ argv: ['sh'], env: {}, cwd: '/fn', tty: { cols: 80, rows: 24 }, files: [{ name: 'K', data: Buffer.from('v') }] });
    expect(frame[HEADER_SIZE]).toBe(3);
    expect(readFiles(frame, 2)).toEqual([{ name: 'K', data: [0x76] }]);
  });

  it.each(['', '.', '..', 'a/b', '../x', 'A\0B', 'x'.repeat(256)])('refuses the file name %j', (name) => {
    expect(() => encodeSpawn({ argv: ['x'], env: {}, cwd: '/', files: [{ name, data: Buffer.from('v') }] })).toThrow(TypeError);
  });

  it('refuses a frame above MAX_FRAME', () => {
    const files = [0, 1].map((i) => ({ name: `F${i}`, data: Buffer.alloc(MAX_FRAME / 2) }));
    expect(() => encodeSpawn({ argv: ['x'], env: {}, cwd: '/', files })).toThrow(RangeError);
  });

  it('names the variable, never its value, when an env value holds NUL', () => {
    let message = '';
    try {
      encodeSpawn({ argv: ['x'], env: { TOKEN: 'secret-value\0' }, cwd: '/' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('TOKEN');
    expect(message).not.toContain('secret-value');
  });
});
