"""The one page ``--serve`` serves at ``/``: plain HTML, CSS and a few lines of script, no plugin
and no build step. The overlay is an ``<img>`` on the MJPEG stream; the figures and the class
chart come from ``/stats.json`` once a second; the buttons post to ``/control``. Every request
carries the page's own ``?token=`` (when the run needs one)."""
from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>rtseg live</title>
<style>
 body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#111;color:#eee;display:flex;flex-wrap:wrap}
 #left{flex:3 1 480px;padding:8px} #right{flex:1 1 260px;padding:8px;min-width:240px}
 #view{width:100%;height:auto;background:#000;display:block;min-height:120px}
 .row{margin:4px 0} .k{color:#999} button{background:#333;color:#eee;border:1px solid #555;padding:4px 8px;margin:2px;cursor:pointer}
 button.on{background:#2a6;border-color:#3b7} #bar{height:6px;background:#333} #bar div{height:6px;background:#2a6;width:0}
 .sw{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle;border:1px solid #000}
 #legend div{white-space:nowrap} h1{font-size:16px;margin:0 0 6px}
</style></head><body>
<div id="left"><img id="view" alt="the live overlay"><div id="bar"><div></div></div>
<div class="row" id="buttons"></div></div>
<div id="right"><h1>rtseg live</h1>
<div class="row"><span class="k">source</span> <span id="source">-</span></div>
<div class="row"><span class="k">engine</span> <span id="engine">-</span></div>
<div class="row"><span id="fps">-</span> fps, latency <span id="latency">-</span> ms</div>
<div class="row"><span class="k">frames</span> <span id="frames">-</span> <span id="state"></span></div>
<canvas id="chart" width="240" height="180"></canvas>
<div id="legend"></div></div>
<script>
const q = new URLSearchParams(location.search), token = q.get("token");
const withToken = p => token ? p + (p.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : p;
document.getElementById("view").src = withToken("stream.mjpg");
let look = {};
function control(args) {
  fetch(withToken("control"), {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
        body: new URLSearchParams(args)}).then(r => r.ok ? r.json() : null).then(l => { if (l) { look = l; buttons(); } });
}
function button(label, on, args) {
  const b = document.createElement("button"); b.textContent = label; if (on) b.className = "on";
  b.onclick = () => control(args); return b;
}
let paused = false, live = false;
function buttons() {
  const box = document.getElementById("buttons"); box.replaceChildren();
  for (const v of ["overlay", "mask", "side-by-side", "confidence"]) box.append(button(v, look.view === v, {view: v}));
  box.append(button("alpha -", false, {alpha: Math.max(0, Math.round(((look.alpha || 0.5) - 0.1) * 10) / 10)}));
  box.append(button("alpha +", false, {alpha: Math.min(1, Math.round(((look.alpha || 0.5) + 0.1) * 10) / 10)}));
  box.append(button("legend", look.legend, {legend: look.legend ? "0" : "1"}));
  if (live) box.append(button(paused ? "resume" : "pause", paused, {pause: paused ? "0" : "1"}));
}
function chart(classes) {
  const c = document.getElementById("chart"), g = c.getContext("2d"); g.clearRect(0, 0, c.width, c.height);
  const n = Math.max(1, classes.length), w = c.width / n;
  classes.forEach((k, i) => { const h = Math.round(k.share * (c.height - 4));
    g.fillStyle = `rgb(${k.rgb[0]},${k.rgb[1]},${k.rgb[2]})`; g.fillRect(i * w + 1, c.height - h, Math.max(1, w - 2), h); });
  document.getElementById("legend").replaceChildren(...classes.map(k => { const d = document.createElement("div");
    d.innerHTML = `<span class="sw" style="background:rgb(${k.rgb.join(",")})"></span>`;
    d.append(`${k.name} ${(100 * k.share).toFixed(1)}%`); return d; }));
}
async function tick() {
  try {
    const s = await (await fetch(withToken("stats.json"))).json();
    document.getElementById("source").textContent = s.source;
    document.getElementById("engine").textContent = `${s.runtime} ${s.precision || ""}, ${s.input_size.join("x")}`;
    document.getElementById("fps").textContent = s.fps.toFixed(1);
    document.getElementById("latency").textContent = s.latency_ms.toFixed(0);
    document.getElementById("frames").textContent = s.total ? `${s.frames} / ${s.total}` : `${s.frames}` +
      (s.dropped ? ` (${s.dropped} stale dropped)` : "");
    document.getElementById("state").textContent = s.ended ? "(ended)" : (s.paused ? "(paused)" : "");
    document.querySelector("#bar div").style.width = s.total ? `${Math.min(100, 100 * s.frames / s.total)}%` : "0";
    const changed = JSON.stringify(look) !== JSON.stringify(s.look) || paused !== s.paused || live !== s.live;
    look = s.look; paused = s.paused; live = s.live; if (changed) buttons();
    chart(s.classes);
  } catch (e) { document.getElementById("state").textContent = "(not reachable)"; }
  setTimeout(tick, 1000);
}
buttons(); tick();
</script></body></html>
"""
