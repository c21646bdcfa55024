/* ovmweb metrics: graphs (uPlot, from npm, served from node_modules like noVNC) on the
 * VM, server and repository pages, and sparklines in the VM and server tables.
 *
 * The data comes from the API (/api/v1/<kind>s/<id>/metrics/?range=..., and
 * /api/v1/<kind>s/sparklines/?ids=...), so a page shows exactly what a script would
 * read, under the same permission check. The live feed (app.js) only says that a
 * round of samples was stored (topics metrics.vm, metrics.server, metrics.repository);
 * the page then re-reads what it shows. Fragments that htmx swaps in (a VM's detail
 * row, a refreshed table row) are picked up on htmx:load. */
(function () {
  "use strict";

  var COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"];
  // Series drawn together, one chart per group (names as in ovmweb/metrics/series.py).
  var GROUPS = {
    vm: [["cpu"], ["mem_actual", "mem_used"], ["disk_rd", "disk_wr"], ["disk_rd_ops", "disk_wr_ops"], ["net_rx", "net_tx"]],
    server: [["cpu"], ["mem_free", "mem_total"], ["vm_count"]],
    repository: [["capacity", "allocation", "free"]]
  };
  var SLOW_REFRESH = 60000;  // day and month change once a minute at most: re-read them that often
  var panels = [];
  var sparkCache = { vm: {}, server: {} };

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function human(value, unit) {
    if (value == null || isNaN(value)) return "—";
    if (unit === "%") return value.toFixed(1) + " %";
    if (unit.indexOf("bytes") === 0) {
      var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], i = 0, v = Math.abs(value);
      while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
      return (value < 0 ? "-" : "") + v.toFixed(v >= 100 || i === 0 ? 0 : 1) + " " + units[i] + (unit === "bytes/s" ? "/s" : "");
    }
    return (Math.round(value * 10) / 10) + " " + unit;
  }

  // ---------------------------------------------------------------- graphs
  function info(data, name) {
    for (var i = 0; i < data.series.length; i++) if (data.series[i].name === name) return data.series[i];
    return { name: name, unit: "", label: name };
  }

  function makeChart(panel, group, data) {
    var unit = info(data, group[0]).unit;
    var box = document.createElement("figure");
    box.className = "metrics-chart";
    box.setAttribute("data-series", group.join(" "));
    var caption = document.createElement("figcaption");
    box.appendChild(caption);
    panel.charts.appendChild(box);
    var series = [{}];
    group.forEach(function (name, i) {
      series.push({
        label: info(data, name).label,
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        value: function (u, v) { return human(v, unit); }
      });
    });
    var opts = {
      width: Math.max(260, Math.min(panel.el.clientWidth - 24, 560)),
      height: 150,
      series: series,
      axes: [{}, { size: 70, values: function (u, ticks) { return ticks.map(function (t) { return human(t, unit); }); } }],
      scales: unit === "%" ? { y: { range: [0, 100] } } : {}
    };
    var chart = { box: box, caption: caption, group: group, unit: unit, plot: null };
    chart.plot = new window.uPlot(opts, columns(data, group), box);
    return chart;
  }

  function columns(data, group) {
    return [data.timestamps].concat(group.map(function (name) { return data.values[name] || []; }));
  }

  function latest(values) {
    for (var i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
    return null;
  }

  function draw(panel, data) {
    var groups = GROUPS[panel.kind] || [];
    if (!panel.built) {
      panel.charts.innerHTML = "";
      panel.list = groups.map(function (group) { return makeChart(panel, group, data); });
      panel.built = true;
    } else {
      panel.list.forEach(function (chart) { chart.plot.setData(columns(data, chart.group)); });
    }
    panel.list.forEach(function (chart) {
      // The newest figures as text: what the chart shows, readable without it.
      chart.caption.textContent = chart.group.map(function (name) {
        return info(data, name).label + ": " + human(latest(data.values[name] || []), chart.unit);
      }).join(" · ");
    });
    panel.el.setAttribute("data-points", String(data.timestamps.length));
    panel.empty.hidden = data.timestamps.length > 0;
  }

  function load(panel) {
    panel.fetchedAt = Date.now();
    return getJson(panel.url + "?range=" + encodeURIComponent(panel.range)).then(function (data) {
      if (panel.el.isConnected) draw(panel, data);
    }).catch(function () { /* the next round tries again */ });
  }

  function setRange(panel, range) {
    panel.range = range;
    panel.el.querySelectorAll("[data-metrics-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-metrics-range") === range ? "true" : "false");
    });
    load(panel);
  }

  function initPanel(el) {
    if (el.hasAttribute("data-metrics-ready") || !window.uPlot) return;
    el.setAttribute("data-metrics-ready", "");
    var panel = {
      el: el,
      kind: el.getAttribute("data-metrics-kind"),
      url: el.getAttribute("data-metrics-url"),
      range: "hour",
      charts: el.querySelector(".metrics-charts"),
      empty: el.querySelector(".metrics-empty"),
      built: false,
      fetchedAt: 0
    };
    el.addEventListener("click", function (ev) {
      var b = ev.target.closest("[data-metrics-range]");
      if (b) setRange(panel, b.getAttribute("data-metrics-range"));
    });
    panels.push(panel);
    setRange(panel, "hour");
  }

  // ---------------------------------------------------------------- sparklines
  function sparkSvg(values) {
    var w = 80, h = 18, points = [];
    var n = values.length;
    values.forEach(function (v, i) {
      if (v == null) return;
      var x = n > 1 ? (i / (n - 1)) * w : w;
      var y = h - (Math.max(0, Math.min(100, v)) / 100) * (h - 2) - 1;
      points.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    var last = latest(values);
    return '<svg width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + " " + h + '" aria-hidden="true">' +
      '<polyline fill="none" stroke="' + COLORS[0] + '" stroke-width="1.2" points="' + points.join(" ") + '"/></svg>' +
      '<span class="spark-value">' + (last == null ? "" : Math.round(last) + " %") + "</span>";
  }

  function drawSpark(el) {
    var kind = el.getAttribute("data-spark-kind"), id = el.getAttribute("data-spark-id");
    var values = (sparkCache[kind] || {})[id];
    if (!values) return;
    el.innerHTML = sparkSvg(values);
    el.setAttribute("data-points", String(values.length));
    var last = latest(values);
    el.title = last == null ? "" : "CPU " + Math.round(last) + " %";
  }

  function loadSparks(kind) {
    var els = document.querySelectorAll('[data-spark-kind="' + kind + '"]');
    if (!els.length) return;
    var ids = [];
    els.forEach(function (el) { ids.push(el.getAttribute("data-spark-id")); });
    getJson("/api/v1/" + kind + "s/sparklines/?ids=" + ids.slice(0, 200).join(",")).then(function (data) {
      Object.keys(data.values).forEach(function (id) { sparkCache[kind][id] = data.values[id]; });
      document.querySelectorAll('[data-spark-kind="' + kind + '"]').forEach(drawSpark);
    }).catch(function () { /* the next round tries again */ });
  }

  // ---------------------------------------------------------------- wiring
  function within(root, selector) {
    root = root && root.querySelectorAll ? root : document;
    var found = Array.prototype.slice.call(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  }

  function scan(root) {
    within(root, "[data-metrics-kind]").forEach(initPanel);
    var fresh = {};
    within(root, "[data-spark-kind]").forEach(function (el) {
      var kind = el.getAttribute("data-spark-kind");
      if ((sparkCache[kind] || {})[el.getAttribute("data-spark-id")]) drawSpark(el);
      else fresh[kind] = true;
    });
    Object.keys(fresh).forEach(loadSparks);
  }

  function onRound(kind) {
    panels = panels.filter(function (p) { return p.el.isConnected; });
    panels.forEach(function (panel) {
      if (panel.kind !== kind) return;
      if (panel.range !== "hour" && Date.now() - panel.fetchedAt < SLOW_REFRESH) return;
      load(panel);
    });
    loadSparks(kind);
  }

  document.addEventListener("ovmweb:live", function (ev) {
    var topic = (ev.detail && ev.detail.topic) || "";
    if (topic.indexOf("metrics.") === 0) onRound(topic.slice(8));
  });
  document.addEventListener("htmx:load", function (ev) { scan(ev.target); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { scan(); });
  else scan();
})();
