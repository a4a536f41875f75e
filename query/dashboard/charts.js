/* Small hand-written canvas charts for the Switchboard dashboard: a line chart of
   time series and a horizontal bar chart. No dependencies, nothing fetched.
   After drawing, each canvas says what it drew: data-drawn="1" and data-points=N. */
"use strict";

const Charts = (() => {
  const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#f778ba", "#39c5cf", "#ff7b72"];
  const FONT = '11px system-ui, "DejaVu Sans", sans-serif';
  const MUTED = "#8a98a6", GRID = "#2a3540", TEXT = "#d8e0e8";

  // A crisp canvas at the device's pixel ratio, sized to its CSS box.
  function setup(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = Number(canvas.getAttribute("height")) || 240;
    canvas.style.height = height + "px";
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;
    return { ctx, width, height };
  }

  function done(canvas, points) {
    canvas.dataset.points = String(points);
    canvas.dataset.drawn = "1";
  }

  function empty(canvas, message) {
    const { ctx, width, height } = setup(canvas);
    ctx.fillStyle = MUTED;
    ctx.textAlign = "center";
    ctx.fillText(message || "no data yet", width / 2, height / 2);
    done(canvas, 0);
  }

  function timeLabel(ms, spanMs) {
    const iso = new Date(ms).toISOString();
    if (spanMs > 2 * 86400e3) return iso.slice(5, 10);
    return spanMs > 600e3 ? iso.slice(11, 16) : iso.slice(11, 19);
  }

  /* series: [{name, points: [[epochMs, value], ...]}]; opts: {min, max, format, line} */
  function line(canvas, series, opts = {}) {
    const all = series.flatMap((s) => s.points);
    if (!all.length) return empty(canvas);
    const { ctx, width, height } = setup(canvas);
    const pad = { left: 44, right: 12, top: 22, bottom: 22 };
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]).filter((v) => v !== null);
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (x0 === x1) { x0 -= 60e3; x1 += 60e3; }
    let y0 = opts.min ?? Math.min(...ys), y1 = opts.max ?? Math.max(...ys);
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const px = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
    const py = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
    const fmt = opts.format || ((v) => String(Math.round(v * 100) / 100));

    ctx.strokeStyle = GRID; ctx.fillStyle = MUTED; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const v = y0 + ((y1 - y0) * i) / 4, y = Math.round(py(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.left, y); ctx.lineTo(width - pad.right, y); ctx.stroke();
      ctx.fillText(fmt(v), pad.left - 6, y);
    }
    ctx.textBaseline = "top";
    for (let i = 0; i <= 4; i++) {
      const x = x0 + ((x1 - x0) * i) / 4;
      ctx.textAlign = i === 0 ? "left" : i === 4 ? "right" : "center";
      ctx.fillText(timeLabel(x, x1 - x0), px(x), height - pad.bottom + 6);
    }
    if (opts.line !== undefined) {  // a reference line, e.g. the MOS floor
      ctx.strokeStyle = "#f85149"; ctx.setLineDash([4, 4]);
      ctx.beginPath(); ctx.moveTo(pad.left, py(opts.line)); ctx.lineTo(width - pad.right, py(opts.line));
      ctx.stroke(); ctx.setLineDash([]);
    }

    let drawn = 0, legendX = pad.left;
    series.forEach((s, i) => {
      const color = PALETTE[i % PALETTE.length];
      ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2;
      ctx.beginPath();
      let started = false;
      for (const [x, y] of s.points) {
        if (y === null) { started = false; continue; }
        if (started) ctx.lineTo(px(x), py(y)); else ctx.moveTo(px(x), py(y));
        started = true;
      }
      ctx.stroke();
      for (const [x, y] of s.points) {
        if (y === null) continue;
        ctx.beginPath(); ctx.arc(px(x), py(y), 3, 0, 2 * Math.PI); ctx.fill();
        drawn++;
      }
      ctx.textAlign = "left"; ctx.textBaseline = "top";
      ctx.fillRect(legendX, 4, 10, 10);
      ctx.fillStyle = TEXT;
      const label = s.name || "(none)";
      ctx.fillText(label, legendX + 14, 3);
      legendX += 24 + ctx.measureText(label).width;
    });
    done(canvas, drawn);
  }

  /* bars: [{label, value, color?, note?}] drawn horizontally, largest scale first */
  function bars(canvas, items, opts = {}) {
    if (!items.length) return empty(canvas);
    const { ctx, width, height } = setup(canvas);
    const labelWidth = opts.labelWidth || 96;
    const max = Math.max(1, ...items.map((b) => b.value));
    // room on the right for the longest value and note, so they are never cut off
    const tail = 16 + Math.max(...items.map((b) => ctx.measureText(b.value + (b.note ? "  " + b.note : "")).width));
    const rowH = Math.min(30, (height - 8) / items.length);
    ctx.textBaseline = "middle";
    items.forEach((b, i) => {
      const y = 4 + i * rowH, barH = Math.max(4, rowH - 8);
      const w = (Math.max(40, width - labelWidth - tail) * b.value) / max;
      ctx.fillStyle = TEXT; ctx.textAlign = "right";
      ctx.fillText(b.label, labelWidth - 8, y + rowH / 2);
      ctx.fillStyle = b.color || PALETTE[i % PALETTE.length];
      ctx.fillRect(labelWidth, y + (rowH - barH) / 2, Math.max(w, b.value ? 2 : 0), barH);
      ctx.fillStyle = MUTED; ctx.textAlign = "left";
      ctx.fillText(String(b.value) + (b.note ? "  " + b.note : ""), labelWidth + w + 6, y + rowH / 2);
    });
    done(canvas, items.length);
  }

  return { line, bars, empty, PALETTE };
})();
