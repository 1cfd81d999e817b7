// Small SVG line charts from server-downsampled series (a few hundred points at most).
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 220;
const PAD = { left: 44, right: 12, top: 28, bottom: 26 };

function el(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (factor * magnitude >= value) return factor * magnitude;
  }
  return 10 * magnitude;
}

function timeLabel(seconds, span) {
  const date = new Date(seconds * 1000);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (span <= 86400) return time;
  return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

// series: [{ name, points: [[t, y], ...] }]; t in epoch seconds. Replaces `figure`'s chart.
export function lineChart(figure, { series, since, until, label }) {
  figure.querySelector("svg")?.remove();
  const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label });
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const x = (t) => PAD.left + ((t - since) / Math.max(1, until - since)) * innerW;
  const y = (v) => PAD.top + innerH - (v / top) * innerH;

  const grid = el("g", { class: "grid" });
  const axis = el("g", { class: "axis" });
  for (let i = 0; i <= 4; i += 1) {
    const value = (top * i) / 4;
    grid.append(el("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value) }));
    axis.append(el("text", { x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" }, String(Math.round(value * 10) / 10)));
  }
  for (let i = 0; i <= 4; i += 1) {
    const t = since + ((until - since) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    axis.append(el("text", { x: x(t), y: HEIGHT - 6, "text-anchor": anchor }, timeLabel(t, until - since)));
  }
  svg.append(grid, axis);

  if (!series.some((s) => s.points.length)) {
    svg.append(el("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "empty" }, "No data in this range"));
  }
  const legend = el("g", { class: "legend" });
  series.forEach((s, index) => {
    if (s.points.length) {
      const d = s.points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
      svg.append(el("path", { d, class: `series series-${index}`, "data-series": s.name }));
      // A lone point draws no line; a dot shows it is there.
      if (s.points.length === 1) {
        const [[t, v]] = s.points;
        svg.append(el("circle", { cx: x(t), cy: y(v), r: 3, class: `swatch-${index}` }));
      }
    }
    const lx = PAD.left + index * 190;
    legend.append(el("rect", { x: lx, y: 8, width: 12, height: 12, class: `swatch-${index}` }));
    legend.append(el("text", { x: lx + 18, y: 18 }, s.name));
  });
  svg.append(legend);
  figure.prepend(svg);
}
