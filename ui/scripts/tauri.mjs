// `npm run tauri <command>` from ui/: the Tauri CLI run on the app in ../src-tauri (it would
// not find it from here). `tauri dev` also loads tauri.dev.conf.json, which serves the UI from
// Vite's dev server with hot reload; plain cargo builds never read that file, so they keep
// embedding ui/dist.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

const ui = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const app = path.join(ui, "..", "src-tauri");
const args = process.argv.slice(2);
if (args[0] === "dev" && !args.includes("--config") && !args.includes("-c")) {
  args.splice(1, 0, "--config", path.join(app, "tauri.dev.conf.json"));
}
const cli = path.join(ui, "node_modules", ".bin", "tauri");
const run = spawnSync(cli, args, {
  stdio: "inherit",
  env: { ...process.env, TAURI_APP_PATH: app, TAURI_FRONTEND_PATH: ui },
});
if (run.error) {
  console.error(`cannot run the Tauri CLI (${cli}): ${run.error.message}; run npm install in ui/`);
  process.exit(1);
}
process.exit(run.status ?? 1);
