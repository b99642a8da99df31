// The live picture of one ally service: everything drawn here arrived on this service's own
// /stream (Server-Sent Events), i.e. only what the service released to this ally. Plain JS and
// SVG, no libraries. Static layers: /static/vendor/world_atlas/land-50m-region.json (coastlines)
// and /areas.json (alert and EEZ areas). Side panels poll /latency and /healthz.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KINDS = ["launch_detection", "track_update", "impact_prediction", "alert", "track_end", "sensor_status"];
  // Equirectangular projection in degree units, x shrunk by cos(37.5 deg) so shapes keep
  // their proportions at the latitude of the Korean peninsula and Honshu.
  const X_SCALE = Math.cos((37.5 * Math.PI) / 180);
  const LIMITS = { lonMin: 110, latMin: 18, lonMax: 180, latMax: 56 }; // the coastline file's box
  const HOME = { lonMin: 119, latMin: 27, lonMax: 148, latMax: 46 }; // first view: Korea, Japan, Sea of Japan
  const METRES_PER_DEG_LAT = 111195; // mean Earth radius 6,371,008.8 m * pi / 180
  const MAX_LOG = 300;
  const MAX_TRACK_POINTS = 3000;
  // An early prediction's ellipse can span the whole map: above this it is drawn as an outline only.
  const FILLED_ELLIPSE_MAX_M = 150000;
  const HOP_ORDER = ["sensor_to_send", "send_to_append", "append_to_receive", "receive_to_deliver", "end_to_end"];
  const LEVELS = ["ADVISORY", "WARNING", "EMERGENCY"];

  const $ = (id) => document.getElementById(id);
  const svg = $("map");
  const layers = {
    land: $("layer-land"),
    areas: $("layer-areas"),
    sensors: $("layer-sensors"),
    tracks: $("layer-tracks"),
    impacts: $("layer-impacts"),
  };

  const state = {
    ally: null,
    seen: new Set(), // event ids shown on this page
    keys: new Set(), // correlation keys shown on this page
    counts: Object.fromEntries(KINDS.map((k) => [k, 0])),
    tracks: new Map(), // correlation key -> {launch, points: [[t_ms, lon, lat, alt_m]], ended, impact}
    sensors: new Map(), // sensor id -> {lon, lat, health}
    alerts: new Map(), // event id -> alert entry
    areas: {}, // name -> {nation, rings: [[[lat, lon]]]}
    view: { ...HOME },
    // what changed since the last redraw (each redraw touches only that)
    changedTracks: new Set(),
    pendingLog: [],
    redraw: { view: true, areas: true, sensors: true, counts: true },
  };

  const px = (lon) => (lon - LIMITS.lonMin) * X_SCALE;
  const py = (lat) => LIMITS.latMax - lat;
  const pt = (lon, lat) => `${px(lon).toFixed(3)},${py(lat).toFixed(3)}`;

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function title(node, text) {
    el("title", {}, node).textContent = text;
    return node;
  }

  function setView() {
    const v = state.view;
    const x0 = px(v.lonMin);
    const y0 = py(v.latMax);
    svg.setAttribute("viewBox", `${x0} ${y0} ${px(v.lonMax) - x0} ${py(v.latMin) - y0}`);
  }

  // Grow the view (never shrink it) so a point of the picture stays on the map.
  function include(lon, lat) {
    const v = state.view;
    const pad = 1.5;
    const before = `${v.lonMin} ${v.lonMax} ${v.latMin} ${v.latMax}`;
    if (lon - pad < v.lonMin) v.lonMin = Math.max(LIMITS.lonMin, lon - pad);
    if (lon + pad > v.lonMax) v.lonMax = Math.min(LIMITS.lonMax, lon + pad);
    if (lat - pad < v.latMin) v.latMin = Math.max(LIMITS.latMin, lat - pad);
    if (lat + pad > v.latMax) v.latMax = Math.min(LIMITS.latMax, lat + pad);
    if (`${v.lonMin} ${v.lonMax} ${v.latMin} ${v.latMax}` !== before) state.redraw.view = true;
  }

  function markerRadius() {
    return (state.view.lonMax - state.view.lonMin) * X_SCALE * 0.006;
  }

  // ------------------------------------------------------------------ static layers

  async function loadLand() {
    const response = await fetch("/static/vendor/world_atlas/land-50m-region.json");
    const land = await response.json();
    const d = land.rings.map((ring) => "M" + ring.map(([lon, lat]) => pt(lon, lat)).join("L") + "Z").join("");
    el("path", { d }, layers.land);
  }

  async function loadAreas() {
    const response = await fetch("/areas.json");
    state.areas = (await response.json()).areas;
    state.redraw.areas = true;
  }

  function drawAreas() {
    const alerted = activeAreaLevels();
    layers.areas.replaceChildren();
    const names = Object.keys(state.areas).sort((a, b) => (a.includes("EEZ") ? -1 : 1) - (b.includes("EEZ") ? -1 : 1));
    for (const name of names) {
      const area = state.areas[name];
      const d = area.rings.map((ring) => "M" + ring.map(([lat, lon]) => pt(lon, lat)).join("L") + "Z").join("");
      const level = alerted.get(name);
      const cls = ["area", name.includes("EEZ") ? "eez" : "territory"];
      if (level) cls.push("alerted", level.toLowerCase());
      const path = el("path", { d, class: cls.join(" "), "data-area": name }, layers.areas);
      title(path, level ? `${name} (${area.nation}): ${level}` : `${name} (${area.nation})`);
    }
  }

  // ------------------------------------------------------------------ events

  function track(key) {
    let t = state.tracks.get(key);
    if (!t) {
      t = { key, launch: null, points: [], ended: null, impact: null, g: null, gi: null };
      state.tracks.set(key, t);
    }
    state.changedTracks.add(key);
    return t;
  }

  function insertPoint(points, p) {
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid][0] <= p[0]) lo = mid + 1;
      else hi = mid;
    }
    points.splice(lo, 0, p);
    if (points.length > MAX_TRACK_POINTS) points.shift();
  }

  const handlers = {
    launch_detection(h, p) {
      const t = track(h.correlation_key);
      t.launch = { lon: p.launch_point.lon_deg, lat: p.launch_point.lat_deg, cls: p.missile_class, time: p.launch_time };
      include(t.launch.lon, t.launch.lat);
      return `${p.missile_class} launch at ${fmtLatLon(p.launch_point)} (${Math.round(p.confidence * 100)} %)`;
    },
    track_update(h, p) {
      const pos = p.position;
      insertPoint(track(h.correlation_key).points, [Date.parse(h.measured_at), pos.lon_deg, pos.lat_deg, pos.alt_m]);
      include(pos.lon_deg, pos.lat_deg);
      return `${p.phase} ${fmtLatLon(pos)} alt ${(pos.alt_m / 1000).toFixed(0)} km`;
    },
    impact_prediction(h, p) {
      const t = track(h.correlation_key);
      const at = Date.parse(h.measured_at);
      if (!t.impact || t.impact.at <= at) {
        t.impact = { at, lon: p.impact_point.lon_deg, lat: p.impact_point.lat_deg, ellipse: p.ellipse, time: p.impact_time, areas: p.impact_areas };
      }
      include(p.impact_point.lon_deg, p.impact_point.lat_deg);
      const areas = p.impact_areas.length ? ` in ${p.impact_areas.join(", ")}` : "";
      return `impact ${fmtLatLon(p.impact_point)} at ${fmtTime(p.impact_time)}${areas}, 1σ ${(p.ellipse.semi_major_m / 1000).toFixed(1)} km`;
    },
    alert(h, p) {
      for (const ref of p.references) {
        const old = state.alerts.get(ref);
        if (old) old.closed = p.msg_type === "CANCEL" ? "cancelled" : "updated";
      }
      state.alerts.set(h.event_id, {
        id: h.event_id, key: h.correlation_key, level: p.level, msgType: p.msg_type, status: p.status,
        areas: p.affected_areas, text: p.text, at: h.measured_at, sensor: h.sensor_id, closed: p.msg_type === "CANCEL" ? "cancel" : null,
      });
      renderAlerts();
      state.redraw.areas = true;
      return `${p.msg_type} ${p.level} ${p.affected_areas.join(", ")}: ${p.text}`;
    },
    track_end(h, p) {
      track(h.correlation_key).ended = p.reason;
      return p.reason + (p.merged_into ? ` into ${p.merged_into}` : "");
    },
    sensor_status(h, p) {
      state.sensors.set(h.sensor_id, { lon: p.site.lon_deg, lat: p.site.lat_deg, health: p.health, range_m: p.max_range_m });
      state.redraw.sensors = true;
      return `${p.health}, range ${(p.max_range_m / 1000).toFixed(0)} km`;
    },
  };

  function onEvent(kind, message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (err) {
      console.warn("unreadable event", err);
      return;
    }
    const h = event.header;
    if (state.seen.has(h.event_id)) return;
    state.seen.add(h.event_id);
    if (kind !== "sensor_status") state.keys.add(h.correlation_key);
    state.counts[kind] += 1;
    const summary = handlers[kind](h, event.payload);
    state.pendingLog.push([kind, h, summary]);
    if (state.pendingLog.length > 2 * MAX_LOG) state.pendingLog.splice(0, state.pendingLog.length - MAX_LOG);
    state.redraw.counts = true;
  }

  // ------------------------------------------------------------------ drawing

  function ellipsePoints(lon, lat, e) {
    const az = (e.orientation_deg * Math.PI) / 180;
    const cosLat = Math.cos((lat * Math.PI) / 180);
    const out = [];
    for (let i = 0; i < 36; i++) {
      const th = (i * Math.PI) / 18;
      const a = e.semi_major_m * Math.cos(th);
      const b = e.semi_minor_m * Math.sin(th);
      const east = a * Math.sin(az) + b * Math.cos(az);
      const north = a * Math.cos(az) - b * Math.sin(az);
      out.push(pt(lon + east / (METRES_PER_DEG_LAT * cosLat), lat + north / METRES_PER_DEG_LAT));
    }
    return out.join(" ");
  }

  function drawTrack(t, r) {
    const g = el("g", { class: t.ended ? "track ended" : "track", "data-key": t.key });
    title(g, `${t.key}${t.launch ? " " + t.launch.cls : ""}${t.ended ? " (" + t.ended + ")" : ""}`);
    const pts = t.points.map(([, lon, lat]) => pt(lon, lat));
    if (t.launch) pts.unshift(pt(t.launch.lon, t.launch.lat));
    if (pts.length > 1) el("polyline", { class: "track-line", points: pts.join(" ") }, g);
    if (t.points.length) {
      const [, lon, lat] = t.points[t.points.length - 1];
      el("circle", { class: "track-head", cx: px(lon), cy: py(lat), r: r * 0.8 }, g);
    }
    if (t.launch) el("circle", { class: "launch", cx: px(t.launch.lon), cy: py(t.launch.lat), r }, g);
    place(t, "g", g, layers.tracks);
    if (!t.impact) return;
    const i = t.impact;
    const gi = el("g", { class: "impact", "data-key": t.key });
    title(gi, `${t.key}: impact ${fmtLatLon({ lat_deg: i.lat, lon_deg: i.lon })} at ${fmtTime(i.time)}; ` +
      `1σ ${(i.ellipse.semi_major_m / 1000).toFixed(1)} × ${(i.ellipse.semi_minor_m / 1000).toFixed(1)} km` +
      (i.areas.length ? `; ${i.areas.join(", ")}` : ""));
    const wide = i.ellipse.semi_major_m > FILLED_ELLIPSE_MAX_M ? " wide" : "";
    el("polygon", { class: "impact-ellipse" + wide, points: ellipsePoints(i.lon, i.lat, i.ellipse) }, gi);
    const x = px(i.lon);
    const y = py(i.lat);
    el("path", { class: "impact-cross", d: `M${x - r},${y - r}L${x + r},${y + r}M${x - r},${y + r}L${x + r},${y - r}` }, gi);
    place(t, "gi", gi, layers.impacts);
  }

  function place(t, slot, node, layer) {
    if (t[slot] && t[slot].parentNode === layer) t[slot].replaceWith(node);
    else layer.appendChild(node);
    t[slot] = node;
  }

  // Only the tracks that changed, or all of them when the view (and so the marker size) changed.
  function drawTracks(all) {
    const r = markerRadius();
    if (all) {
      layers.tracks.replaceChildren();
      layers.impacts.replaceChildren();
    }
    const keys = all ? state.tracks.keys() : state.changedTracks;
    for (const key of keys) drawTrack(state.tracks.get(key), r);
    state.changedTracks = new Set();
  }

  function drawSensors() {
    const r = markerRadius() * 1.1;
    layers.sensors.replaceChildren();
    for (const [id, s] of state.sensors) {
      const x = px(s.lon);
      const y = py(s.lat);
      const tri = el("path", { class: `sensor ${s.health.toLowerCase()}`, d: `M${x},${y - r}L${x + r},${y + r}L${x - r},${y + r}Z`, "data-sensor": id }, layers.sensors);
      title(tri, `${id}: ${s.health}, range ${(s.range_m / 1000).toFixed(0)} km`);
    }
  }

  function render() {
    const redraw = state.redraw;
    state.redraw = { view: false, areas: false, sensors: false, counts: false };
    if (redraw.view) setView();
    if (redraw.areas) drawAreas();
    if (redraw.sensors || redraw.view) drawSensors();
    if (redraw.view || state.changedTracks.size) drawTracks(redraw.view);
    if (redraw.counts) renderCounts();
    if (state.pendingLog.length) flushLog();
  }

  // ------------------------------------------------------------------ panels

  function activeAreaLevels() {
    const levels = new Map();
    for (const a of state.alerts.values()) {
      if (a.closed) continue;
      for (const name of a.areas) {
        const old = levels.get(name);
        if (!old || LEVELS.indexOf(a.level) > LEVELS.indexOf(old)) levels.set(name, a.level);
      }
    }
    return levels;
  }

  function renderAlerts() {
    const list = $("alerts");
    list.replaceChildren();
    const alerts = [...state.alerts.values()].reverse();
    const open = alerts.filter((a) => !a.closed).length;
    $("alert-count").textContent = `${open} active, ${alerts.length} received`;
    for (const a of alerts.slice(0, 100)) {
      const li = document.createElement("li");
      li.className = `${a.level.toLowerCase()}${a.closed ? " cancelled" : ""}`;
      li.dataset.eventId = a.id;
      li.dataset.key = a.key;
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = `${fmtTime(a.at)} ${a.msgType} ${a.level} ${a.status} · ${a.areas.join(", ")} · ${a.key}` +
        (a.closed && a.closed !== "cancel" ? ` (${a.closed})` : "");
      const text = document.createElement("div");
      text.textContent = a.text;
      li.append(meta, text);
      list.appendChild(li);
    }
  }

  function logEntry(kind, h, summary) {
    const li = document.createElement("li");
    li.dataset.eventId = h.event_id;
    li.dataset.key = h.correlation_key;
    li.dataset.kind = kind;
    li.title = `${h.event_id} from ${h.sensor_id} (${h.sensor_nation}), releasable to ${h.releasable_to.join(", ")}`;
    const when = document.createElement("span");
    when.className = "meta";
    when.textContent = fmtTime(h.measured_at) + " ";
    const k = document.createElement("span");
    k.className = `kind ${kind}`;
    k.textContent = kind;
    const who = kind === "sensor_status" ? h.sensor_id : `${h.correlation_key} ${h.sensor_id}`;
    li.append(when, k, document.createTextNode(` ${who}: ${summary}`));
    return li;
  }

  // The newest entries arrived since the last redraw, newest first, at most MAX_LOG kept.
  function flushLog() {
    const list = $("log");
    const fresh = state.pendingLog.slice(-MAX_LOG);
    state.pendingLog = [];
    const fragment = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i--) fragment.appendChild(logEntry(...fresh[i]));
    list.prepend(fragment);
    while (list.childElementCount > MAX_LOG) list.lastElementChild.remove();
  }

  function renderCounts() {
    const ul = $("counts");
    ul.replaceChildren();
    for (const kind of KINDS) {
      const li = document.createElement("li");
      li.dataset.kind = kind;
      const b = document.createElement("b");
      b.textContent = String(state.counts[kind]);
      li.append(b, document.createTextNode(" " + kind.replace("_", " ")));
      ul.appendChild(li);
    }
  }

  function fmtMs(v) {
    if (v === undefined || v === null) return "–";
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  async function pollLatency() {
    try {
      const response = await fetch("/latency", { cache: "no-store" });
      if (response.ok) {
        const rows = (await response.json()).rows.filter((r) => r.kind === "*");
        rows.sort((a, b) => HOP_ORDER.indexOf(a.hop) - HOP_ORDER.indexOf(b.hop) || a.channel.localeCompare(b.channel));
        const body = $("latency").tBodies[0];
        body.replaceChildren();
        for (const r of rows) {
          const tr = document.createElement("tr");
          tr.dataset.hop = r.hop;
          tr.dataset.channel = r.channel;
          for (const v of [r.hop, r.channel === "none" ? "" : r.channel, String(r.count), fmtMs(r.p50_ms), fmtMs(r.p99_ms), fmtMs(r.max_ms)]) {
            const td = document.createElement("td");
            td.textContent = v;
            tr.appendChild(td);
          }
          body.appendChild(tr);
        }
      }
    } catch (err) {
      // the service is gone or restarting: keep the last table, try again
    }
    setTimeout(pollLatency, 1000);
  }

  async function loadHealth() {
    try {
      const detail = await (await fetch("/healthz", { cache: "no-store" })).json();
      state.ally = detail.ally;
      $("ally").textContent = detail.ally;
      document.title = `trilink · ${detail.ally} live picture`;
    } catch (err) {
      setTimeout(loadHealth, 2000);
    }
  }

  function setStatus(name, text) {
    const node = $("status");
    node.className = `status ${name}`;
    node.dataset.state = name;
    node.textContent = text;
  }

  function connect() {
    const source = new EventSource("/stream");
    source.onopen = () => setStatus("open", "live");
    source.onerror = () => setStatus("closed", source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
    for (const kind of KINDS) source.addEventListener(kind, (message) => onEvent(kind, message));
    return source;
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().slice(11, 23);
  }

  function fmtLatLon(p) {
    return `${p.lat_deg.toFixed(2)}°N ${p.lon_deg.toFixed(2)}°E`;
  }

  // What the browser tests read (the page shows the same in its DOM).
  window.trilink = {
    state,
    seenEventIds: () => [...state.seen],
    seenKeys: () => [...state.keys],
    counts: () => ({ ...state.counts }),
    ready: false,
  };

  setView();
  renderCounts();
  const source = connect();
  window.trilink.source = source;
  Promise.all([loadHealth(), loadLand(), loadAreas()]).finally(() => {
    window.trilink.ready = true;
  });
  pollLatency();
  // A timer rather than requestAnimationFrame: a page in a background tab keeps its picture
  // current (browsers pause animation frames there), at most five redraws a second.
  setInterval(render, 200);
})();
