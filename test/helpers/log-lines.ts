/** The lines of what a logger wrote at once (it writes a turn's lines together), each with its newline. */
export function linesOf(text: string): string[] {
  return text.match(/[^\n]*\n/g) ?? [];
}
