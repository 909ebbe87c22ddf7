// `npm run package`: dist/iommu-lab.vsix, the extension as a user installs it (vsce runs the production
// build through `vscode:prepublish`; .vscodeignore is the allow-list of what goes in).
//
// The project has no public repository, so there is no URL to give vsce: package.json has no
// `repository` (a made-up one would be a lie that vsce then writes into every link), and vsce's default of
// rewriting the README's relative links against the repository cannot apply. Instead the README that goes
// into the VSIX is made here from README.md: its images become data: URIs, the one kind of local image
// VS Code's extension page shows (its content security policy allows `img-src https: data:` only), and
// its links to files of the repository become their text, since those files are not in the VSIX.
// README.md itself stays as it is for readers of the repository.
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { ensureNpmPackages, root } from './lib/npm-packages.mjs';

const vsixReadme = 'out/vsix/README.md';
const imageTypes = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif' };

/** README.md as the VSIX carries it: relative images inlined, relative links reduced to their text. */
async function readmeForVsix(markdown) {
  const relative = (target) => !/^[a-z][a-z0-9+.-]*:/i.test(target) && !target.startsWith('#');
  let out = '';
  let last = 0;
  for (const m of markdown.matchAll(/(!?)\[([^\]]*)\]\(([^)\s]+)\)/g)) {
    const [all, bang, text, target] = m;
    out += markdown.slice(last, m.index);
    last = m.index + all.length;
    if (!relative(target)) out += all;
    else if (bang) {
      const type = imageTypes[extname(target).toLowerCase()];
      if (!type) throw new Error(`README.md: image ${target} is not PNG, JPEG or GIF (VS Code's extension page shows no SVG)`);
      const data = await readFile(join(root, target));
      out += `![${text}](data:${type};base64,${data.toString('base64')})`;
    } else out += text;
  }
  return out + markdown.slice(last);
}

if (!ensureNpmPackages('package')) process.exit(1);
await mkdir(join(root, 'out/vsix'), { recursive: true });
await writeFile(join(root, vsixReadme), await readmeForVsix(await readFile(join(root, 'README.md'), 'utf8')));
const vsce = join(root, 'node_modules/@vscode/vsce/vsce');
const args = [
  'package', '--no-dependencies', '--allow-missing-repository', '--no-rewrite-relative-links',
  '--readme-path', vsixReadme, '--out', 'dist/iommu-lab.vsix',
];
const r = spawnSync(process.execPath, [vsce, ...args], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
process.exit(r.status ?? 1);
