// WGSL has no includes, so text that several shaders share lives once in shaders/lib/NAME.wgsl and
// a shader pulls it in with a line of its own, unindented, at module scope:
//   //#include NAME
// expandIncludes() resolves those lines; Gpu.kernel() runs it on every shader it compiles, and
// subgroupVariant() runs it first too, so a snippet's own `//#if subgroups` blocks are cut like
// the shader's.
// Where the text goes: the include line becomes a comment and the snippet is appended after the
// shader's last line, behind a marker line. WGSL declarations at module scope may come in any order
// (a function may call one declared below it), so the place changes nothing in the program, while
// the shader keeps its own line numbers in compiler messages; sourceLine() maps a line past the end
// back to the snippet's file and line. Hence the rules: an include stands at module scope (the line
// is unindented) and outside `//#if subgroups` blocks (a snippet holds its own), a snippet holds
// only module-scope declarations, a shader includes a name once, and snippets include nothing (no
// nesting: one level is all the shaders need). Each breach is an Error naming shader and line.
import blockIds from '../../shaders/lib/block_ids.wgsl?raw';
import blockSum from '../../shaders/lib/block_sum.wgsl?raw';
import gemvReduce from '../../shaders/lib/gemv_reduce.wgsl?raw';
import gluAct from '../../shaders/lib/glu_act.wgsl?raw';
import matmulTile from '../../shaders/lib/matmul_tile.wgsl?raw';
import nf4BlockScale from '../../shaders/lib/nf4_block_scale.wgsl?raw';
import nf4Lut from '../../shaders/lib/nf4_lut.wgsl?raw';
import nf4Tables from '../../shaders/lib/nf4_tables.wgsl?raw';

/** The snippets by name (shaders/lib/NAME.wgsl). Listed by hand: the CLI loads shaders through a
 *  plain `?raw` loader, which has no glob import; src/registry.test.ts checks the list is whole. */
export const WGSL_LIB: Readonly<Record<string, string>> = {
  block_ids: blockIds,
  block_sum: blockSum,
  gemv_reduce: gemvReduce,
  glu_act: gluAct,
  matmul_tile: matmulTile,
  nf4_block_scale: nf4BlockScale,
  nf4_lut: nf4Lut,
  nf4_tables: nf4Tables,
};

const INCLUDE = /^\/\/#include\b(.*)$/;
const MARKER = /^\/\/#lib (\S+), included at line (\d+)$/;

/** `code` with each `//#include NAME` resolved against `lib` (see the header). `shader` names the
 *  shader in errors. Text without includes comes back as it is. */
export function expandIncludes(shader: string, code: string, lib: Readonly<Record<string, string>> = WGSL_LIB): string {
  if (!code.includes('//#include')) return code;
  const lines = code.split('\n');
  const tails: string[] = [];
  const seen = new Set<string>();
  let inBlock = false;
  lines.forEach((line, i) => {
    const t = line.trim();
    if (t === '//#if subgroups') inBlock = true;
    if (t === '//#endif') inBlock = false;
    if (!t.startsWith('//#include')) return;
    const where = `${shader}.wgsl:${i + 1}`;
    // The text lands after the last line, outside the block: it would not be conditional.
    if (inBlock) throw new Error(`${where}: //#include inside an //#if subgroups block`);
    const m = INCLUDE.exec(line);
    const name = m?.[1].trim() ?? '';
    if (!m || !/^[a-z0-9_]+$/.test(name)) {
      throw new Error(`${where}: expected an unindented "//#include NAME" (NAME from shaders/lib/), got "${t}"`);
    }
    const text = lib[name];
    if (text === undefined) {
      throw new Error(`${where}: //#include ${name}: no shaders/lib/${name}.wgsl (known: ${Object.keys(lib).join(', ')})`);
    }
    if (seen.has(name)) throw new Error(`${where}: //#include ${name} a second time`);
    const nested = text.split('\n').findIndex((l) => l.trim().startsWith('//#include'));
    if (nested >= 0) {
      throw new Error(`${where}: //#include ${name}: shaders/lib/${name}.wgsl:${nested + 1} includes again; snippets may not nest`);
    }
    seen.add(name);
    lines[i] = `// shaders/lib/${name}.wgsl: appended below`;
    tails.push(`//#lib ${name}, included at line ${i + 1}`, ...text.replace(/\n$/, '').split('\n'));
  });
  return [...lines, ...tails].join('\n');
}

/** Where line `line` (1-based) of an expanded shader came from: the shader's own line, or the line
 *  of the snippet appended there. For compiler messages. */
export function sourceLine(shader: string, code: string, line: number): string {
  const lines = code.split('\n');
  for (let i = Math.min(line, lines.length) - 1; i >= 0; i--) {
    const m = MARKER.exec(lines[i]);
    if (m) return `shaders/lib/${m[1]}.wgsl:${line - i - 1} (included by ${shader}.wgsl:${m[2]})`;
  }
  return `${shader}.wgsl:${line}`;
}
