// Three small SVG charts drawn by hand: a line (score by step), a histogram, horizontal bars.
import { el, svg, fmt } from "./dom.js";

const W = 480;
const H = 180;
const PAD = 34;

function frame(container, label) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "svg-chart" });
  root.append(
    svg("line", { x1: PAD, y1: H - PAD, x2: W - 8, y2: H - PAD, class: "axis" }),
    svg("line", { x1: PAD, y1: 8, x2: PAD, y2: H - PAD, class: "axis" }),
  );
  container.replaceChildren(root);
  return root;
}

export function lineChart(container, points, { yMax = 1, label = "chart" } = {}) {
  const root = frame(container, label);
  if (points.length === 0) return;
  const xs = (i) => PAD + ((W - PAD - 16) * (points.length === 1 ? 0.5 : i / (points.length - 1)));
  const ys = (v) => H - PAD - ((H - PAD - 12) * Math.max(0, Math.min(v, yMax))) / yMax;
  root.append(svg("polyline", { points: points.map((p, i) => `${xs(i)},${ys(p.y)}`).join(" "), class: "line" }));
  points.forEach((p, i) => {
    root.append(
      svg("circle", { cx: xs(i), cy: ys(p.y), r: 4, class: "dot" }, svg("title", { text: `${p.x}: ${fmt(p.y)}` })),
      svg("text", { x: xs(i), y: H - PAD + 14, class: "tick", "text-anchor": "middle", text: p.x }),
    );
  });
  root.append(
    svg("text", { x: 4, y: 14, class: "tick", text: fmt(yMax, 2) }),
    svg("text", { x: 4, y: H - PAD, class: "tick", text: "0" }),
  );
}

export function histogram(container, edges, counts, label = "histogram") {
  const root = frame(container, label);
  const top = Math.max(1, ...counts);
  const width = (W - PAD - 12) / counts.length;
  counts.forEach((count, i) => {
    const height = ((H - PAD - 14) * count) / top;
    root.append(
      svg(
        "rect",
        { x: PAD + i * width + 1, y: H - PAD - height, width: width - 2, height, class: "bar" },
        svg("title", { text: `${fmt(edges[i], 2)}–${fmt(edges[i + 1], 2)}: ${count}` }),
      ),
    );
  });
  for (const i of [0, counts.length / 2, counts.length]) {
    root.append(svg("text", { x: PAD + i * width, y: H - PAD + 14, class: "tick", "text-anchor": "middle", text: fmt(edges[i], 2) }));
  }
  root.append(svg("text", { x: 4, y: 14, class: "tick", text: String(top) }));
}

export function shareBars(container, rows, colourOf) {
  container.replaceChildren(
    ...rows.map((row) => {
      const bar = el("span", { class: "share-bar" });
      bar.style.width = `${Math.round(row.share * 100)}%`;
      bar.style.background = colourOf(row.teacher);
      return el(
        "div",
        { class: "share-row" },
        el("span", { class: "share-name", text: row.teacher }),
        el("span", { class: "share-track" }, bar),
        el("span", { class: "share-value", text: `${(row.share * 100).toFixed(1)}% (${row.selected} of ${row.proposals} proposed)` }),
      );
    }),
  );
}
