/**
 * @module
 * The lists of URLs and keys that fnix's Nix settings take (FNIX_SUBSTITUTERS, FNIX_TRUSTED_PUBLIC_KEYS,
 * FNIX_ALLOWED_URIS): how one is split, and how an entry is read as a URL.
 */

/** Splits a space- or comma-separated list, dropping empty entries and repeats. */
export function splitList(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter((entry) => entry !== ''))];
}

/** An entry of such a list as a URL, or why it is none (it holds a separator, or does not parse). */
export function parseListedUrl(entry: string): URL | string {
  if (/[\s,]/.test(entry)) return 'it holds a space or a comma, which separate URLs';
  try {
    return new URL(entry);
  } catch {
    return 'it is not a URL';
  }
}
