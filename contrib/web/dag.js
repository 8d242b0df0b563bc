// dag: a layered drawing of the task graph (Sugiyama style), left to right:
// layers by longest path from the tasks without deps, long edges broken by
// dummy points, a few barycenter sweeps to cut crossings, then each node
// pulled towards its neighbours' height. Written here rather than asking the
// daemon for `dot -Tsvg`: the layout changes only when the graph does, a
// status change only recolours a node, and the daemon forks nothing.
//   const g = layout(["a", "b"], [["a", "b"]]);   // g.nodes.get("b") = {x, y, layer}
//   draw(svg, g, statusOf, onClick);

export const NODE_W = 128, NODE_H = 24;
const GAP_X = 44, GAP_Y = 10, PAD = 12;

// ids: the nodes; edges: [from, to] with from a dep of to.
export function layout(ids, edges) {
  const succ = new Map(ids.map((id) => [id, []])), pred = new Map(ids.map((id) => [id, []]));
  for (const [a, b] of edges) {
    if (!succ.has(a) || !succ.has(b) || a === b) continue;
    succ.get(a).push(b);
    pred.get(b).push(a);
  }
  // longest path layering over a topological order (Kahn); a cycle, which
  // orchfs refuses anyway, would only leave its nodes in layer 0
  const layer = new Map(ids.map((id) => [id, 0]));
  const indeg = new Map(ids.map((id) => [id, pred.get(id).length]));
  const queue = ids.filter((id) => indeg.get(id) === 0);
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i];
    for (const w of succ.get(v)) {
      layer.set(w, Math.max(layer.get(w), layer.get(v) + 1));
      indeg.set(w, indeg.get(w) - 1);
      if (indeg.get(w) === 0) queue.push(w);
    }
  }
  // proper layering: an edge over k layers becomes k - 1 dummies in a chain
  const up = new Map(), down = new Map();   // over real and dummy nodes
  const isDummy = new Set();
  const chains = [];                          // [from, to, [dummies...]]
  const link = (a, b) => {
    if (!down.has(a)) down.set(a, []);
    if (!up.has(b)) up.set(b, []);
    down.get(a).push(b);
    up.get(b).push(a);
  };
  let nd = 0;
  for (const [a, b] of edges) {
    if (!succ.has(a) || !succ.has(b) || a === b) continue;
    const dummies = [];
    let prev = a;
    for (let l = layer.get(a) + 1; l < layer.get(b); l++) {
      const d = "\u0000d" + nd++;
      isDummy.add(d);
      layer.set(d, l);
      dummies.push(d);
      link(prev, d);
      prev = d;
    }
    link(prev, b);
    chains.push([a, b, dummies]);
  }
  const nLayers = Math.max(0, ...layer.values()) + 1;
  const layers = Array.from({ length: nLayers }, () => []);
  for (const id of ids) layers[layer.get(id)].push(id);
  for (const d of isDummy) layers[layer.get(d)].push(d);
  const pos = new Map();
  const index = () => layers.forEach((L) => L.forEach((v, i) => pos.set(v, i)));
  index();
  // barycenter sweeps, down then up
  const bary = (v, nb) => {
    const ns = nb.get(v);
    if (!ns || !ns.length) return pos.get(v);
    let s = 0;
    for (const n of ns) s += pos.get(n);
    return s / ns.length;
  };
  for (let sweep = 0; sweep < 6; sweep++) {
    const downward = sweep % 2 === 0;
    const order = downward ? layers.keys() : [...layers.keys()].reverse();
    for (const l of order) {
      if ((downward && l === 0) || (!downward && l === nLayers - 1)) continue;
      const key = new Map(layers[l].map((v) => [v, bary(v, downward ? up : down)]));
      layers[l].sort((a, b) => key.get(a) - key.get(b));
      layers[l].forEach((v, i) => pos.set(v, i));
    }
  }
  // heights: stacked in order, then each layer in turn placed as near as it
  // can be to its neighbours' average height (a chain runs straight) while
  // keeping its order and spacing: a least-squares fit under those
  // constraints (pool adjacent violators), so that no pass drifts the
  // drawing away from the others
  const step = (v) => (isDummy.has(v) ? 8 : NODE_H + GAP_Y);
  const y = new Map();
  for (const L of layers) {
    let t = 0;
    for (const v of L) { y.set(v, t); t += step(v); }
  }
  const place = (L, nb) => {
    const c = [];
    let acc = 0;
    for (const v of L) { c.push(acc); acc += step(v); }
    const blocks = [];
    L.forEach((v, i) => {
      const ns = nb.get(v);
      let want = y.get(v);
      if (ns && ns.length) { want = 0; for (const n of ns) want += y.get(n); want /= ns.length; }
      let b = { sum: want - c[i], n: 1 };
      while (blocks.length && blocks[blocks.length - 1].sum / blocks[blocks.length - 1].n > b.sum / b.n) {
        const p = blocks.pop();
        b = { sum: p.sum + b.sum, n: p.n + b.n };
      }
      blocks.push(b);
    });
    let i = 0;
    for (const b of blocks) for (let k = 0; k < b.n; k++, i++) y.set(L[i], b.sum / b.n + c[i]);
  };
  for (let pass = 0; pass < 4; pass++) {
    for (let l = 1; l < nLayers; l++) place(layers[l], up);
    for (let l = nLayers - 2; l >= 0; l--) place(layers[l], down);
  }
  // the drawing starts at the top, however the pulls left it
  let top = Infinity;
  for (const v of y.values()) top = Math.min(top, v);
  if (!isFinite(top)) top = 0;
  for (const [v, yv] of y) y.set(v, yv - top);
  const nodes = new Map();
  let height = 0;
  for (const id of ids) {
    const n = { id, layer: layer.get(id), x: PAD + layer.get(id) * (NODE_W + GAP_X), y: PAD + y.get(id) };
    nodes.set(id, n);
    height = Math.max(height, n.y + NODE_H);
  }
  const points = new Map();
  for (const d of isDummy) points.set(d, { x: PAD + layer.get(d) * (NODE_W + GAP_X) + NODE_W / 2, y: PAD + y.get(d) + NODE_H / 2 });
  const paths = chains.map(([a, b, dummies]) => {
    const A = nodes.get(a), B = nodes.get(b);
    const pts = [{ x: A.x + NODE_W, y: A.y + NODE_H / 2 }];
    for (const d of dummies) pts.push(points.get(d));
    pts.push({ x: B.x, y: B.y + NODE_H / 2 });
    return { from: a, to: b, pts };
  });
  return { nodes, paths, width: PAD * 2 + nLayers * (NODE_W + GAP_X) - GAP_X, height: height + PAD };
}

// A smooth path through the points, horizontal at each end.
function curve(pts) {
  let d = `M${pts[0].x},${pts[0].y}`;
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1], b = pts[i], mx = (a.x + b.x) / 2;
    d += ` C${mx},${a.y} ${mx},${b.y} ${b.x},${b.y}`;
  }
  return d;
}

const SVG = "http://www.w3.org/2000/svg";
const el = (name, attrs) => {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
};

// Draws g into svg; ghost: ids drawn dashed (deps from another track).
// Returns the node elements by id, to recolour without drawing again.
export function draw(svg, g, { statusOf, ghost, onClick, zoom }) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${g.width} ${g.height}`);
  svg.setAttribute("width", Math.ceil(g.width * zoom));
  svg.setAttribute("height", Math.ceil(g.height * zoom));
  const defs = el("defs", {});
  const marker = el("marker", { id: "arrow", viewBox: "0 0 8 8", refX: "8", refY: "4", markerWidth: "7", markerHeight: "7", orient: "auto" });
  marker.append(el("path", { d: "M0,0 L8,4 L0,8 z", fill: "#9aa3b2" }));
  defs.append(marker);
  svg.append(defs);
  const edges = el("g", {});
  for (const p of g.paths) {
    const path = el("path", { class: "edge", d: curve(p.pts), "marker-end": "url(#arrow)" });
    path.dataset.from = p.from;
    path.dataset.to = p.to;
    edges.append(path);
  }
  svg.append(edges);
  const byId = new Map();
  const maxChars = Math.floor((NODE_W - 12) / 6.7);
  for (const n of g.nodes.values()) {
    const node = el("g", { class: "node" + (ghost.has(n.id) ? " ghost" : ""), transform: `translate(${n.x},${n.y})` });
    node.dataset.task = n.id;
    node.dataset.status = statusOf(n.id);
    const title = el("title", {});
    title.textContent = `${n.id} (${statusOf(n.id)})`;
    const text = el("text", { x: 7, y: NODE_H / 2 + 4 });
    text.textContent = n.id.length > maxChars ? n.id.slice(0, maxChars - 1) + "…" : n.id;
    node.append(title, el("rect", { width: NODE_W, height: NODE_H }), text);
    node.addEventListener("click", () => onClick(n.id));
    byId.set(n.id, node);
    svg.append(node);
  }
  return byId;
}
