// plots: small SVG charts for the dashboard, no library: step lines over
// time (cost by track or model, tick p99, events/s) and grouped bars (tokens
// by model).
//   lines(svg, keysEl, [{name, pts: [[t_ms, v], ...]}], {step: true, fmt})
//   bars(svg, keysEl, [{name, values: {input: n, output: n}}])

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2f6fde", "#2e9e5b", "#d93b3b", "#f0a030", "#7a4fbf", "#17a2b8", "#8e1f1f", "#6b7385"];
const el = (name, attrs, text) => {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
};

function size(svg) {
  const r = svg.getBoundingClientRect();
  return { w: Math.max(120, Math.round(r.width)), h: Math.max(80, Math.round(r.height)) };
}

function keys(keysEl, names) {
  if (!keysEl) return;
  keysEl.replaceChildren(...names.map((n, i) => {
    const s = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = PALETTE[i % PALETTE.length];
    s.append(sw, n);
    return s;
  }));
}

const short = (v) => Math.abs(v) >= 1e6 ? (v / 1e6).toFixed(1) + "M" : Math.abs(v) >= 1e3 ? (v / 1e3).toFixed(1) + "k"
  : Math.abs(v) >= 10 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2);

export function lines(svg, keysEl, series, { step = false, fmt = short } = {}) {
  const { w, h } = size(svg);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const L = 44, R = 6, T = 8, B = 16;
  let t0 = Infinity, t1 = -Infinity, vmax = 0;
  for (const s of series) for (const [t, v] of s.pts) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); vmax = Math.max(vmax, v); }
  const kids = [el("line", { class: "axis", x1: L, y1: h - B, x2: w - R, y2: h - B }), el("line", { class: "axis", x1: L, y1: T, x2: L, y2: h - B })];
  if (!isFinite(t0)) {
    kids.push(el("text", { x: L + 8, y: h / 2 }, "no data yet"));
    svg.replaceChildren(...kids);
    keys(keysEl, []);
    return;
  }
  if (t1 - t0 < 1000) t0 = t1 - 1000;
  if (vmax <= 0) vmax = 1;
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (w - L - R);
  const Y = (v) => h - B - (v / vmax) * (h - T - B);
  kids.push(el("text", { x: 2, y: T + 8 }, fmt(vmax)), el("text", { x: 2, y: h - B }, "0"));
  const span = (t1 - t0) / 1000;
  kids.push(el("text", { x: L, y: h - 3 }, span >= 120 ? `−${Math.round(span / 60)} min` : `−${Math.round(span)} s`),
    el("text", { x: w - R - 22, y: h - 3 }, "now"));
  series.forEach((s, i) => {
    if (!s.pts.length) return;
    let d = "";
    s.pts.forEach(([t, v], j) => {
      const x = X(t).toFixed(1), y = Y(v).toFixed(1);
      if (j === 0) d += `M${x},${y}`;
      else if (step) d += `H${x}V${y}`;
      else d += `L${x},${y}`;
    });
    d += `H${(w - R).toFixed(1)}`;
    kids.push(el("path", { class: "line", d, stroke: PALETTE[i % PALETTE.length] }));
  });
  svg.replaceChildren(...kids);
  keys(keysEl, series.map((s) => `${s.name} ${fmt(s.pts.length ? s.pts[s.pts.length - 1][1] : 0)}`));
}

export function bars(svg, keysEl, groups, parts) {
  const { w, h } = size(svg);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const L = 44, R = 6, T = 8, B = 16;
  let vmax = 0;
  for (const g of groups) for (const p of parts) vmax = Math.max(vmax, g.values[p] || 0);
  const kids = [el("line", { class: "axis", x1: L, y1: h - B, x2: w - R, y2: h - B })];
  if (!groups.length || vmax <= 0) {
    kids.push(el("text", { x: L + 8, y: h / 2 }, "no usage reported yet"));
    svg.replaceChildren(...kids);
    keys(keysEl, []);
    return;
  }
  kids.push(el("text", { x: 2, y: T + 8 }, short(vmax)), el("text", { x: 2, y: h - B }, "0"));
  const gw = (w - L - R) / groups.length, bw = Math.max(3, (gw - 10) / parts.length);
  groups.forEach((g, gi) => {
    parts.forEach((p, pi) => {
      const v = g.values[p] || 0, bh = (v / vmax) * (h - T - B);
      const r = el("rect", { x: (L + gi * gw + 5 + pi * bw).toFixed(1), y: (h - B - bh).toFixed(1), width: (bw - 1).toFixed(1), height: bh.toFixed(1), fill: PALETTE[pi % PALETTE.length] });
      r.append(el("title", {}, `${g.name} ${p}: ${v}`));
      kids.push(r);
    });
    const label = g.name.length > 16 ? g.name.slice(0, 15) + "…" : g.name;
    kids.push(el("text", { x: (L + gi * gw + 5).toFixed(1), y: h - 3 }, label));
  });
  svg.replaceChildren(...kids);
  keys(keysEl, parts);
}
