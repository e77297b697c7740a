// darkfab view: replay (data embedded, gzip + base64) or live (polls /data).
// Data: META (layout, units) and chunks of columnar arrays, times in deciseconds; chunks are
// merged by concatenation (see darkfab/scenarios/view.py). Plain JS + SVG + canvas.
"use strict";
(function () {
  const CFG = JSON.parse(document.getElementById("config").textContent);
  const META = JSON.parse(document.getElementById("meta").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const D = {t: 0, sn: [], st: {}, mv: {}, bf: {}, ln: {}, ts: [[], [], []]};
  const PACKML = {
    Execute: "#2e9d4a", Idle: "#81d4fa", Suspended: "#f9a825", Suspending: "#fbc02d",
    Unsuspending: "#fbc02d", Held: "#ef6c00", Holding: "#fb8c00", Unholding: "#fb8c00",
    Aborted: "#c62828", Aborting: "#e53935", Clearing: "#ef9a9a", Stopped: "#90a4ae",
    Stopping: "#b0bec5", Resetting: "#aed581", Starting: "#aed581", Complete: "#1565c0",
    Completing: "#42a5f5",
    idle: "#b0bec5", travel_empty: "#4fc3f7", travel_loaded: "#1565c0",
    waiting_traffic: "#f9a825", loading: "#8e24aa", unloading: "#ab47bc",
    charging: "#43a047", failed: "#d32f2f",
  };
  const colour = (s) => PACKML[s] || "#9e9e9e";
  let t = 0, playing = false, speed = 60, follow = CFG.live, selected = null, dirty = true;

  // ---- data -----------------------------------------------------------------------------
  function concat(a, b) { for (let i = 0; i < b.length; i++) a.push(b[i]); }
  function mergeCols(dst, src) {
    for (const k in src) {
      if (!dst[k]) dst[k] = src[k].map(() => []);
      src[k].forEach((col, i) => concat(dst[k][i], col));
    }
  }
  function merge(c) {
    D.t = Math.max(D.t, c.t);
    D.sn = c.sn;
    mergeCols(D.st, c.st); mergeCols(D.mv, c.mv); mergeCols(D.bf, c.bf);
    for (const l in c.ln) {
      const src = c.ln[l], dst = D.ln[l] || (D.ln[l] = {hop: {}, dv: [], pat: []});
      if (src.hop) mergeCols(dst.hop, src.hop);
      if (src.dv) concat(dst.dv, src.dv);
      if (src.pat) concat(dst.pat, src.pat);
    }
    if (c.ts) c.ts.forEach((col, i) => concat(D.ts[i], col));
    dirty = true;
  }
  // last index i with a[i] <= x, or -1
  function at(a, x) {
    let lo = 0, hi = a.length - 1, r = -1;
    while (lo <= hi) { const m = (lo + hi) >> 1; if (a[m] <= x) { r = m; lo = m + 1; } else hi = m - 1; }
    return r;
  }
  function stateAt(ent, x) {
    const s = D.st[ent]; if (!s) return null;
    const i = at(s[0], x); return i < 0 ? null : D.sn[s[1][i]];
  }
  const N = META.nodes, nodeIndex = {};
  N.name.forEach((n, i) => { nodeIndex[n] = i; });
  function robotAt(r, x) {
    const m = D.mv[r], home = nodeIndex[META.robots[r]];
    const bat = META.battery || {};
    if (!m || !m[0].length || x < m[0][0]) return {x: N.x[home], y: N.y[home], soc: bat.capacity_kwh ? 1 : null};
    const i = at(m[0], x);
    const ta = m[1][i], te = m[0][i], f = m[2][i], to = m[3][i];
    if (x < ta) {  // on the lane
      const u = ta > te ? (x - te) / (ta - te) : 1;
      const s0 = i > 0 ? m[4][i - 1] : m[4][i];
      return {x: N.x[f] + u * (N.x[to] - N.x[f]), y: N.y[f] + u * (N.y[to] - N.y[f]),
              soc: (s0 + u * (m[4][i] - s0)) / 1000};
    }
    return {x: N.x[to], y: N.y[to], soc: socAfter(r, m[4][i] / 1000, ta, x)};
  }
  // state of charge at x, from the charge on arrival at ta: base draw, charging at the charger
  function socAfter(r, soc, ta, x) {
    const b = META.battery, s = D.st[r];
    if (!b || !b.capacity_kwh || !s) return soc;
    let i = Math.max(0, at(s[0], ta)), from = ta;
    while (from < x) {
      const next = i + 1 < s[0].length ? Math.min(s[0][i + 1], x) : x;
      const dt_h = Math.max(0, next - from) / 36000;
      if (D.sn[s[1][i]] === "charging") soc = Math.min(1, soc + b.charging_kw * dt_h / b.capacity_kwh);
      else soc -= b.base_kw * dt_h / b.capacity_kwh;
      from = next; i++;
    }
    return Math.max(0, soc);
  }
  function bufferAt(b, x) { const s = D.bf[b]; if (!s) return 0; const i = at(s[0], x); return i < 0 ? 0 : s[1][i]; }
  function hopperAt(line, f, x) {
    const h = (D.ln[line] || {hop: {}}).hop[f], spec = META.lines[line].feeders[f];
    if (!h || !h[0].length) return spec.high;
    const i = at(h[0], x);
    if (i < 0) return spec.high + (h[1][0] - spec.high) * x / Math.max(1, h[0][0]);
    if (i + 1 >= h[0].length) return h[1][i];
    const u = (x - h[0][i]) / Math.max(1, h[0][i + 1] - h[0][i]);
    return h[1][i] + u * (h[1][i + 1] - h[1][i]);
  }
  function diverting(line, x) {
    const l = D.ln[line]; if (!l) return null;
    const m = 10 * (META.lines[line].margin_s || 0);
    for (let k = l.dv.length - 1; k >= 0; k--) {
      const w = l.dv[k]; if (w[0] - m <= x && x <= w[1] + m) return w[2];
    }
    return null;
  }

  // ---- layout ---------------------------------------------------------------------------
  const svg = document.getElementById("plant");
  const minx = Math.min(...N.x), maxx = Math.max(...N.x), miny = Math.min(...N.y), maxy = Math.max(...N.y);
  const span = Math.max(maxx - minx, maxy - miny, 1), pad = span * 0.08, R = span / 120;
  svg.setAttribute("viewBox", `${minx - pad} ${-maxy - pad} ${maxx - minx + 2 * pad} ${maxy - miny + 2 * pad}`);
  const X = (x) => x, Y = (y) => -y;
  function el(tag, attrs, parent) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    (parent || svg).appendChild(e); return e;
  }
  const gLinks = el("g", {}), gNodes = el("g", {}), gUnits = el("g", {}), gRobots = el("g", {});
  for (const [a, b, conv, cap] of META.links) {
    el("line", {x1: X(N.x[a]), y1: Y(N.y[a]), x2: X(N.x[b]), y2: Y(N.y[b]),
                class: conv ? "conveyor" : "lane", "stroke-width": (conv ? 0.4 : 0.6 + 0.5 * cap) * R}, gLinks);
  }
  const ROLE = {station: "#eceff1", waypoint: "#fff", storage: "#d7ccc8", dock: "#bcaaa4",
                port: "#cfd8dc", charger: "#c8e6c9", parking: "#e3f2fd", holding: "#fff9c4"};
  N.name.forEach((n, i) => {
    const c = el("circle", {cx: X(N.x[i]), cy: Y(N.y[i]), r: R * 0.9, fill: ROLE[N.role[i]] || "#fff",
                            class: "node", "stroke-width": R * 0.15}, gNodes);
    el("title", {}, c).textContent = `${n} (${N.role[i]})`;
    if (N.label[i]) {
      const tx = el("text", {x: X(N.x[i]) + R * 1.2, y: Y(N.y[i]) - R * 1.2, "font-size": R * 1.6}, gNodes);
      tx.textContent = n;
    }
  });
  const shapes = {};  // entity -> {kind, el, ...}
  const perNode = {};
  function slot(node) { const k = perNode[node] = (perNode[node] || 0) + 1; return k - 1; }
  function addUnit(name, node, kind) {
    const i = nodeIndex[node]; if (i === undefined) return;
    const w = kind === "line" ? 5 * R : 3 * R, h = 2.2 * R;
    let x, y;
    if (kind === "buffer") {  // stacked below the node's units
      const k = slot("buf:" + node);
      x = X(N.x[i]) - w / 2; y = Y(N.y[i]) + R * 4.2 + k * (h + R * 0.4);
    } else {
      const k = slot(node);
      x = X(N.x[i]) - w / 2 + k * (w + R * 0.5); y = Y(N.y[i]) + R * 1.4;
    }
    const g = el("g", {class: kind === "buffer" ? "buffer" : "unit", "data-name": name}, gUnits);
    const r = el("rect", {x, y, width: w, height: h, rx: R * 0.3, fill: "#9e9e9e", stroke: "#37474f",
                          "stroke-width": R * 0.15}, g);
    el("title", {}, g).textContent = name;
    const s = {kind, g, rect: r, x, y, w, h};
    if (kind === "buffer") {
      r.setAttribute("fill", "#fff");
      s.fill = el("rect", {x, y, width: 0, height: h, fill: "#7986cb"}, g);
      s.text = el("text", {x: x + w + R * 0.3, y: y + h * 0.8, "font-size": R * 1.3}, g);
    }
    g.addEventListener("click", () => select(name));
    shapes[name] = s;
  }
  for (const e in META.equipment) addUnit(e, META.equipment[e], "equipment");
  for (const l in META.lines) addUnit(l, META.lines[l].node, "line");
  for (const b in META.buffers) addUnit(b, META.buffers[b].node, "buffer");
  for (const r in META.robots) {
    const g = el("g", {class: "robot", "data-name": r, id: "robot-" + r}, gRobots);
    const c = el("circle", {r: R * 1.1, fill: "#b0bec5", stroke: "#263238", "stroke-width": R * 0.2}, g);
    const bb = el("rect", {x: -R, y: R * 1.4, width: 2 * R, height: R * 0.5, fill: "#eceff1", stroke: "#263238", "stroke-width": R * 0.08}, g);
    const bf = el("rect", {x: -R, y: R * 1.4, width: 2 * R, height: R * 0.5, fill: "#43a047"}, g);
    el("title", {}, g).textContent = r;
    g.addEventListener("click", () => select(r));
    shapes[r] = {kind: "robot", g, rect: c, bat: bf, bb};
  }
  document.getElementById("legend").innerHTML = ["Execute", "Idle", "Suspended", "Held", "Aborted", "Stopped",
    "travel_empty", "travel_loaded", "waiting_traffic", "charging", "failed"]
    .map((s) => `<i style="background:${colour(s)}"></i>${s}`).join("");
  document.getElementById("title").textContent = `darkfab: ${META.scenario}` + (CFG.live ? " (live)" : "");

  // ---- continuous lines -----------------------------------------------------------------
  const linesBox = document.getElementById("lines");
  const lineUI = {};
  for (const l in META.lines) {
    const L = META.lines[l], div = document.createElement("div");
    div.innerHTML = `<h2>${l}: <span class="lstate"></span> <span class="gate">accept</span></h2>` +
      Object.keys(L.feeders).map((f) => `<div class="hopper" data-f="${f}"><b>${f}</b><span class="bar"><i></i><u></u></span><em></em></div>`).join("") +
      `<div>API content (% label claim), spec ${L.spec[0]}–${L.spec[1]}; dots: PAT readings out of spec, shaded: diverted</div><canvas class="api" height="70"></canvas>`;
    linesBox.appendChild(div);
    lineUI[l] = div;
  }
  function drawLines() {
    for (const l in lineUI) {
      const L = META.lines[l], div = lineUI[l], st = stateAt(l, t);
      div.querySelector(".lstate").textContent = st || "-";
      div.querySelector(".lstate").style.color = colour(st);
      const cause = diverting(l, t), gate = div.querySelector(".gate");
      gate.textContent = cause ? `divert (${cause})` : "accept";
      gate.className = cause ? "gate divert" : "gate";
      for (const h of div.querySelectorAll(".hopper")) {
        const f = h.dataset.f, F = L.feeders[f], kg = hopperAt(l, f, t), top = F.high * 1.15;
        h.querySelector("i").style.width = `${Math.max(0, Math.min(100, 100 * kg / top))}%`;
        h.querySelector("u").style.left = `${100 * F.low / top}%`;
        h.querySelector("em").textContent = `${kg.toFixed(2)} kg`;
      }
      drawApi(l, div.querySelector("canvas.api"));
    }
  }
  function drawApi(l, cv) {
    const L = META.lines[l], data = D.ln[l] || {dv: [], pat: []};
    const ctx = fit(cv), W = cv.width, H = cv.height, win = 6 * 36000;  // ±6 h around the cursor
    const a = t - win, b = t + win, lo = L.spec[0] - 5, hi = L.spec[1] + 5;
    const px = (x) => (x - a) / (b - a) * W, py = (v) => H - (v - lo) / (hi - lo) * H;
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = "#e8f5e9"; ctx.fillRect(0, py(L.spec[1]), W, py(L.spec[0]) - py(L.spec[1]));
    ctx.fillStyle = "rgba(198,40,40,0.25)";
    const m = 10 * (L.margin_s || 0);
    for (const w of data.dv) if (w[1] + m >= a && w[0] - m <= b) ctx.fillRect(px(w[0] - m), 0, Math.max(1, px(w[1] + m) - px(w[0] - m)), H);
    if (L.api_mean_pct) { ctx.strokeStyle = "#2e7d32"; ctx.beginPath(); ctx.moveTo(0, py(L.api_mean_pct)); ctx.lineTo(W, py(L.api_mean_pct)); ctx.stroke(); }
    ctx.fillStyle = "#c62828";
    for (const p of data.pat) if (p[0] >= a && p[0] <= b) { ctx.beginPath(); ctx.arc(px(p[0]), py(Math.max(lo, Math.min(hi, p[1]))), 2.5, 0, 7); ctx.fill(); }
    ctx.strokeStyle = "#d32f2f"; ctx.beginPath(); ctx.moveTo(W / 2, 0); ctx.lineTo(W / 2, H); ctx.stroke();
  }
  function fit(cv) {
    const r = cv.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    const w = Math.max(10, Math.round(r.width * dpr)), h = Math.max(10, Math.round(r.height * dpr));
    if (cv.width !== w || cv.height !== h) { cv.width = w; cv.height = h; }
    return cv.getContext("2d");
  }

  // ---- charts ---------------------------------------------------------------------------
  const charts = [["chart-thr", 1, "#1565c0"], ["chart-wip", 2, "#6a1b9a"]];
  function t1() { return Math.max(D.t, 1); }
  function smooth(v, k) {  // trailing moving average of k points
    const out = new Array(v.length); let sum = 0;
    for (let i = 0; i < v.length; i++) { sum += v[i]; if (i >= k) sum -= v[i - k]; out[i] = sum / Math.min(i + 1, k); }
    return out;
  }
  function drawCharts() {
    for (const [id, col, c] of charts) {
      const cv = document.getElementById(id), ctx = fit(cv), W = cv.width, H = cv.height;
      ctx.clearRect(0, 0, W, H);
      const xs = D.ts[0], ys = col === 1 ? smooth(D.ts[1], 10) : D.ts[2];
      if (!xs.length) continue;
      let top = 0; for (const v of ys) top = Math.max(top, v);
      top = top > 0 ? top * 1.1 : 1;
      ctx.strokeStyle = c; ctx.lineWidth = 1.5; ctx.beginPath();
      xs.forEach((x, i) => { const px = x / t1() * W, py = H - 4 - ys[i] / top * (H - 20); i ? ctx.lineTo(px, py) : ctx.moveTo(px, py); });
      ctx.stroke();
      ctx.fillStyle = "#555"; ctx.font = `${11 * (window.devicePixelRatio || 1)}px sans-serif`;
      ctx.fillText(`max ${top / 1.1 >= 100 ? Math.round(top / 1.1) : (top / 1.1).toPrecision(3)}`, W - 80 * (window.devicePixelRatio || 1), 12 * (window.devicePixelRatio || 1));
    }
  }
  function placeCursors() {
    for (const [id] of charts) {
      const cv = document.getElementById(id), cur = cv.parentElement.querySelector(".cursor");
      cur.style.left = `${cv.offsetLeft + t / t1() * cv.clientWidth}px`;
    }
  }
  for (const [id] of charts) document.getElementById(id).addEventListener("click", (ev) => {
    const r = ev.target.getBoundingClientRect(); follow = false; setTime((ev.clientX - r.left) / r.width * t1());
  });

  // ---- details --------------------------------------------------------------------------
  const details = document.getElementById("details");
  function fmt(ds) {
    const s = ds / 10, d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? `${d} d ` : "") + `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${(s % 60).toFixed(1).padStart(4, "0")}`;
  }
  function select(name) {
    if (selected && shapes[selected]) shapes[selected].rect.classList.remove("selected");
    selected = name;
    if (shapes[name]) shapes[name].rect.classList.add("selected");
    drawDetails();
  }
  function drawDetails() {
    if (!selected) return;
    const s = D.st[selected], kind = shapes[selected] ? shapes[selected].kind : "";
    let html = `<h2 id="details-name">${selected} <small>(${kind})</small></h2>`;
    if (kind === "buffer") {
      const b = META.buffers[selected];
      html += `<p>level ${bufferAt(selected, t)}${b.cap != null ? " / " + b.cap : ""} units</p><canvas id="dchart"></canvas>`;
      details.innerHTML = html; drawSeries(document.getElementById("dchart"), D.bf[selected]);
      return;
    }
    if (!s) { details.innerHTML = html + "<p>no state change recorded</p>"; return; }
    const i = at(s[0], t);
    html += `<p>state now: <b>${i >= 0 ? D.sn[s[1][i]] : "-"}</b>`;
    if (kind === "robot") { const p = robotAt(selected, t); if (p.soc != null) html += `, battery ${(100 * p.soc).toFixed(1)} %`; }
    html += `; ${s[0].length} state changes</p><canvas id="dchart"></canvas><table><tr><th>from</th><th>to</th><th>state</th></tr>`;
    const a = Math.max(0, i - 8), b = Math.min(s[0].length, Math.max(i, 0) + 9);
    for (let k = a; k < b; k++) {
      const end = k + 1 < s[0].length ? s[0][k + 1] : D.t;
      html += `<tr class="${k === i ? "now" : ""}"><td>${fmt(s[0][k])}</td><td>${fmt(end)}</td><td style="color:${colour(D.sn[s[1][k]])}">${D.sn[s[1][k]]}</td></tr>`;
    }
    details.innerHTML = html + "</table>";
    drawGantt(document.getElementById("dchart"), s);
  }
  function drawGantt(cv, s) {  // the whole run, one colour per state, cursor in red
    const ctx = fit(cv), W = cv.width, H = cv.height;
    for (let k = 0; k < s[0].length; k++) {
      const x0 = s[0][k] / t1() * W, x1 = (k + 1 < s[0].length ? s[0][k + 1] : D.t) / t1() * W;
      ctx.fillStyle = colour(D.sn[s[1][k]]); ctx.fillRect(x0, 0, Math.max(0.5, x1 - x0), H - 6);
    }
    ctx.fillStyle = "#d32f2f"; ctx.fillRect(t / t1() * W - 1, 0, 2, H);
  }
  function drawSeries(cv, s) {
    const ctx = fit(cv), W = cv.width, H = cv.height;
    if (!s) return;
    let top = 1; for (const v of s[1]) top = Math.max(top, v);
    ctx.strokeStyle = "#3949ab"; ctx.beginPath();
    s[0].forEach((x, i) => { const px = x / t1() * W, py = H - s[1][i] / top * (H - 4); i ? ctx.lineTo(px, py) : ctx.moveTo(px, py); });
    ctx.stroke(); ctx.fillStyle = "#d32f2f"; ctx.fillRect(t / t1() * W - 1, 0, 2, H);
  }

  // ---- frame ----------------------------------------------------------------------------
  function drawPlant() {
    for (const name in shapes) {
      const s = shapes[name];
      if (s.kind === "equipment" || s.kind === "line") {
        s.rect.setAttribute("fill", colour(stateAt(name, t)));
      } else if (s.kind === "buffer") {
        const v = bufferAt(name, t), cap = META.buffers[name].cap, top = cap || Math.max(1, ...(D.bf[name] ? D.bf[name][1].slice(-200) : [1]));
        s.fill.setAttribute("width", s.w * Math.min(1, v / top));
        s.text.textContent = cap != null ? `${v}/${cap}` : `${v}`;
      } else if (s.kind === "robot") {
        const p = robotAt(name, t);
        s.g.setAttribute("transform", `translate(${X(p.x).toFixed(3)},${Y(p.y).toFixed(3)})`);
        s.g.dataset.x = p.x.toFixed(3); s.g.dataset.y = p.y.toFixed(3);
        s.rect.setAttribute("fill", colour(stateAt(name, t) || "idle"));
        if (p.soc != null) {
          s.bat.setAttribute("width", 2 * R * Math.max(0, Math.min(1, p.soc)));
          s.bat.setAttribute("fill", p.soc < 0.3 ? "#e53935" : p.soc < 0.6 ? "#fb8c00" : "#43a047");
        }
      }
    }
  }
  const slider = document.getElementById("slider"), clock = document.getElementById("clock");
  function draw() {
    drawPlant(); drawLines(); placeCursors();
    if (dirty) { drawCharts(); dirty = false; }
    drawDetails();
    slider.value = Math.round(t / t1() * 10000);
    clock.textContent = `${fmt(t)} / ${fmt(D.t)}`;
  }
  function setTime(x) { t = Math.max(0, Math.min(t1(), x)); draw(); }
  slider.addEventListener("input", () => { follow = false; setTime(slider.value / 10000 * t1()); });
  const playBtn = document.getElementById("play");
  function setPlaying(p) {
    const was = playing; playing = p; playBtn.innerHTML = p ? "&#10073;&#10073;" : "&#9654;";
    if (p && !was) { last = 0; requestAnimationFrame(loop); }
  }
  playBtn.addEventListener("click", () => { if (!playing && t >= t1()) t = 0; setPlaying(!playing); follow = false; });
  document.getElementById("speed").addEventListener("change", (e) => { speed = +e.target.value; });
  document.addEventListener("keydown", (e) => { if (e.code === "Space" && e.target === document.body) { e.preventDefault(); playBtn.click(); } });
  let last = 0;
  function loop(now) {  // runs only while playing: an idle page costs no frames
    if (!playing) return;
    const dt = last ? (now - last) / 1000 : 0; last = now;
    t += dt * speed * 10;
    if (t >= t1()) { t = t1(); if (!CFG.live) setPlaying(false); }
    draw();
    requestAnimationFrame(loop);
  }
  window.addEventListener("resize", () => { dirty = true; draw(); });

  // ---- start ----------------------------------------------------------------------------
  const status = document.getElementById("status");
  async function inflate(b64) {
    const bin = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }
  let nChunks = 0, done = false;
  async function poll() {
    try {
      const r = await fetch(`data?from=${nChunks}`, {cache: "no-store"});
      const j = await r.json();
      j.chunks.forEach(merge);
      nChunks = j.n; done = j.done;
      status.textContent = done ? "run finished" : `live: ${j.n} updates`;
      if (follow) t = D.t;
      draw();
    } catch (e) {
      status.textContent = "live: server closed";
      done = true;
    }
    if (!done) setTimeout(poll, 500);
  }
  window.darkfabView = {
    setTime: (s) => { follow = false; setTime(s * 10); },
    time: () => t / 10, end: () => D.t / 10,
    robots: () => Object.keys(META.robots).map((r) => { const p = robotAt(r, t); return {name: r, x: p.x, y: p.y, soc: p.soc, state: stateAt(r, t)}; }),
    stateAt: (e) => stateAt(e, t), select,
    ready: false,
  };
  (async () => {
    if (CFG.live) { await poll(); }
    else {
      status.textContent = "loading…";
      merge(await inflate(document.getElementById("payload").textContent.trim()));
      status.textContent = "";
      t = 0;
    }
    draw();
    window.darkfabView.ready = true;
  })();
})();
