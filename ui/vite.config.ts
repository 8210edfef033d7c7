import { defineConfig } from "vite";

// The Tauri shell embeds `dist/` at compile time; no dev server is needed to build the app.
// `npm run tauri dev` (from ui/) serves the UI from this dev server instead, on the port
// tauri.conf.json's devUrl names, reloading the page as the sources change.
export default defineConfig({
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { target: "es2022", outDir: "dist", emptyOutDir: true },
});
