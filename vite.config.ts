/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  plugins: [svelte()],
  server: { port: 5173, strictPort: true },
  preview: { port: 4173, strictPort: true },
  // The dev server pre-bundles dependencies it finds from index.html; the engine worker's own
  // (idb-keyval, transformers.js, hyparquet) would otherwise be found only when the worker first
  // runs, and Vite then reloads the page mid-task (an e2e test loading a model sees a reload).
  optimizeDeps: { entries: ['index.html', 'src/worker/engine.worker.ts'] },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
          exclude: ['src/kernels/**', 'src/**/*.gpu.test.ts'],
          environment: 'node',
          // A timeout here only catches a hang: every test awaits its own events. Tokenizer-heavy tests
          // load 9 MB tokenizer files, which takes seconds on 2 shared cores and several times that
          // with one core taken by another process.
          testTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'gpu',
          // Kernel tests (x.test.ts beside x.ts, as the house style has it) and any *.gpu.test.ts.
          include: ['src/kernels/**/*.test.ts', 'src/**/*.gpu.test.ts'],
          environment: 'node',
          // SwiftShader already spreads each dispatch over every core; two Dawn instances at once
          // only thrash. One file at a time, each with its own device.
          fileParallelism: false,
          // Hang guards, not pace: the slowest single test (a Trainer run of 3 × 6 steps) takes about
          // a minute on an idle 2-core machine and 2.5 times that with one core busy elsewhere.
          testTimeout: 600_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});
