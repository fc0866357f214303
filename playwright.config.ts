import { defineConfig } from 'playwright/test';

// Debian's chromium with WebGPU on SwiftShader (no GPU needed). Playwright's own browser download
// is not used: `npx playwright install` cannot run on machines without outside network.
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--disable-vulkan-surface',
  '--no-sandbox',
  // Chromium phones home at start; on a closed network those connections only fail and slow it down.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

// E2E_PORT lets two checkouts run their e2e tiers side by side. The site is tested as users get it:
// the production build (`vite build`, served by `vite preview`, the service worker live) on
// E2E_PORT + 1000. The engine harness (e2e/engine.html) and the in-page kernel test import source
// modules straight into the page, which only the dev server does: those run against it, on E2E_PORT.
const PORT = Number(process.env.E2E_PORT ?? 4179);
const BUILD_PORT = Number(process.env.E2E_BUILD_PORT ?? PORT + 1000);

export default defineConfig({
  testDir: 'e2e',
  timeout: 120_000,
  expect: { timeout: 60_000 },
  workers: 1,
  reporter: [['list']],
  use: {
    browserName: 'chromium',
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS },
  },
  projects: [
    { name: 'build', testMatch: ['site.spec.ts', 'library.spec.ts'], use: { baseURL: `http://localhost:${BUILD_PORT}` } },
    { name: 'dev', testMatch: ['engine.spec.ts', 'capability.spec.ts'], use: { baseURL: `http://localhost:${PORT}` } },
  ],
  webServer: [
    {
      command: `npx vite --port ${PORT} --strictPort`,
      url: `http://localhost:${PORT}`,
      reuseExistingServer: false,
      timeout: 60_000,
    },
    {
      // npm run build, then its output as a static host would serve it.
      command: `npx vite build --logLevel warn && npx vite preview --port ${BUILD_PORT} --strictPort`,
      url: `http://localhost:${BUILD_PORT}`,
      reuseExistingServer: false,
      // A build on a busy 2-core machine takes minutes.
      timeout: 600_000,
    },
  ],
});
