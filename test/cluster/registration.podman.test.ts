import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { selectRegistration } from '../../cluster/store/shared.ts';

describe('selectRegistration', () => {
  it("keeps exactly the wanted paths' blocks of nix-store --dump-db, references and all", async () => {
    // A real closure of this host's store: bash-static's offline package has references.
    const { stdout: closureText } = await execa('nix-store', [
      '--query',
      '--requisites',
      (await execa('nix-build', ['--no-out-link', '-A', 'busybox', 'runtime/nix/offline'])).stdout.trim(),
    ]);
    const closure = closureText.trim().split('\n');
    const { stdout: dump } = await execa('nix-store', ['--dump-db', ...closure]);
    const all = selectRegistration(`${dump}\n`, new Set(closure));
    expect(all.count).toBe(closure.length);
    const one = selectRegistration(`${dump}\n`, new Set([closure[0]!]));
    expect(one.count).toBe(1);
    expect(one.text.split('\n')[0]).toBe(closure[0]);
    expect(selectRegistration(`${dump}\n`, new Set(['/nix/store/none'])).count).toBe(0);
  });

  it('refuses a malformed registration', () => {
    expect(() => selectRegistration('/nix/store/x\nhash\n1\n\nmany\n', new Set(['/nix/store/x']))).toThrow(/malformed/);
  });
});
