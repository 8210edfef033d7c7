// The training page: the trainer's curves (uPlot), gym success per adapter version, the
// reward over recent steps, and how often each judge agreed with the person. Polls the store for new updates while shown.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api, errorText, type TrainUpdate } from "./api";

/** Decided steps the reward trend shows, and the running mean's window. */
const TREND_STEPS = 500;
const TREND_WINDOW = 20;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** One chart per group of figures, each figure a key of the stored metrics. */
const CHARTS: { title: string; series: string[] }[] = [
  { title: "Loss", series: ["loss", "surrogate", "kl_to_base"] },
  { title: "Mean reward", series: ["mean_reward"] },
  { title: "Mean OPD gap", series: ["mean_gap"] },
  // Is it learning from what it is given? Samples trained, and those passed over by why.
  { title: "Samples per update", series: ["samples", "dropped", "passed_stale", "passed_no_signal"] },
  { title: "Teacher–student top-k overlap of the hint kept", series: ["hint_overlap"] },
  { title: "Clip fraction", series: ["clip_fraction"] },
  { title: "Approximate KL", series: ["approx_kl"] },
  { title: "Gradient norm", series: ["grad_norm"] },
];
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"];

let run: string | null = null;
let last = 0;
const points: TrainUpdate[] = [];
const plots: { plot: uPlot; series: string[] }[] = [];
let gymPlot: uPlot | null = null;
let trendPlot: uPlot | null = null;

function dataOf(series: string[]): uPlot.AlignedData {
  return [
    points.map((p) => p.step),
    ...series.map((s) => points.map((p) => (typeof p.metrics[s] === "number" ? p.metrics[s] : null))),
  ] as uPlot.AlignedData;
}

function makeCharts() {
  const box = $("charts");
  box.replaceChildren();
  plots.length = 0;
  for (const chart of CHARTS) {
    const holder = document.createElement("figure");
    holder.setAttribute("aria-label", `${chart.title} per update`);
    holder.className = "chart";
    box.append(holder);
    const plot = new uPlot(
      {
        title: chart.title,
        width: 420,
        height: 200,
        scales: { x: { time: false } },
        series: [
          { label: "update" },
          ...chart.series.map((s, i) => ({ label: s, stroke: COLOURS[i % COLOURS.length], width: 2 })),
        ],
        axes: [{ label: "update" }, {}],
      },
      dataOf(chart.series),
      holder,
    );
    plots.push({ plot, series: chart.series });
  }
  const gym = document.createElement("figure");
  gym.className = "chart";
  gym.setAttribute("aria-label", "Gym success per adapter version");
  box.append(gym);
  gymPlot = new uPlot(
    {
      title: "Gym success per adapter version",
      width: 420,
      height: 200,
      scales: { x: { time: false }, y: { range: [0, 1] } },
      series: [{ label: "version" }, { label: "held-out success", stroke: "#0891b2", width: 2 }],
    },
    [[], []],
    gym,
  );
  const trend = document.createElement("figure");
  trend.className = "chart";
  trend.setAttribute("aria-label", "Reward over recent steps");
  box.append(trend);
  trendPlot = new uPlot(
    {
      title: `Reward over recent steps (mean of ${TREND_WINDOW})`,
      width: 420,
      height: 200,
      scales: { x: { time: false }, y: { range: [-1, 1] } },
      series: [
        { label: "step" },
        { label: "verdict", stroke: "#94a3b8", width: 0, points: { show: true, size: 4 } },
        { label: `mean of last ${TREND_WINDOW}`, stroke: "#ea580c", width: 2 },
      ],
      axes: [{ label: "step" }, {}],
    },
    [[], [], []],
    trend,
  );
}

async function poll() {
  try {
    const series = await api.trainSeries(run, last);
    if (series.run !== run) {
      run = series.run;
      points.length = 0;
      last = 0;
    }
    if (series.updates.length > 0) {
      points.push(...series.updates);
      last = points[points.length - 1].step;
      for (const { plot, series: s } of plots) plot.setData(dataOf(s));
    }
    const latest = points[points.length - 1];
    $("training-status").textContent = run
      ? `Run ${run}: ${points.length} updates` +
        (latest ? `, last loss ${Number(latest.metrics.loss).toFixed(4)}, ${Math.round(latest.metrics.tokens_per_second ?? 0)} tokens/s` : "")
      : "No training updates yet.";
    const adapters = (await api.adapters()).filter((a) => a.gymScore !== null).reverse();
    gymPlot?.setData([adapters.map((a) => a.version), adapters.map((a) => a.gymScore)] as uPlot.AlignedData);
    const trend = await api.rewardTrend(TREND_STEPS, TREND_WINDOW);
    trendPlot?.setData([trend.map((p) => p.step), trend.map((p) => p.score), trend.map((p) => p.mean)] as uPlot.AlignedData);
    const rows = await api.agreement();
    $("agreement").querySelector("tbody")!.replaceChildren(
      ...rows.map((r) => {
        const tr = document.createElement("tr");
        const rate = r.compared - r.undecided > 0 ? r.agreed / (r.compared - r.undecided) : null;
        for (const text of [r.judge, String(r.compared), String(r.agreed), rate === null ? "–" : `${Math.round(rate * 100)}%`]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        return tr;
      }),
    );
  } catch (e) {
    $("training-status").textContent = errorText(e);
  }
}

let timer: number | undefined;

export function showTraining(on: boolean) {
  window.clearInterval(timer);
  if (on) {
    if (plots.length === 0) makeCharts();
    void poll();
    timer = window.setInterval(poll, 1000);
  }
}
