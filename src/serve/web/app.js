// The M2SA web page: pick or drop an image, ask; follow-up questions go to the same session (the server keeps the
// image's encodings). Everything is served by `m2sa serve` itself; nothing is fetched from elsewhere.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { file: null, session: null, busy: false, result: null };

  fetch("/v1/models").then((r) => r.json()).then((j) => {
    if (j.data && j.data[0]) $("model").textContent = j.data[0].id;
  }).catch(() => {});

  function setStatus(text, error) {
    $("status").textContent = text;
    $("status").className = error ? "error" : "muted";
  }

  function useFile(file) {
    if (!file) return;
    if (!/^image\/(png|jpeg)$/.test(file.type)) {
      setStatus("Choose a PNG or JPEG image (got " + (file.type || "an unknown type") + ").", true);
      return;
    }
    state.file = file;
    state.session = null;  // a new image starts a new conversation
    $("conversation").innerHTML = "";
    $("result").hidden = true;
    $("overlay-box").hidden = true;
    $("layers").innerHTML = "";
    const url = URL.createObjectURL(file);
    $("base").src = url;
    $("stage").hidden = false;
    $("drop-hint").hidden = true;
    $("ask").disabled = false;
    document.body.dataset.state = "image";
    setStatus("Image: " + file.name + ". Ask a question.");
  }

  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("click", (e) => { if (e.target === drop || e.target.id === "drop-hint") $("file").click(); });

  async function postJson(url, options) {
    const r = await fetch(url, options);
    let j = null;
    try { j = await r.json(); } catch (e) { throw new Error("HTTP " + r.status); }
    if (!r.ok) throw new Error((j.error && j.error.message) || ("HTTP " + r.status));
    return j;
  }

  async function ensureSession() {
    if (state.session) return state.session;
    const form = new FormData();
    form.append("image", state.file, state.file.name);
    const j = await postJson("/v1/sessions", { method: "POST", body: form });
    state.session = j.session_id;
    return state.session;
  }

  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  // The answer with each [SEG] as a numbered swatch and each target's phrase in its mask's colour.
  function renderAnswer(answer, targets) {
    const parts = answer.split("[SEG]");
    let html = "";
    for (let i = 0; i < parts.length; i++) {
      let text = escapeHtml(parts[i]);
      const t = targets[i];
      if (t && t.phrase) {
        const p = escapeHtml(t.phrase);
        const at = text.lastIndexOf(p);
        if (at >= 0) text = text.slice(0, at) + '<span class="phrase" style="background:' + t.color + '">' + p + "</span>" + text.slice(at + p.length);
      }
      html += text;
      if (i < parts.length - 1) {
        const color = t ? t.color : "#666";
        html += '<span class="seg" style="background:' + color + '" title="mask ' + i + '">' + i + "</span>";
      }
    }
    return html;
  }

  function hexToRgb(hex) {
    const v = parseInt(hex.slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }

  // A mask PNG (0 / 255) as a tinted transparent layer.
  function maskLayer(target) {
    return new Promise((resolve) => {
      const img = new Image();
      img.onload = () => {
        const c = document.createElement("canvas");
        c.width = img.naturalWidth;
        c.height = img.naturalHeight;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height);
        const [r, gg, b] = hexToRgb(target.color);
        for (let i = 0; i < d.data.length; i += 4) {
          const on = d.data[i] > 127;
          d.data[i] = r; d.data[i + 1] = gg; d.data[i + 2] = b; d.data[i + 3] = on ? 130 : 0;
        }
        g.putImageData(d, 0, 0);
        c.dataset.index = target.index;
        resolve(c);
      };
      img.onerror = () => resolve(null);
      img.src = "data:image/png;base64," + target.mask.data;
    });
  }

  async function show(j) {
    state.result = j;
    $("answer").innerHTML = renderAnswer(j.answer, j.targets);
    const list = $("targets");
    list.innerHTML = "";
    $("layers").innerHTML = "";
    for (const t of j.targets) {
      const li = document.createElement("li");
      const name = t.phrase || "(no phrase)";
      li.innerHTML = '<input type="checkbox" class="mask-toggle" checked data-index="' + t.index + '">' +
        '<span class="swatch" style="background:' + t.color + '"></span>' +
        "<span>" + t.index + ": " + escapeHtml(name) + ' <span class="muted">' + (t.area || 0) + " px</span></span>";
      if (t.mask) {
        const a = document.createElement("a");
        a.textContent = "mask PNG";
        a.href = "data:image/png;base64," + t.mask.data;
        a.download = "mask_" + t.index + (t.phrase ? "_" + t.phrase.replace(/[^a-z0-9]+/gi, "-").toLowerCase() : "") + ".png";
        li.appendChild(a);
        const layer = await maskLayer(t);
        if (layer) $("layers").appendChild(layer);
      }
      list.appendChild(li);
    }
    list.querySelectorAll(".mask-toggle").forEach((box) => box.addEventListener("change", () => {
      const layer = $("layers").querySelector('canvas[data-index="' + box.dataset.index + '"]');
      if (layer) layer.style.display = box.checked ? "" : "none";
    }));
    const blob = new Blob([JSON.stringify(j, null, 2)], { type: "application/json" });
    $("download-json").href = URL.createObjectURL(blob);
    $("result").hidden = false;
    document.body.dataset.masks = String(j.targets.length);
    if (j.overlay) {
      $("overlay").onload = () => { document.body.dataset.state = "answered"; };
      $("overlay").src = j.overlay;
      $("overlay-box").hidden = false;
    } else {
      document.body.dataset.state = "answered";
    }
  }

  $("ask-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = $("question").value.trim();
    if (!state.file || state.busy) return;
    if (!question) { setStatus("Type a question first.", true); return; }
    state.busy = true;
    $("ask").disabled = true;
    document.body.dataset.state = "asking";
    setStatus("Thinking...");
    try {
      const id = await ensureSession();
      const body = { question: question, mask_format: "png", overlay: true,
                     max_new_tokens: parseInt($("max-tokens").value, 10) || 256 };
      const j = await postJson("/v1/sessions/" + id + "/ask", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const turn = document.createElement("div");
      turn.className = "turn";
      turn.innerHTML = '<div class="q">' + escapeHtml(question) + '</div><div class="a">' + escapeHtml(j.answer) + "</div>";
      $("conversation").appendChild(turn);
      await show(j);
      setStatus("Round " + j.round + ": " + j.targets.length + " mask" + (j.targets.length === 1 ? "" : "s") +
                ", " + (j.timings.server_total_s || 0).toFixed(2) + " s. Ask a follow-up about the same image.");
      $("question").value = "";
    } catch (err) {
      if (/unknown session/.test(err.message)) state.session = null;
      document.body.dataset.state = "error";
      setStatus(err.message, true);
    } finally {
      state.busy = false;
      $("ask").disabled = false;
    }
  });
})();
