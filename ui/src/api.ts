// The wire types (mirrors of `clawdesk_app::wire` and the engine's serialised types) and the
// calls that fetch them. Nothing here decides anything.
import { invoke } from "@tauri-apps/api/core";

/** A gym task for practice mode: the kind and which one (the gym's seed). */
export interface PracticeTask {
  kind: "click" | "type" | "menu";
  seed: number;
}

export interface WireError {
  code: string;
  message: string;
}

export function errorText(e: unknown): string {
  const err = e as Partial<WireError>;
  return err.message ?? String(e);
}

export interface AppInfo {
  dataDir: string;
  version: string;
  /** No settings were saved yet: the welcome dialog asks for a model. */
  firstRun: boolean;
  defaultHubModel: string;
}

export interface TimelineFilter {
  unjudged?: boolean;
  disagreement?: boolean;
  failed?: boolean;
  episode?: number | null;
  app?: string | null;
  adapter?: number | null;
}

/** Mirrors `clawdesk_store::TimelineRow`. */
export interface TimelineRow {
  step: number;
  episode: number;
  index: number;
  kind: "gui" | "turn";
  task: string;
  app: string | null;
  action: Record<string, unknown>;
  outcome: string;
  policyVersion: number | null;
  judgeScore: number | null;
  personScore: number | null;
  hasHint: boolean;
  startedAtMs: number;
  screen: string | null;
  /** Why a judge gave up on the step, when one did: it is never judged and never trained on. */
  unjudgeable: string | null;
}

export interface TimelinePage {
  rows: TimelineRow[];
  total: number;
}

export interface Verdict {
  id: number;
  step: number;
  source: "judge" | "person";
  score: number;
  votes: unknown;
  hint: string | null;
  judge: string | null;
  mean: number | null;
  correction: unknown;
  created_at_ms: number;
}

export interface NormPoint {
  x: number;
  y: number;
}

/** Mirrors `clawdesk_desk::review::StepReview`. */
export interface StepReview {
  step: {
    id: number;
    episode: number;
    index: number;
    kind: string;
    before_image: string | null;
    after_image: string | null;
    action: Record<string, unknown>;
    outcome: string;
    error: string | null;
    policy_version: number | null;
    surface: { width: number; height: number };
  };
  task: string;
  app: string | null;
  points: NormPoint[];
  description: string | null;
  reply: string | null;
  changed: { x: number; y: number; width: number; height: number } | null;
  verdicts: Verdict[];
  effectiveScore: number | null;
}

export interface TrainUpdate {
  run: string;
  step: number;
  metrics: Record<string, number>;
  created_at_ms: number;
}

export interface TrainSeries {
  run: string | null;
  runs: string[];
  updates: TrainUpdate[];
}

export interface AdapterRow {
  version: number;
  baseModel: string;
  path: string;
  createdAtMs: number;
  gymScore: number | null;
  loss: number | null;
  meanReward: number | null;
  active: boolean;
}

export interface ExportedAdapter {
  version: number;
  folder: string;
  files: string[];
  bytes: number;
  peftCommand: string;
  vllmCommand: string;
}

export interface Agreement {
  judge: string;
  compared: number;
  agreed: number;
  undecided: number;
}

/** One decided step of the reward trend (see the store's `RewardPoint`). */
export interface RewardPoint {
  step: number;
  version: number | null;
  score: number;
  mean: number;
}

export type Settings = Record<string, unknown>;

export interface FieldError {
  field: string;
  message: string;
}

/** Mirrors `clawdesk_desk::session::DeskEvent`. */
export type DeskEvent =
  | { kind: "state"; state: string; message: string }
  | { kind: "progress"; what: string; done: number; total: number }
  | {
      kind: "frame";
      seq: number;
      width: number;
      height: number;
      /** The action about to run on this screen, its words and the element under its point. */
      action: Record<string, unknown> | null;
      description: string | null;
      element: string | null;
    }
  | {
      kind: "approval";
      id: number;
      frame: number | null;
      step: number;
      description: string;
      thought: string | null;
      element: string | null;
      action: Record<string, unknown>;
      app: string | null;
    }
  | {
      kind: "step";
      step: number;
      index: number;
      outcome: string;
      reply: string;
      version: number | null;
      seconds: number;
    }
  | {
      kind: "device";
      device: string;
      dtype: string;
      memory: { used: number; total: number } | null;
    }
  | { kind: "scoring"; version: number; played: number; tasks: number }
  | { kind: "ended"; report: unknown; error: string | null };

/** Where the window loads stored pictures from (the shell's `clawdesk:` scheme). */
const scheme = navigator.userAgent.includes("Windows")
  ? "http://clawdesk.localhost"
  : "clawdesk://localhost";

export const blobUrl = (id: string) => `${scheme}/blob/${id}`;
export const thumbUrl = (id: string) => `${scheme}/thumb/${id}`;
export const liveUrl = (seq: number) => `${scheme}/live/${seq}`;

export const api = {
  appInfo: () => invoke<AppInfo>("app_info"),
  timeline: (filter: TimelineFilter, offset: number, limit: number) =>
    invoke<TimelinePage>("timeline", { filter, offset, limit }),
  stepDetail: (step: number) => invoke<StepReview>("step_detail", { step }),
  setVerdict: (step: number, approve: boolean, hint: string | null) =>
    invoke<void>("set_verdict", { step, approve, hint }),
  agreement: () => invoke<Agreement[]>("agreement"),
  rewardTrend: (last: number, window: number) =>
    invoke<RewardPoint[]>("reward_trend", { last, window }),
  trainSeries: (run: string | null, after: number) =>
    invoke<TrainSeries>("train_series", { run, after }),
  adapters: () => invoke<AdapterRow[]>("list_adapters"),
  activate: (version: number | null) => invoke<void>("activate_adapter", { version }),
  exportAdapter: (version: number, folder: string) =>
    invoke<ExportedAdapter>("export_adapter_to", { version, folder }),
  exportEpisodes: (kind: "traj" | "chat" | "trl" | "verl", folder: string) =>
    invoke<{ episodes: number; steps: number; images: number; folder: string }>(
      "export_episodes",
      { kind, folder },
    ),
  settings: () => invoke<Settings>("get_settings"),
  saveSettings: (settings: Settings) =>
    invoke<{ saved: boolean; errors: FieldError[]; notice: string | null }>("save_settings", { settings }),
  start: (instruction: string, mode: string, episodes: number, practice?: PracticeTask) =>
    invoke<void>("agent_start", { request: { instruction, mode, episodes, practice } }),
  pause: () => invoke<void>("agent_pause"),
  resume: () => invoke<void>("agent_resume"),
  stop: () => invoke<void>("agent_stop"),
  mode: (mode: string) => invoke<void>("agent_mode", { mode }),
  answer: (id: number, answer: Record<string, unknown>) =>
    invoke<void>("agent_answer", { id, answer }),
};
