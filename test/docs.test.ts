// The docs a user reads: README size and contents, links that resolve where the package ships, nothing
// pointing outside the repository (its parent's shared folder).
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { markdownLinks } from '../scripts/package-check.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const read = (p: string): string => readFileSync(join(root, p), 'utf8');

function markdownFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const p = join(dir, name);
    if (statSync(join(root, p)).isDirectory()) out.push(...markdownFiles(p));
    else if (name.endsWith('.md')) out.push(p);
  }
  return out;
}

/** GitHub's heading anchor: lower case, punctuation other than `-` and `_` dropped, spaces to `-`. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/`/g, '').replace(/[^\p{L}\p{N}\- _]/gu, '').replace(/ /g, '-');
}

function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6} (.*)$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

const checked = ['README.md', 'CHANGELOG.md', 'SECURITY.md', 'CONTRIBUTING.md', ...markdownFiles('docs')];
// What npm packs: package.json's `files` (npm adds package.json itself).
const shipped: string[] = [...(JSON.parse(read('package.json')) as { files: string[] }).files, 'package.json'];

describe('docs', () => {
  it("every gnome-keyring-daemon --unlock we tell users to run sends the daemon's stdout away (it would break --json)", () => {
    const sources = (dir: string): string[] => readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : []);
    const unredirected = [...checked, ...sources('src')].flatMap((file) =>
      [...read(file).matchAll(/gnome-keyring-daemon --unlock[^;`'\n]*/g)].filter((m) => !m[0].includes('>/dev/null')).map(() => file));
    expect(unredirected).toEqual([]);
  });

  it('every code snippet (js, ts, mjs, cjs fences) outside the generated API reference parses as the module it is shown as', () => {
    // The README says the snippets are ES modules for a .mjs file: TypeScript-only syntax (a `!`, a type) would not run.
    const dir = mkdtempSync(join(tmpdir(), 'mkc-snippets-'));
    const broken: string[] = [];
    try {
      for (const file of checked.filter((f) => !f.startsWith(join('docs', 'api')))) {
        const text = read(file);
        for (const m of text.matchAll(/^```(js|ts|mjs|cjs|javascript|typescript)\n([\s\S]*?)^```/gm)) {
          const path = join(dir, `snippet.${m[1] === 'cjs' ? 'cjs' : 'mjs'}`);
          writeFileSync(path, m[2]!);
          try {
            execFileSync(process.execPath, ['--check', path], { stdio: 'pipe' });
          } catch (error) {
            const line = text.slice(0, m.index).split('\n').length;
            broken.push(`${file}:${line}: ${String((error as { stderr?: Buffer }).stderr).split('\n').find((l) => /Error/.test(l))}`);
          }
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(broken).toEqual([]);
  });

  it('README.md is at most 15360 bytes', () => {
    expect(Buffer.byteLength(read('README.md'))).toBeLessThanOrEqual(15360);
  });

  it("README's table of contents lists exactly its ## sections, and each anchor exists", () => {
    const readme = read('README.md');
    const sections = [...readme.matchAll(/^## (.*)$/gm)].map((m) => m[1]!).filter((h) => h !== 'Contents');
    const toc = /^## Contents\n\n((?:- \[.*\]\(#.*\)\n)+)/m.exec(readme);
    expect(toc, 'a "## Contents" list').not.toBeNull();
    const entries = [...toc![1]!.matchAll(/- \[(.*)\]\(#(.*)\)/g)].map((m) => ({ title: m[1]!, anchor: m[2]! }));
    expect(entries.map((e) => e.title)).toEqual(sections);
    const known = anchors(readme);
    for (const e of entries) expect(known, `#${e.anchor}`).toContain(e.anchor);
  });

  it('every relative link resolves to a file, and every #anchor to a heading', () => {
    const broken: string[] = [];
    for (const file of checked) {
      for (const link of markdownLinks(read(file))) {
        if (/^[a-z]+:/i.test(link)) continue;
        const [path, anchor] = link.split('#') as [string, string | undefined];
        const target = path === '' ? file : relative(root, resolve(root, dirname(file), decodeURI(path)));
        if (!existsSync(join(root, target))) { broken.push(`${file}: ${link} (no ${target})`); continue; }
        if (anchor !== undefined && target.endsWith('.md') && !anchors(read(target)).has(anchor)) {
          broken.push(`${file}: ${link} (no heading #${anchor} in ${target})`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('README.md and docs/ link only to what ships in the npm package', () => {
    const outside: string[] = [];
    for (const file of checked.filter((f) => f === 'README.md' || f.startsWith('docs/'))) {
      for (const link of markdownLinks(read(file))) {
        if (/^[a-z]+:/i.test(link) || link.startsWith('#')) continue;
        const target = relative(root, resolve(root, dirname(file), link.split('#')[0]!));
        if (!shipped.some((s) => (s.endsWith('/') ? target === s.slice(0, -1) || target.startsWith(s) : target === s))) {
          outside.push(`${file}: ${link}`);
        }
      }
    }
    expect(outside).toEqual([]);
  });

  it("no file in the repository refers to its parent's shared folder", () => {
    const skip = new Set(['node_modules', '.git', 'dist', '.cache']);
    const found: string[] = [];
    const needle = ['..', 'shared'].join('/');
    const walk = (dir: string): void => {
      for (const name of readdirSync(join(root, dir))) {
        if (skip.has(name)) continue;
        const p = dir ? join(dir, name) : name;
        const st = statSync(join(root, p));
        if (st.isDirectory()) walk(p);
        else if (st.size < 5_000_000 && readFileSync(join(root, p), 'utf8').includes(needle)) found.push(p);
      }
    };
    walk('');
    expect(found).toEqual([]);
  });

  // TypeDoc takes ~13 s on 2 idle cores; 120 s leaves room for a busy machine.
  it('docs/api is the TypeDoc output of the current declarations', () => {
    const out = mkdtempSync(join(tmpdir(), 'mkc-api-'));
    try {
      execFileSync(process.execPath, [join(root, 'node_modules/typedoc/bin/typedoc'), '--options', 'typedoc.json', '--out', out],
        { cwd: root, stdio: 'pipe' });
      const list = (dir: string, base = ''): string[] => readdirSync(join(dir, base)).flatMap((name) => {
        const p = base ? join(base, name) : name;
        return statSync(join(dir, p)).isDirectory() ? list(dir, p) : [p];
      }).sort();
      const fresh = list(out);
      const stale = fresh.length !== list(join(root, 'docs/api')).length ||
        JSON.stringify(fresh) !== JSON.stringify(list(join(root, 'docs/api'))) ||
        fresh.some((f) => !readFileSync(join(out, f)).equals(readFileSync(join(root, 'docs/api', f))));
      if (stale) throw new Error('docs/api is stale: run npm run docs:api');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 120_000);
});
