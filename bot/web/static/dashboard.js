// The KPI dashboard (bot/web/dashboard.py): fetches /api/kpis and draws its charts as SVG, with no library.
// Every text that comes from the records (intent names above all) is set with textContent, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(width, height) {
  return svgEl("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img"});
}

const pct = (value) => (value === null || value === undefined) ? "—" : `${(value * 100).toFixed(1)}%`;
const num = (value, digits = 1) => (value === null || value === undefined) ? "—" : Number(value).toFixed(digits);

// ---- the period ------------------------------------------------------------------------------------------------

function utcInputValue(date) {
  return date.toISOString().slice(0, 16);  // what <input type=datetime-local> shows, read here as UTC
}

function setDays(days) {
  const to = new Date(Math.ceil(Date.now() / 60000) * 60000 + 60000);  // the next minute: calls just ended count
  $("to").value = utcInputValue(to);
  $("from").value = utcInputValue(new Date(to.getTime() - days * 86400000));
}

function query() {
  const params = new URLSearchParams();
  if ($("from").value) params.set("from", $("from").value + "Z");
  if ($("to").value) params.set("to", $("to").value + "Z");
  if ($("bucket").value) params.set("bucket", $("bucket").value);
  params.set("include_console", $("include-console").checked ? "1" : "0");
  return params;
}

async function load() {
  $("status").textContent = "加载中 loading…";
  $("error").hidden = true;
  let response, body;
  try {
    response = await fetch(`/api/kpis?${query()}`, {credentials: "same-origin", cache: "no-store"});
    body = await response.json();
  } catch (error) {
    showError(`无法获取指标 cannot fetch the KPIs: ${error}`);
    return;
  }
  if (!response.ok) {
    showError(body && body.error ? body.error : `HTTP ${response.status}`);
    return;
  }
  render(body);
  $("status").textContent = `${body.period.from} – ${body.period.to}: ${body.calls} 通 calls` +
    (body.skipped ? `, ${body.skipped} damaged records skipped` : "") +
    (body.include_console ? " (test doors included)" : "");
  document.body.dataset.loaded = "1";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
}

// ---- drawing ---------------------------------------------------------------------------------------------------

function render(kpis) {
  renderTiles(kpis);
  outcomesChart($("chart-outcomes"), kpis.outcomes_over_time, kpis.bucket_s);
  barChart($("chart-containment"), kpis.containment.map((row) => ({
    label: row.intent, value: row.containment, text: `${pct(row.containment)} (${row.contained}/${row.calls})`,
  })), 1);
  const agent = [];
  for (const [name, data] of [["绿色通道 green", kpis.green_channel], ["老年 elderly", kpis.elderly]]) {
    for (const p of ["p50", "p90"]) {
      const value = data.reached_agent.percentiles[p];
      agent.push({label: `${name} ${p}`, value: value ?? null, cls: p === "p90" ? "bar p90" : "bar",
                  text: value === undefined ? `— (${data.handoffs} handoffs)` : `${num(value)} s (n=${data.reached_agent.n})`});
    }
  }
  barChart($("chart-agent"), agent, undefined,
           [["绿色通道 green", kpis.green_channel], ["老年 elderly", kpis.elderly]].map(([name, data]) =>
             `${name}: 接通 reached ${data.reached_agent.n}/${data.handoffs} handoffs, 未接通 unreached ` +
             `${data.unreached} (${pct(data.unreached_share)})`).join(" · "));
  const s = kpis.satisfaction;
  const labels = {"1": "满意 satisfied", "2": "一般 neutral", "3": "不满意 dissatisfied"};
  barChart($("chart-satisfaction"), Object.entries(labels).map(([score, label]) => ({
    label, value: s.answered ? s.scores[score] / s.answered : null, text: `${s.scores[score]}`,
  })), 1, `回答 answers ${s.answered} / 邀请 offered ${s.offered} · 老年满意 elderly ${pct(s.elderly_satisfied_share)}`);
  const v = kpis.voice_to_voice_ms;
  barChart($("chart-latency"), [...Object.entries(v.percentiles), ["max", v.max]].filter(([, value]) => value !== null)
    .map(([name, value]) => ({label: name, value, text: `${num(value, 0)} ms`})), undefined, `n=${v.n} turns`);
  barChart($("chart-rates"), [
    {label: "插话 barge-in / prompt", value: kpis.barge_in_rate, text: `${pct(kpis.barge_in_rate)} (${kpis.barge_ins}/${kpis.bot_prompts})`},
    {label: "无应答 no-input / wait", value: kpis.no_input_rate, text: `${pct(kpis.no_input_rate)} (${kpis.no_inputs})`},
    {label: "calls with barge-in", value: kpis.calls ? kpis.calls_with_barge_in / kpis.calls : null, text: `${kpis.calls_with_barge_in}`},
    {label: "calls with no-input", value: kpis.calls ? kpis.calls_with_no_input / kpis.calls : null, text: `${kpis.calls_with_no_input}`},
  ], 1);
}

function renderTiles(kpis) {
  const tiles = [
    ["kpi-service-share", "智能服务占比", pct(kpis.service_share), `${kpis.bot_served}/${kpis.answered} answered`],
    ["kpi-resolution-rate", "智能交互解决率", pct(kpis.resolution_rate),
     `${kpis.resolved}/${kpis.attempted}; repeats ${kpis.repeat_calls}; 24 h open ${kpis.window_open}`],
    ["kpi-calls", "来电 calls", String(kpis.calls),
     Object.entries(kpis.by_channel).map(([channel, n]) => `${channel} ${n}`).join(" · ") || "—"],
    ["kpi-green", "绿色通道接通 p50", kpis.green_channel.reached_agent.n ? `${num(kpis.green_channel.reached_agent.percentiles.p50)} s` : "—",
     `p90 ${num(kpis.green_channel.reached_agent.percentiles.p90)} s; reached ${kpis.green_channel.reached_agent.n}/${kpis.green_channel.handoffs}`],
    ["kpi-satisfaction", "满意度 satisfied", pct(kpis.satisfaction.satisfied_share), `${kpis.satisfaction.answered} answers`],
    ["kpi-latency", "时延 p95", kpis.voice_to_voice_ms.n ? `${num(kpis.voice_to_voice_ms.percentiles.p95, 0)} ms` : "—",
     `p50 ${num(kpis.voice_to_voice_ms.percentiles.p50, 0)} ms`],
  ];
  $("tiles").replaceChildren(...tiles.map(([id, name, value, detail]) => {
    const tile = el("div", {class: "tile", id});
    tile.append(el("div", {class: "name"}, name), el("div", {class: "value"}, value), el("div", {class: "detail"}, detail));
    return tile;
  }));
}

function empty(container, text = "无数据 no data in this period") {
  container.replaceChildren(el("p", {class: "empty"}, text));
}

// Horizontal bars: rows of {label, value, text, cls}; `max` the value of a full bar (default: the largest).
function barChart(container, rows, max, caption) {
  if (!rows.length || rows.every((row) => row.value === null)) {
    empty(container, caption ? `无数据 no data · ${caption}` : undefined);
    return;
  }
  const top = max ?? Math.max(...rows.map((row) => row.value ?? 0), 1e-9);
  const labelW = 170, barW = 250, textW = 130, rowH = 22, height = rows.length * rowH + (caption ? 24 : 6);
  const chart = svg(labelW + barW + textW, height);
  rows.forEach((row, i) => {
    const y = i * rowH + 4;
    chart.append(svgEl("text", {x: labelW - 6, y: y + 13, "text-anchor": "end"}, row.label.slice(0, 28)));
    chart.append(svgEl("rect", {class: "track", x: labelW, y, width: barW, height: rowH - 6}));
    const width = row.value === null ? 0 : Math.max(0, Math.min(1, row.value / top)) * barW;
    chart.append(svgEl("rect", {class: row.cls || "bar", x: labelW, y, width: width.toFixed(1), height: rowH - 6}));
    chart.append(svgEl("text", {x: labelW + barW + 6, y: y + 13}, row.text));
  });
  if (caption) chart.append(svgEl("text", {x: 4, y: height - 6}, caption));
  container.replaceChildren(chart);
}

// Stacked bars per bucket (served / handoff / abandoned) and the resolved calls as a line.
function outcomesChart(container, buckets, bucketS) {
  if (!buckets.some((b) => b.served_by_bot + b.handoff + b.abandoned)) {
    empty(container);
    return;
  }
  const W = 900, H = 240, left = 40, bottom = 40, top = 24, plotW = W - left - 10, plotH = H - top - bottom;
  const peak = Math.max(...buckets.map((b) => b.served_by_bot + b.handoff + b.abandoned), 1);
  const step = plotW / buckets.length, barW = Math.max(1, step * 0.7);
  const y = (value) => top + plotH - (value / peak) * plotH;
  const chart = svg(W, H);
  for (const tick of [0, 0.5, 1]) {
    const value = Math.round(peak * tick);
    chart.append(svgEl("line", {class: "grid", x1: left, x2: W - 10, y1: y(value), y2: y(value)}));
    chart.append(svgEl("text", {x: left - 4, y: y(value) + 4, "text-anchor": "end"}, String(value)));
  }
  chart.append(svgEl("line", {class: "axis", x1: left, x2: W - 10, y1: top + plotH, y2: top + plotH}));
  const points = [];
  const labelEvery = Math.ceil(buckets.length / 12);
  buckets.forEach((bucket, i) => {
    const x = left + i * step + (step - barW) / 2;
    let base = 0;
    for (const [cls, value] of [["served", bucket.served_by_bot], ["handoff", bucket.handoff], ["abandoned", bucket.abandoned]]) {
      if (!value) continue;
      const rect = svgEl("rect", {class: cls, x: x.toFixed(1), y: y(base + value).toFixed(1), width: barW.toFixed(1),
                                  height: (y(base) - y(base + value)).toFixed(1)});
      rect.append(svgEl("title", {}, `${bucket.start} ${cls}: ${value}`));
      chart.append(rect);
      base += value;
    }
    points.push([x + barW / 2, y(bucket.resolved)]);
    if (i % labelEvery === 0) {
      const label = bucketS >= 86400 ? bucket.start.slice(5, 10) : bucket.start.slice(5, 16).replace("T", " ");
      chart.append(svgEl("text", {x: (x + barW / 2).toFixed(1), y: H - bottom + 16, "text-anchor": "middle"}, label));
    }
  });
  chart.append(svgEl("polyline", {class: "resolved", points: points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ")}));
  for (const [px, py] of points) chart.append(svgEl("circle", {class: "resolved-dot", cx: px.toFixed(1), cy: py.toFixed(1), r: 2.5}));
  let lx = left;
  for (const [cls, name] of [["served", "机器人服务 served"], ["handoff", "转人工 handoff"], ["abandoned", "放弃 abandoned"], ["resolved-dot", "解决 resolved"]]) {
    chart.append(svgEl("rect", {class: cls, x: lx, y: 6, width: 10, height: 10}));
    chart.append(svgEl("text", {class: "legend", x: lx + 14, y: 15}, name));
    lx += 150;
  }
  container.replaceChildren(chart);
}

// ---- wiring ----------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  setDays(7);
  $("period").addEventListener("submit", (event) => { event.preventDefault(); load(); });
  $("include-console").addEventListener("change", load);
  $("bucket").addEventListener("change", load);
  for (const button of document.querySelectorAll(".quick button")) {
    button.addEventListener("click", () => { setDays(Number(button.dataset.days)); load(); });
  }
  load();
});
