// The reports tab: this month's statistics as the signed-in agent may see them (their own
// line; a manager also their queues, those queues' agents and the channels feeding them),
// read from /api/v1/stats. Durations show the median and the 90th percentile; ratings their
// number and mean.

import { get, withQuery } from "./api.js";
import { $, fill, h } from "./dom.js";
import { getMe } from "./people.js";

const SCOPES = [
  { path: "agents", title: "Agents", counts: ["handled", "offers", "missed", "transfers", "ratings"], spans: ["first_response", "resolution"] },
  {
    path: "queues",
    title: "Queues",
    counts: ["handled", "offers", "missed", "transfers", "overflowed", "abandoned", "bot_resolved", "bot_handoffs", "ratings"],
    spans: ["first_response", "resolution", "waiting"],
    managers: true,
  },
  { path: "channels", title: "Channels", counts: ["received", "sent"], spans: [], managers: true },
];

const LABELS = {
  first_response: "First response",
  resolution: "Resolution",
  waiting: "Waiting",
  overflowed: "Overflowed",
  abandoned: "Abandoned",
  bot_resolved: "Resolved by bot",
  bot_handoffs: "Bot hand-offs",
};

function label(key) {
  return LABELS[key] || key.charAt(0).toUpperCase() + key.slice(1);
}

/** Seconds as "45 s", "4 min" or "2 h"; "> 1 day" beyond the last bucket. */
function duration(s) {
  if (s === null || s === undefined) return "> 1 day";
  if (s < 60) return `≤ ${s} s`;
  if (s < 3600) return `≤ ${Math.round(s / 60)} min`;
  return `≤ ${Math.round(s / 3600)} h`;
}

/** A count; ratings as their number and mean ("2 · 4.5"). */
function cell(line, metric) {
  const n = line.counts[metric] ?? 0;
  if (metric !== "ratings" || n === 0) return String(n);
  return `${n} · ${(line.counts.rating_points / n).toFixed(1)}`;
}

function table(scope, lines) {
  const head = h(
    "tr",
    {},
    h("th", { scope: "col", text: "Name" }),
    ...scope.counts.map((c) => h("th", { scope: "col", text: label(c) })),
    ...scope.spans.map((s) => h("th", { scope: "col", text: `${label(s)} (median / p90)` })),
  );
  const rows = lines.map((line) =>
    h(
      "tr",
      { "data-testid": `report-${scope.path}-${line.name}` },
      h("th", { scope: "row", text: line.name }),
      ...scope.counts.map((c) => h("td", { "data-metric": c, text: cell(line, c) })),
      ...scope.spans.map((s) => {
        const sum = line.spans[s];
        return h("td", { "data-metric": s, text: sum.count ? `${duration(sum.median_s)} / ${duration(sum.p90_s)}` : "–" });
      }),
    ),
  );
  return h("table", { class: "report" }, h("thead", {}, head), h("tbody", {}, ...rows));
}

/** Loads this month's reports into the reports panel. */
export async function loadReports() {
  const me = getMe();
  const today = new Date();
  const from = new Date(today.getFullYear(), today.getMonth(), 1);
  const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  const sections = [];
  for (const scope of SCOPES) {
    if (scope.managers && me.manages.length === 0) continue;
    const report = await get(withQuery(`/api/v1/stats/${scope.path}`, { period: "month", from: iso(from) }));
    sections.push(
      h(
        "section",
        { class: "report-section", "data-testid": `report-${scope.path}` },
        h("h3", { text: `${scope.title}, this month (${report.timezone})` }),
        report.lines.length ? table(scope, report.lines) : h("p", { class: "rows-empty", text: "Nothing yet this month." }),
      ),
    );
  }
  fill($("reports-panel"), ...sections);
}
