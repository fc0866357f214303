import { expect, test } from 'playwright/test';

// The capability page is the first thing a user sees: it must find the GPU, show what it can do,
// and prove that the kernels compute correctly there, in the worker that will train.
test('capability page reports the adapter, limits and a passing self-test from the worker', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto('/');
  await expect(page.locator('main[data-state="ready"]')).toBeVisible();
  await expect(page.getByTestId('adapter')).not.toBeEmpty();
  await expect(page.getByTestId('f16')).toHaveText(/^(yes|no)/);
  await expect(page.getByTestId('subgroups')).toHaveText('yes'); // SwiftShader has subgroups
  await expect(page.getByTestId('maxStorageBufferBindingSize')).toHaveText(/(MiB|GiB)$/);
  await expect(page.getByTestId('selftest')).toHaveText(/^passed/);
  await page.screenshot({ path: 'test-results/capability.png', fullPage: true });
  expect(errors).toEqual([]);
});

test('the same runtime and kernel run in the page itself', async ({ page }) => {
  await page.goto('/');
  const result = await page.evaluate(async () => {
    // Served by Vite's dev server; a variable keeps TypeScript from resolving the URL as a path.
    const url = '/src/app/selftest.ts';
    const mod: typeof import('../src/app/selftest.ts') = await import(/* @vite-ignore */ url);
    return mod.selfTest();
  });
  expect(result.ok).toBe(true);
  expect(result.maxAbsError).toBeLessThan(1e-4);
});

test('without WebGPU the page explains how to get it instead of going blank', async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
    // `'gpu' in navigator` must be false too.
    delete (Navigator.prototype as unknown as Record<string, unknown>).gpu;
  });
  await page.goto('/');
  await expect(page.locator('main[data-state="no-webgpu"]')).toBeVisible();
  await expect(page.getByRole('alert')).toContainText('WebGPU is not available');
  await expect(page.getByRole('alert')).toContainText('Chrome');
});
