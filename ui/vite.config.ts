import { defineConfig } from "vite";

// The Tauri shell embeds `dist/` at compile time; no dev server is needed to build the app.
// `npm run tauri dev` serves the UI from Vite's dev server on the port tauri.dev.conf.json names.
export default defineConfig({
  clearScreen: false,
  server: { port: 1420, strictPort: true, host: "localhost" },
  build: { target: "es2022", outDir: "dist", emptyOutDir: true },
});
