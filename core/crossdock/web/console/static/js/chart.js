// A small SVG throughput chart: delivered (area + line) and failed (line) per 10-s bucket.

import { s } from "./dom.js";
import { num } from "./format.js";

const WIDTH = 300;
const HEIGHT = 60;
const PAD = 2;

function points(values, max) {
  const n = values.length;
  const step = n > 1 ? (WIDTH - 2 * PAD) / (n - 1) : 0;
  return values.map((value, i) => {
    const x = PAD + i * step;
    const y = HEIGHT - PAD - (max ? (value / max) * (HEIGHT - 2 * PAD) : 0);
    return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  });
}

/**
 * The chart for buckets [{t, delivered, failed}] (oldest first). Returns an <svg> with role img
 * and a text alternative summing the window.
 */
export function throughputChart(buckets, { label = "Throughput" } = {}) {
  const data = Array.isArray(buckets) ? buckets : [];
  const delivered = data.map((b) => Number(b.delivered) || 0);
  const failed = data.map((b) => Number(b.failed) || 0);
  const max = Math.max(1, ...delivered, ...failed);
  const totalDelivered = delivered.reduce((a, b) => a + b, 0);
  const totalFailed = failed.reduce((a, b) => a + b, 0);
  const minutes = data.length ? Math.round((data.length * 10) / 60) : 0;
  const text = `${label}: ${num(totalDelivered)} delivered and ${num(totalFailed)} failed in the last ${minutes || 10} minutes; at most ${num(max)} per 10 s.`;

  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": text,
    focusable: "false",
  });
  svg.append(s("title", {}, text));
  // Baseline and a mid gridline.
  svg.append(s("line", { class: "chart-grid", x1: 0, x2: WIDTH, y1: HEIGHT - PAD, y2: HEIGHT - PAD }));
  svg.append(s("line", { class: "chart-grid chart-grid-mid", x1: 0, x2: WIDTH, y1: HEIGHT / 2, y2: HEIGHT / 2 }));
  if (data.length >= 2) {
    const line = points(delivered, max);
    const area = [`M${line[0][0]},${HEIGHT - PAD}`, ...line.map(([x, y]) => `L${x},${y}`), `L${line.at(-1)[0]},${HEIGHT - PAD}`, "Z"].join(" ");
    svg.append(s("path", { class: "chart-area", d: area }));
    svg.append(s("polyline", { class: "chart-delivered", points: line.map((p) => p.join(",")).join(" ") }));
    if (totalFailed > 0) {
      svg.append(s("polyline", { class: "chart-failed", points: points(failed, max).map((p) => p.join(",")).join(" ") }));
    }
  }
  return svg;
}
