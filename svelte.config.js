// Svelte 5 with runes; TypeScript in <script lang="ts"> is handled by Vite's own transform.
export default {
  compilerOptions: { runes: true },
};
