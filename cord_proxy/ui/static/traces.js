// The trace viewer: a paged list (search, sort, filter), file statistics, one trace opened.
import { getJSON } from "./api.js";
import { lineChart, histogram, shareBars } from "./charts.js";
import { $, el, fmt, seconds, showError, summary, usd } from "./dom.js";
import { initPairs, showStep } from "./pairs.js";
import { colourOf, legend, renderTree } from "./tree.js";

const LIMIT = 50;
let offset = 0;
let matched = 0;
let timer = null;

function query() {
  const params = new URLSearchParams({ offset: String(offset), limit: String(LIMIT) });
  const fields = {
    q: "tr-search", sort: "tr-sort", order: "tr-order", teacher: "tr-teacher",
    finish_reason: "tr-finish", failures: "tr-failures", min_score: "tr-min-score", max_score: "tr-max-score",
  };
  for (const [name, id] of Object.entries(fields)) {
    const value = $(id).value.trim();
    if (value !== "" && !(name === "sort" && value === "line") && !(name === "order" && value === "asc")) {
      params.set(name, value);
    }
  }
  return params;
}

function row(item) {
  const open = () => openTrace(item.line);
  return el(
    "tr",
    { "data-line": item.line, onclick: open, class: item.readable ? "" : "unreadable" },
    el("td", { text: item.line + 1 }),
    el("td", { class: "id", title: item.id, text: item.readable ? item.id : "(unreadable line)" }),
    el("td", { class: "question", title: item.question, text: item.question }),
    el("td", { text: fmt(item.score) }),
    el("td", { text: item.steps }),
    el("td", {}, item.teachers.map((t) => {
      const tag = el("span", { class: "chip", text: t });
      tag.style.color = colourOf(t);
      tag.style.borderColor = colourOf(t);
      return tag;
    })),
    el("td", { text: item.finish_reason }),
    el("td", { text: item.failures }),
  );
}

async function load() {
  try {
    const params = query();
    const page = await getJSON(`/ui/api/traces?${params}`);
    matched = page.matched;
    $("tr-rows").replaceChildren(...page.items.map(row));
    const last = Math.min(offset + page.items.length, matched);
    $("tr-count").textContent =
      `${matched === 0 ? 0 : offset + 1}–${last} of ${matched} traces` + (matched !== page.total ? ` (${page.total} in the file)` : "");
    $("tr-count").dataset.matched = String(matched);
    $("tr-count").dataset.query = params.toString();
    $("tr-prev").disabled = offset === 0;
    $("tr-next").disabled = offset + LIMIT >= matched;
  } catch (error) {
    showError(`could not read the traces: ${error.message}`);
  }
}

function fillSelect(id, values) {
  const select = $(id);
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "any" }), ...values.map((v) => el("option", { value: v, text: v })));
  select.value = values.includes(chosen) ? chosen : "";
}

async function loadStats() {
  try {
    const stats = await getJSON("/ui/api/stats");
    $("tr-stats-count").textContent = `(${stats.count} traces)`;
    histogram($("tr-histogram"), stats.histogram.edges, stats.histogram.counts, "score histogram");
    shareBars($("tr-winrates"), stats.win_rates, colourOf);
    fillSelect("tr-teacher", stats.teachers);
    fillSelect("tr-finish", Object.keys(stats.finish_reasons));
  } catch (error) {
    showError(`could not read the file statistics: ${error.message}`);
  }
}

function userText(messages) {
  if (!Array.isArray(messages)) return "";
  return messages.map((m) => `${m.role}: ${typeof m.content === "string" ? m.content : JSON.stringify(m.content)}`).join("\n\n");
}

// What of the trace a teacher set `trainable = false` wrote; nothing when all may be trained on.
function untrainable(record, steps) {
  const count = steps.filter((s) => s.trainable === false).length;
  const parts = [count ? `${count} step(s)` : "", record.answer_trainable === false ? "the answer" : ""].filter(Boolean);
  return parts.length ? [["not trainable", `${parts.join(", ")} (the exports skip what holds it)`]] : [];
}

async function openTrace(line) {
  try {
    const found = await getJSON(`/ui/api/traces/${line}`);
    const record = found.record || {};
    const steps = Array.isArray(record.steps) ? record.steps : [];
    $("tr-detail").hidden = false;
    $("tr-detail").dataset.line = String(line);
    $("tr-detail-id").textContent = found.readable ? String(record.id) : "(unreadable line)";
    summary($("tr-detail-meta"), [
      ["score", fmt(record.score)], ["finish reason", record.finish_reason], ["closed by", record.closed_by],
      ["answer teacher", record.answer_teacher], ["reference answer", record.reference_answer ?? "none"],
      ["steps", steps.length], ["failures", (record.failures || []).length],
      ["cost", usd(record.cost_usd)], ["wall time", seconds(record.timings ? record.timings.wall_s : null)],
      ...untrainable(record, steps),
    ]);
    $("tr-question").textContent = userText(record.messages);
    $("tr-reasoning").textContent = record.reasoning ?? "";
    $("tr-answer").textContent = record.answer ?? "";
    const points = steps.map((s) => ({ x: String(s.index), y: s.score ?? 0 }));
    const top = Math.max(0, ...points.map((p) => p.y));
    const yMax = top > 0 && top <= 1 ? Math.ceil(top * 10) / 10 : Math.max(top, 1);
    lineChart($("tr-chart"), points, { yMax, label: "score by step" });
    legend($("tr-legend"), (record.teachers || []).map((t) => t.name));
    const onStep = (step) => showStep(step).then(() => $("tr-pairs-box").scrollIntoView({ block: "start" }));
    renderTree($("tr-tree"), steps, { search: record.search, path: record.path, onStep });
    initPairs(line, record);
    $("tr-detail").scrollIntoView({ block: "start" });
  } catch (error) {
    showError(`could not open the trace: ${error.message}`);
  }
}

function again() {
  offset = 0;
  load();
}

export function initTraces(info) {
  if (!info.trace_file) {
    $("tr-none").hidden = false;
    $("tr-main").hidden = true;
    return;
  }
  $("mode").textContent = info.mode === "view" ? `viewing ${info.trace_file}` : `sink: ${info.trace_file}`;
  $("tr-search").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(again, 300);
  });
  for (const id of ["tr-sort", "tr-order", "tr-teacher", "tr-finish", "tr-failures", "tr-min-score", "tr-max-score"]) {
    $(id).addEventListener("change", again);
  }
  $("tr-prev").addEventListener("click", () => { offset = Math.max(0, offset - LIMIT); load(); });
  $("tr-next").addEventListener("click", () => { if (offset + LIMIT < matched) { offset += LIMIT; load(); } });
  $("tr-refresh").addEventListener("click", () => { load(); loadStats(); });
  load().then(loadStats);
}
