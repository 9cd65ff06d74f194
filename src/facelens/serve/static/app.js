// facelens web page: photo upload and live webcam analysis. Plain JS, no external assets.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const TASKS = ["age", "gender", "race", "attributes"];
  const BOX = "#2ecc71";
  const LANDMARK = "#ffc400";
  let missingTasks = [];

  // ---- settings ---------------------------------------------------------------------------------------------
  const keyInput = $("opt-api-key");
  keyInput.value = sessionStorage.getItem("facelens-api-key") || "";
  keyInput.addEventListener("change", () => sessionStorage.setItem("facelens-api-key", keyInput.value.trim()));

  function apiKey() {
    return keyInput.value.trim();
  }

  function queryString() {
    const q = new URLSearchParams();
    const score = parseFloat($("opt-min-score").value);
    if (!Number.isNaN(score)) q.set("min_score", String(Math.min(1, Math.max(0, score))));
    const most = parseInt($("opt-max-faces").value, 10);
    if (most > 0) q.set("max_faces", String(most));
    if ($("opt-full-size").checked) q.set("max_side", "0");
    return q.toString();
  }

  function authHeaders() {
    const key = apiKey();
    return key ? { "X-API-Key": key } : {};
  }

  function needKey(message) {
    $("settings").open = true;
    keyInput.focus();
    return message + " Enter the API key under Settings.";
  }

  // ---- server status ----------------------------------------------------------------------------------------
  async function checkServer() {
    const pill = $("server-status");
    try {
      const r = await fetch("/readyz", { cache: "no-store" });
      const body = await r.json();
      if (!r.ok) throw new Error(body.error ? body.error.message : "not ready");
      missingTasks = body.missing_tasks || [];
      pill.textContent = "ready";
      pill.dataset.state = "ready";
      const note = $("heads-note");
      if (missingTasks.length === TASKS.length) {
        note.textContent = "No attribute model is installed on this server: faces are detected, but age, gender, " +
          "ethnicity and attributes show as \u201cnot installed\u201d.";
        note.hidden = false;
      } else if (missingTasks.length) {
        note.textContent = "Not installed on this server: " + missingTasks.map(taskName).join(", ") + ".";
        note.hidden = false;
      }
    } catch (err) {
      pill.textContent = "server not ready: " + err.message;
      pill.dataset.state = "down";
    }
  }

  function taskName(t) {
    return t === "race" ? "ethnicity" : t;
  }

  // ---- tabs -------------------------------------------------------------------------------------------------
  function showTab(name) {
    for (const t of ["photo", "webcam"]) {
      $("tab-" + t).setAttribute("aria-selected", String(t === name));
      $("panel-" + t).hidden = t !== name;
    }
    if (name !== "webcam") cam.stop();
  }
  $("tab-photo").addEventListener("click", () => showTab("photo"));
  $("tab-webcam").addEventListener("click", () => showTab("webcam"));

  // ---- drawing ----------------------------------------------------------------------------------------------
  function caption(face, index) {
    const parts = ["#" + (index + 1)];
    if (face.age !== undefined) parts.push(Math.round(face.age) + "y");
    if (face.gender) parts.push(face.gender.label === "female" ? "F" : "M");
    if (face.race) parts.push(face.race.label);
    if (parts.length === 1) parts.push(face.score.toFixed(2));
    return parts.join(" ");
  }

  // Draw the faces of `result` (in pixels of a `srcW` x `srcH` image) onto a context of the canvas' size.
  function drawFaces(ctx, result, srcW, srcH) {
    const sx = ctx.canvas.width / srcW;
    const sy = ctx.canvas.height / srcH;
    const unit = Math.max(1, Math.max(ctx.canvas.width, ctx.canvas.height) / 640);
    ctx.lineWidth = 2 * unit;
    ctx.font = `${Math.round(13 * unit)}px system-ui, sans-serif`;
    ctx.textBaseline = "bottom";
    result.faces.forEach((f, i) => {
      const [x1, y1, x2, y2] = f.box;
      const x = x1 * sx, y = y1 * sy, w = (x2 - x1) * sx, h = (y2 - y1) * sy;
      ctx.strokeStyle = BOX;
      ctx.strokeRect(x, y, w, h);
      ctx.fillStyle = LANDMARK;
      for (const [px, py] of f.landmarks) {
        ctx.beginPath();
        ctx.arc(px * sx, py * sy, 2.2 * unit, 0, 2 * Math.PI);
        ctx.fill();
      }
      const text = caption(f, i);
      const tw = ctx.measureText(text).width + 8 * unit;
      const th = 17 * unit;
      const ty = y - th > 0 ? y : y + h + th;
      ctx.fillStyle = BOX;
      ctx.fillRect(x - ctx.lineWidth / 2, ty - th, tw, th);
      ctx.fillStyle = "#000";
      ctx.fillText(text, x + 4 * unit, ty - 2 * unit);
    });
  }

  // ---- faces table ------------------------------------------------------------------------------------------
  function cell(tr, content, className) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function absent(tr, task) {
    cell(tr, missingTasks.includes(task) ? "not installed" : "\u2014", "na");
  }

  const pct = (p) => Math.round(p * 100) + "%";

  function fillTable(result) {
    const tbody = $("faces-table").querySelector("tbody");
    tbody.replaceChildren();
    result.faces.forEach((f, i) => {
      const tr = document.createElement("tr");
      cell(tr, String(i + 1));
      cell(tr, f.score.toFixed(2));
      if (f.age !== undefined) {
        const [lo, hi] = f.age_interval;
        cell(tr, `${Math.round(f.age)} (${Math.round(lo)}\u2013${Math.round(hi)})`);
      } else absent(tr, "age");
      if (f.gender) cell(tr, `${f.gender.label} ${pct(f.gender.score)}`);
      else absent(tr, "gender");
      if (f.race) cell(tr, `${f.race.label} ${pct(f.race.scores[f.race.label])}`);
      else absent(tr, "race");
      if (f.attributes) {
        const span = document.createElement("span");
        Object.entries(f.attributes).sort((a, b) => b[1] - a[1]).slice(0, 5).forEach(([k, v]) => {
          const s = document.createElement("span");
          s.className = "attr";
          s.textContent = `${k.replace(/_/g, " ")} ${pct(v)}`;
          span.appendChild(s);
        });
        cell(tr, span);
      } else absent(tr, "attributes");
      tbody.appendChild(tr);
    });
    $("faces-table").hidden = result.faces.length === 0;
  }

  // ---- photo ------------------------------------------------------------------------------------------------
  let lastJson = null;
  let lastName = "result";

  function photoError(message) {
    $("photo-busy").hidden = true;
    $("photo-result").hidden = true;
    const box = $("photo-error");
    box.textContent = message;
    box.hidden = false;
  }

  async function errorMessage(r) {
    try {
      const body = await r.json();
      if (body.error) return body.error.message;
    } catch (_) { /* not JSON */ }
    return `the server answered ${r.status}`;
  }

  async function analyzeFile(file) {
    $("photo-error").hidden = true;
    $("photo-result").hidden = true;
    $("photo-busy").hidden = false;
    lastName = (file.name || "image").replace(/\.[^.]*$/, "");
    const form = new FormData();
    form.append("image", file, file.name || "image");
    let r;
    try {
      r = await fetch("/v1/analyze?" + queryString(), { method: "POST", body: form, headers: authHeaders() });
    } catch (err) {
      photoError("Could not reach the server: " + err.message);
      return;
    }
    if (!r.ok) {
      let msg = await errorMessage(r);
      if (r.status === 401) msg = needKey(msg);
      if (r.status === 503) msg += " (the server is busy; try again in a moment)";
      photoError(msg);
      return;
    }
    const result = await r.json();
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (_) {
      bitmap = null; // e.g. TIFF, which browsers cannot show: the table still lists the faces
    }
    showPhoto(result, bitmap);
  }

  function showPhoto(result, bitmap) {
    lastJson = result;
    $("photo-busy").hidden = true;
    $("photo-result").hidden = false;
    const n = result.faces.length;
    $("photo-summary").textContent = n === 0 ? "No face found" :
      `${n} face${n === 1 ? "" : "s"} found \u00b7 ${result.width}\u00d7${result.height}`;
    $("no-face").hidden = n !== 0;
    const canvas = $("photo-canvas");
    const ctx = canvas.getContext("2d");
    canvas.width = result.width;
    canvas.height = result.height;
    if (bitmap) ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    else {
      ctx.fillStyle = "#333";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
    }
    drawFaces(ctx, result, result.width, result.height);
    fillTable(result);
  }

  $("download-json").addEventListener("click", () => {
    if (!lastJson) return;
    const blob = new Blob([JSON.stringify(lastJson, null, 2) + "\n"], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = lastName + ".facelens.json";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });

  const input = $("file-input");
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) analyzeFile(input.files[0]);
    input.value = "";
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) analyzeFile(file);
  });
  // Dropping a file anywhere else must not make the browser navigate away to it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  // ---- webcam -----------------------------------------------------------------------------------------------
  const cam = {
    stream: null, ws: null, running: false, raf: 0, timer: 0,
    sentAt: 0, frameW: 0, frameH: 0, result: null, frames: 0, times: [],
    grab: document.createElement("canvas"),

    message(text) {
      const box = $("cam-message");
      box.textContent = text;
      box.hidden = !text;
    },

    async start() {
      this.message("");
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        this.message("This browser cannot use a camera here (a camera needs https or localhost).");
        return;
      }
      $("cam-start").disabled = true;
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({
          video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
        });
      } catch (err) {
        $("cam-start").disabled = false;
        const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
        this.message(denied ? "Camera access was denied. Allow the camera for this page and try again." :
          err && err.name === "NotFoundError" ? "No camera was found." : "Could not start the camera: " + err);
        return;
      }
      const video = $("cam-video");
      video.srcObject = this.stream;
      await video.play();
      this.stream.getVideoTracks().forEach((t) => t.addEventListener("ended", () => this.stop("The camera stopped.")));
      this.running = true;
      $("cam-canvas").hidden = false;
      $("cam-placeholder").hidden = true;
      this.frames = 0;
      this.times = [];
      this.result = null;
      $("cam-stop").disabled = false;
      this.connect();
      this.raf = requestAnimationFrame(() => this.render());
    },

    connect() {
      const proto = location.protocol === "https:" ? "wss://" : "ws://";
      const ws = new WebSocket(proto + location.host + "/v1/stream?" + queryString());
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data));
      ws.onclose = (ev) => {
        if (this.ws === ws && this.running) {
          this.stop(ev.code === 1008 ? "The server refused the stream: " + (ev.reason || "policy") :
            "The connection to the server closed.");
        }
      };
    },

    onMessage(msg) {
      if (msg.type === "hello") {
        this.serverFps = msg.max_fps;
        if (msg.auth_required) this.ws.send(JSON.stringify({ type: "auth", api_key: apiKey() }));
        else this.sendFrame();
      } else if (msg.type === "auth") {
        this.sendFrame();
      } else if (msg.type === "result") {
        const now = performance.now();
        this.result = msg.result;
        this.frames += 1;
        this.times.push(now);
        while (this.times.length > 1 && now - this.times[0] > 3000) this.times.shift();
        const fps = this.times.length > 1 ? (this.times.length - 1) * 1000 / (now - this.times[0]) : 0;
        $("cam-fps").textContent = fps ? fps.toFixed(1) : "\u2026";
        $("cam-latency").textContent = Math.round(now - this.sentAt) + " ms";
        $("cam-server").textContent = Math.round(msg.server_ms) + " ms";
        $("cam-faces").textContent = String(msg.result.faces.length);
        $("cam-frames").textContent = String(this.frames);
        this.scheduleNext(0);
      } else if (msg.type === "error") {
        const code = msg.error.code;
        if (code === "unauthorized") {
          this.stop(needKey(msg.error.message));
        } else if (msg.seq === null) {
          this.stop(msg.error.message);
        } else {
          if (code !== "busy") this.message(msg.error.message);
          this.scheduleNext(code === "busy" ? 250 : 500);
        }
      }
    },

    maxFps() {
      const asked = parseFloat($("cam-max-fps").value) || 10;
      return Math.max(1, Math.min(asked, this.serverFps || 30));
    },

    // The next frame leaves when the previous answer is in, no sooner than the frame-rate cap allows.
    scheduleNext(extraDelay) {
      if (!this.running) return;
      const wait = Math.max(extraDelay, 1000 / this.maxFps() - (performance.now() - this.sentAt));
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.sendFrame(), wait);
    },

    sendFrame() {
      if (!this.running || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      const video = $("cam-video");
      if (!video.videoWidth) {
        this.scheduleNext(100);
        return;
      }
      const scale = Math.min(1, 640 / Math.max(video.videoWidth, video.videoHeight));
      const w = Math.round(video.videoWidth * scale), h = Math.round(video.videoHeight * scale);
      this.grab.width = w;
      this.grab.height = h;
      this.grab.getContext("2d").drawImage(video, 0, 0, w, h);
      this.grab.toBlob((blob) => {
        if (!blob || !this.running || this.ws.readyState !== WebSocket.OPEN) return;
        this.frameW = w;
        this.frameH = h;
        this.sentAt = performance.now();
        this.ws.send(blob);
      }, "image/jpeg", 0.8);
    },

    render() {
      if (!this.running) return;
      const video = $("cam-video");
      const canvas = $("cam-canvas");
      if (video.videoWidth) {
        if (canvas.width !== video.videoWidth) canvas.width = video.videoWidth;
        if (canvas.height !== video.videoHeight) canvas.height = video.videoHeight;
        const ctx = canvas.getContext("2d");
        ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
        if (this.result) drawFaces(ctx, this.result, this.frameW, this.frameH);
      }
      this.raf = requestAnimationFrame(() => this.render());
    },

    stop(reason) {
      const wasRunning = this.running || this.stream;
      this.running = false;
      clearTimeout(this.timer);
      cancelAnimationFrame(this.raf);
      if (this.ws) {
        const ws = this.ws;
        this.ws = null;
        try { ws.close(1000, "stopped"); } catch (_) { /* already closed */ }
      }
      if (this.stream) {
        this.stream.getTracks().forEach((t) => t.stop());
        this.stream = null;
      }
      $("cam-video").srcObject = null;
      $("cam-canvas").hidden = true;
      $("cam-placeholder").hidden = false;
      $("cam-start").disabled = false;
      $("cam-stop").disabled = true;
      if (wasRunning && typeof reason === "string") this.message(reason);
    },
  };

  $("cam-start").addEventListener("click", () => cam.start());
  $("cam-stop").addEventListener("click", () => cam.stop());
  window.addEventListener("pagehide", () => cam.stop());
  window.addEventListener("beforeunload", () => cam.stop());

  // For tests and debugging: the last photo result.
  window.facelens = { lastResult: () => lastJson };
  checkServer();
})();
