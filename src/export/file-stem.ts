// Download and folder names made from an adapter's display name, shared by the worker and the page.
/** A file name from an adapter's display name (no path separators or characters file systems refuse). */
export function fileStem(name: string): string {
  return name.replace(/[\\/:*?"<>|\s·]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 80) || 'adapter';
}
