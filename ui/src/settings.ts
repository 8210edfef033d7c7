// The settings form: one labelled field per setting, checked by the shell on save; each bad
// field is marked with the shell's message.
import { api, errorText, type Settings } from "./api";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

type Kind = "text" | "number" | "list" | "bool" | "judge" | "stopKey" | "device";
const FIELDS: { key: string; label: string; kind: Kind }[] = [
  { key: "baseModel", label: "Base model (folder, hub id or id@revision, or \"practice\")", kind: "text" },
  { key: "device", label: "Device (where the model runs and trains)", kind: "device" },
  { key: "judge", label: "Judge", kind: "judge" },
  { key: "judgeEndpoint", label: "Judge endpoint (OpenAI-compatible API root)", kind: "text" },
  { key: "judgeModel", label: "Judge model", kind: "text" },
  { key: "judgeApiKeyEnv", label: "Judge API key variable", kind: "text" },
  { key: "votes", label: "Votes per step", kind: "number" },
  { key: "loraRank", label: "LoRA rank", kind: "number" },
  { key: "loraAlpha", label: "LoRA alpha", kind: "number" },
  { key: "loraTargets", label: "LoRA target layers (comma-separated)", kind: "list" },
  { key: "wRl", label: "w_rl (Binary RL weight)", kind: "number" },
  { key: "wOpd", label: "w_opd (distillation weight)", kind: "number" },
  { key: "learningRate", label: "Learning rate", kind: "number" },
  { key: "batch", label: "Steps per update", kind: "number" },
  {
    key: "allowedApps",
    label: "Allowed apps (comma-separated; empty: any app but terminals and password managers, in the sandbox only)",
    kind: "list",
  },
  {
    key: "allowUnknownFocus",
    label: "Apps typed into although their focused field cannot be read (comma-separated)",
    kind: "list",
  },
  { key: "stopKey", label: "Stop key", kind: "stopKey" },
  { key: "maxSteps", label: "Steps per episode", kind: "number" },
  { key: "keepAdapters", label: "Adapter versions kept (0: all; exported and activated ones always)", kind: "number" },
  { key: "sandbox", label: "Run the agent in a sandbox display", kind: "bool" },
  { key: "launch", label: "Program to open in the sandbox", kind: "text" },
  { key: "dataDir", label: "Data folder (empty: the default; the next start opens the store there)", kind: "text" },
];

let current: Settings = {};

function choices(values: [string, string][]): HTMLSelectElement {
  const select = document.createElement("select");
  for (const [value, text] of values) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.append(o);
  }
  return select;
}

function build() {
  const form = $("settings-form");
  form.replaceChildren();
  for (const f of FIELDS) {
    const row = document.createElement("div");
    row.className = "field";
    const id = `set-${f.key}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = f.label;
    let input: HTMLInputElement | HTMLSelectElement;
    if (f.kind === "judge") {
      input = choices([
        ["person", "The person only"],
        ["local", "The local model"],
        ["endpoint", "An OpenAI-compatible endpoint"],
      ]);
    } else if (f.kind === "device") {
      const gpus: [string, string][] = [0, 1, 2, 3, 4, 5, 6, 7].map((n) => [`cuda:${n}`, `GPU ${n} (CUDA)`]);
      input = choices([["auto", "Auto: a GPU when one answers, else the CPU"], ["cpu", "CPU"], ...gpus]);
    } else if (f.kind === "stopKey") {
      input = choices([
        ["pause", "Pause"],
        ["scroll_lock", "Scroll Lock"],
        ["f12", "F12"],
      ]);
    } else {
      input = document.createElement("input");
      input.type = f.kind === "bool" ? "checkbox" : f.kind === "number" ? "text" : "text";
      if (f.kind === "number") input.inputMode = "decimal";
    }
    input.id = id;
    const error = document.createElement("span");
    error.className = "field-error";
    error.id = `${id}-error`;
    error.setAttribute("role", "alert");
    input.setAttribute("aria-describedby", error.id);
    const value = current[f.key];
    if (input instanceof HTMLInputElement && f.kind === "bool") input.checked = Boolean(value);
    else if (f.kind === "list") input.value = ((value as string[]) ?? []).join(", ");
    else input.value = value === undefined || value === null ? "" : String(value);
    row.append(label, input, error);
    form.append(row);
  }
}

function read(): Settings {
  const out: Settings = { ...current };
  for (const f of FIELDS) {
    const input = $<HTMLInputElement>(`set-${f.key}`);
    if (f.kind === "bool") out[f.key] = input.checked;
    else if (f.kind === "number") out[f.key] = input.value.trim() === "" ? NaN : Number(input.value);
    else if (f.kind === "list")
      out[f.key] = input.value
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
    else out[f.key] = input.value;
  }
  return out;
}

async function save() {
  const status = $("settings-status");
  for (const e of document.querySelectorAll(".field-error")) e.textContent = "";
  const settings = read();
  // A number field that is not a number cannot travel as JSON; say so here.
  const notNumbers = FIELDS.filter((f) => f.kind === "number" && !Number.isFinite(settings[f.key] as number));
  for (const f of notNumbers) $(`set-${f.key}-error`).textContent = "enter a number";
  if (notNumbers.length > 0) {
    status.textContent = "Some fields need a number.";
    status.className = "error";
    return;
  }
  try {
    const answer = await api.saveSettings(settings);
    if (answer.saved) {
      current = settings;
      status.textContent = `Saved. A new session uses them.${answer.notice ? ` ${answer.notice}` : ""}`;
      status.className = "";
    } else {
      for (const e of answer.errors) {
        const slot = document.getElementById(`set-${e.field}-error`);
        if (slot) slot.textContent = e.message;
      }
      status.textContent = `Not saved: ${answer.errors.length} field(s) to mend.`;
      status.className = "error";
    }
  } catch (e) {
    status.textContent = errorText(e);
    status.className = "error";
  }
}

export async function openSettings() {
  try {
    current = await api.settings();
    build();
  } catch (e) {
    $("settings-status").textContent = errorText(e);
  }
}

export function initSettings() {
  $("settings-save").addEventListener("click", save);
}
