// The teacher board: readiness and counters of every teacher, polled while it is shown.
import { getJSON } from "./api.js";
import { $, el, fmt, seconds, showError, usd } from "./dom.js";
import { colourOf } from "./tree.js";

const EVERY_MS = 2000;
let timer = null;

function row(t) {
  const name = el("td", { class: "name", text: t.name });
  name.style.color = colourOf(t.name);
  return el(
    "tr",
    { "data-teacher": t.name, "data-ready": String(t.ready) },
    name,
    el("td", { text: t.model }),
    el("td", { class: "muted", text: t.endpoint ?? "(provider)" }),
    el("td", { text: t.roles.join(", ") }),
    el("td", {}, el("span", { class: `badge ${t.ready ? "survived" : "dropped"}`, text: t.ready ? "ready" : "not ready" })),
    el("td", { text: fmt(t.calls) }),
    el("td", { text: fmt(t.failures) }),
    el("td", { text: seconds(t.latency_p50_s) }),
    el("td", { text: seconds(t.latency_p99_s) }),
    el("td", { text: `${fmt(t.selected)} / ${fmt(t.proposals)}` }),
    el("td", { text: fmt(t.tokens) }),
    el("td", { text: usd(t.cost_usd) }),
  );
}

async function refresh() {
  try {
    const board = await getJSON("/ui/api/teachers");
    $("tc-rows").replaceChildren(...board.teachers.map(row));
    $("tc-updated").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}; ${board.in_flight} request(s) in flight.`;
  } catch (error) {
    showError(`could not read the teacher board: ${error.message}`);
  }
}

export function showTeachers(visible) {
  clearInterval(timer);
  timer = null;
  if (!visible) return;
  refresh();
  timer = setInterval(refresh, EVERY_MS);
}
