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
          // Tokenizer-heavy tests load 9 MB tokenizer files; on CI's 2 shared cores 5 s is too tight.
          testTimeout: 30_000,
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
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
