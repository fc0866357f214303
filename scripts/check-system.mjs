// First step of `npm test`: check the system packages the GPU and browser tiers need, and say
// exactly what to install when one is missing, instead of failing later with a driver error.
import { existsSync } from 'node:fs';

const need = [
  { path: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', pkg: 'chromium', why: 'the browser the e2e tests drive' },
  { path: '/usr/lib/chromium/vk_swiftshader_icd.json', pkg: 'chromium', why: "SwiftShader, the CPU Vulkan driver the GPU tests use (it ships with Debian's chromium)" },
  {
    path: ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1', '/usr/lib/libvulkan.so.1'],
    pkg: 'libvulkan1',
    why: 'the Vulkan loader Dawn (the `webgpu` package) opens',
  },
  { path: 'node_modules/webgpu/package.json', pkg: null, why: 'the project dependencies' },
];

const missing = need.filter((n) => ![n.path].flat().some((p) => existsSync(p)));
if (missing.length) {
  console.error('npm test cannot run yet. Missing:');
  for (const m of missing) console.error(`  - ${[m.path].flat()[0]}: ${m.why}`);
  const pkgs = [...new Set(missing.map((m) => m.pkg).filter(Boolean))];
  if (pkgs.length) console.error(`\nOn Debian or Ubuntu, install them with:\n  sudo apt-get update && sudo apt-get install -y ${pkgs.join(' ')}`);
  if (missing.some((m) => m.pkg === null)) console.error('\nInstall the project dependencies with:\n  npm install');
  process.exit(1);
}
