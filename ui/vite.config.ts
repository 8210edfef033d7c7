import { defineConfig } from "vite";

// The Tauri shell embeds `dist/` at compile time; no dev server is needed to build the app.
export default defineConfig({
  clearScreen: false,
  build: { target: "es2022", outDir: "dist", emptyOutDir: true },
});
