// mulberry32: the project's one seeded PRNG. Tiny and fully specified, so the same seed gives the
// same numbers in every browser and in Node: data order (resume replays it), LoRA init, sampling,
// and test inputs all come from here.
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
