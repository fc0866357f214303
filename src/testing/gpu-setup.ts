// Setup for the `gpu` test tier: point Dawn's Vulkan loader at SwiftShader from Debian's chromium
// unless the caller chose a driver (on a machine with a real GPU, set VK_ICD_FILENAMES yourself or
// unset it with WEBTUNE_SYSTEM_VULKAN=1).
import { existsSync } from 'node:fs';

const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && !process.env.WEBTUNE_SYSTEM_VULKAN && existsSync(SWIFTSHADER)) {
  process.env.VK_ICD_FILENAMES = SWIFTSHADER;
}
