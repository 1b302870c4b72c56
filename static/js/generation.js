// Generation pages: preset prompts, live progress (queue position, step, ETA), gallery, lightbox.
(function () {
  "use strict";

  // ---- Preset prompt ideas --------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var preset = event.target.closest("[data-preset]");
    if (!preset) { return; }
    var form = preset.closest("form") || document;
    var prompt = form.querySelector("textarea[name=prompt]");
    if (!prompt) { return; }
    prompt.value = preset.dataset.preset;
    form.querySelectorAll("[data-preset]").forEach(function (other) {
      other.setAttribute("aria-pressed", other === preset ? "true" : "false");
    });
    prompt.focus();
    prompt.setSelectionRange(prompt.value.length, prompt.value.length);
  });

  // ---- Lightbox: click or Enter on a photo; Esc closes, arrows move, focus comes back ----------
  var lightbox = null, current = null, opener = null;

  function photos() { return Array.prototype.slice.call(document.querySelectorAll("img[data-lightbox]")); }

  function show(img) {
    current = img;
    var list = photos(), index = list.indexOf(img);
    lightbox.querySelector("[data-lb-image]").src = img.src;
    lightbox.querySelector("[data-lb-image]").alt = img.alt;
    var figure = img.closest("figure"), badge = figure ? figure.querySelector(".badge") : null;
    lightbox.querySelector("[data-lb-caption]").textContent =
      "Photo " + (index + 1) + " of " + list.length + (badge ? " · " + badge.textContent : "");
    lightbox.querySelector("[data-lb-download]").href = img.dataset.download || img.src;
    lightbox.querySelector("[data-prev]").hidden = list.length < 2;
    lightbox.querySelector("[data-next]").hidden = list.length < 2;
  }

  function open(img) {
    lightbox = document.getElementById("lightbox");
    if (!lightbox) { return; }
    opener = img;
    show(img);
    lightbox.hidden = false;
    lightbox.classList.add("open");
    lightbox.querySelector("[data-close]").focus();
  }

  function close() {
    if (!lightbox || lightbox.hidden) { return; }
    lightbox.classList.remove("open");
    lightbox.hidden = true;
    if (opener && document.body.contains(opener)) { opener.focus(); }
  }

  function step(delta) {
    var list = photos(), index = list.indexOf(current);
    if (list.length) { show(list[(index + delta + list.length) % list.length]); }
  }

  document.addEventListener("click", function (event) {
    var img = event.target.closest("img[data-lightbox]");
    if (img) { open(img); return; }
    if (!lightbox || lightbox.hidden) { return; }
    if (event.target.closest("[data-close]") || event.target === lightbox) { close(); }
    else if (event.target.closest("[data-prev]")) { step(-1); }
    else if (event.target.closest("[data-next]")) { step(1); }
  });
  document.addEventListener("keydown", function (event) {
    var open_ = lightbox && !lightbox.hidden;
    if (open_) {
      if (event.key === "Escape") { event.preventDefault(); close(); }
      else if (event.key === "ArrowLeft") { step(-1); }
      else if (event.key === "ArrowRight") { step(1); }
      else if (event.key === "Tab") {
        // Keep focus inside the dialog while it is open.
        var focusable = Array.prototype.filter.call(lightbox.querySelectorAll("button, a[href]"),
                                                    function (node) { return !node.hidden; });
        var first = focusable[0], last = focusable[focusable.length - 1];
        if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
        else if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
      }
      return;
    }
    if ((event.key === "Enter" || event.key === " ") && event.target.matches && event.target.matches("img[data-lightbox]")) {
      event.preventDefault();
      open(event.target);
    }
  });

  // ---- Twin page: when enrollment finishes while the page is open, bring in the generate form --
  var twinEl = document.getElementById("twin"), panel = document.getElementById("generate-panel");
  if (twinEl && panel) {
    twinEl.addEventListener("twin:updated", function (event) {
      var twin = event.detail || {};
      if (twin.status !== "ready" || panel.dataset.ready !== "false" || panel.dataset.loading) { return; }
      panel.dataset.loading = "true";
      // The server renders the form (presets, limits, CSRF): fetch this page once and take the panel from it.
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("generate-panel");
          if (fresh) { panel.replaceWith(fresh); panel = fresh; }
        })
        .catch(function () { delete panel.dataset.loading; });
    });
  }

  // ---- Job page: live progress -------------------------------------------------------------
  var card = document.getElementById("job");
  if (!card) { return; }
  var field = function (name) { return document.querySelector('[data-field="' + name + '"]'); };
  var finished = ["succeeded", "failed", "cancelled"];
  var labels = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  var duration = window.twinsiteDuration;
  var csrf = card.querySelector("[name=csrfmiddlewaretoken]").value;
  var canChange = card.dataset.canChange === "true";
  // The rate this page observed; until it has seen a few steps, the server's start time stands in.
  var firstSeenAt = null, firstSeenStep = 0;

  function badgeFor(image) {
    var badge = document.createElement("span");
    if (image.identity_score === null || image.identity_score === undefined) {
      badge.className = "badge none";
      badge.textContent = "No face";
      badge.title = image.score_note || "No face was found in this photo, so it has no identity score.";
    } else {
      var score = image.identity_score;
      badge.className = "badge " + image.score_band;  // the bands are the server's (GeneratedImage.score_band)
      badge.textContent = "ID " + score.toFixed(2);
      badge.title = "Identity score: how much the face looks like your twin (cosine similarity, 1.00 = identical)";
      badge.setAttribute("aria-label", "Identity score " + score.toFixed(2));
    }
    return badge;
  }

  function figureFor(image, total) {
    var base = card.dataset.imageBase + image.number + "/";
    var fig = document.createElement("figure");
    fig.dataset.number = image.number;
    var img = document.createElement("img");
    img.src = base; img.alt = "Generated photo " + image.number + " of " + total; img.tabIndex = 0;
    img.width = image.width; img.height = image.height;
    img.setAttribute("data-lightbox", ""); img.dataset.download = base + "?download=1";
    var cap = document.createElement("figcaption");
    cap.appendChild(badgeFor(image));
    var actions = document.createElement("span");
    actions.className = "row";
    var link = document.createElement("a");
    link.className = "button small"; link.href = base + "?download=1"; link.textContent = "Download";
    link.setAttribute("download", "");
    actions.appendChild(link);
    if (canChange) {
      var form = document.createElement("form");
      form.method = "post"; form.action = base + "delete/";
      form.dataset.confirm = "Delete photo " + image.number + "? This cannot be undone.";
      var token = document.createElement("input");
      token.type = "hidden"; token.name = "csrfmiddlewaretoken"; token.value = csrf;
      var del = document.createElement("button");
      del.type = "submit"; del.className = "button small danger icon"; del.textContent = "✕";
      del.title = "Delete this photo"; del.setAttribute("aria-label", "Delete photo " + image.number);
      form.appendChild(token); form.appendChild(del); actions.appendChild(form);
    }
    cap.appendChild(actions);
    fig.appendChild(img); fig.appendChild(cap);
    return fig;
  }

  function timing(data) {
    var p = data.progress, now = Date.now();
    var started = data.started_at ? Date.parse(data.started_at) : NaN;
    var elapsed = isNaN(started) ? null : Math.max(0, (now - started) / 1000);
    if (firstSeenAt === null && data.status === "running") { firstSeenAt = now; firstSeenStep = p.step; }
    var eta = null;
    if (data.status === "running" && p.step > 0 && p.step < p.total) {
      if (p.step - firstSeenStep >= 3) { eta = (now - firstSeenAt) / 1000 / (p.step - firstSeenStep) * (p.total - p.step); }
      else if (elapsed !== null && elapsed > 0) { eta = elapsed / p.step * (p.total - p.step); }
    }
    return { elapsed: elapsed, eta: eta };
  }

  function render(data) {
    var status = field("status");
    status.textContent = labels[data.status] || data.status;
    status.className = "badge " + data.status;
    var p = data.progress, pct = Math.round((p.fraction || 0) * 100);
    if (data.status === "succeeded") { pct = 100; }
    var bar = field("bar"), track = bar.parentNode;
    bar.style.width = pct + "%";
    track.setAttribute("aria-valuenow", pct);
    track.classList.toggle("indeterminate", data.status === "queued");
    track.hidden = data.status === "failed" || data.status === "cancelled";
    var t = timing(data), detail = "";
    if (data.status === "queued") {
      detail = data.queue_position
        ? (data.queue_position === 1 ? "Next in the queue" : "Position " + data.queue_position + " in the queue") +
          ": it starts when a worker is free"
        : "Waiting for a worker";
    } else if (data.status === "running" && data.restarting) {
      detail = data.notice;  // its worker died: a frozen step counter would mislead
    } else if (data.status === "running") {
      detail = p.step >= p.total ? "Scoring and saving the photos…" : "Step " + p.step + " of " + p.total;
      if (t.eta !== null) { detail += " · about " + duration(t.eta) + " left"; }
    } else if (data.status === "succeeded") {
      detail = data.images.length + " photo" + (data.images.length === 1 ? "" : "s") + " ready";
    }
    field("detail").textContent = detail;
    field("queue").textContent = data.status === "queued" && data.queue_position ? data.queue_position : "–";
    field("step").textContent = p.step + " / " + p.total;
    field("eta").textContent = data.status === "queued" ? "Not started" : t.eta !== null ? "~" + duration(t.eta) : "–";
    field("elapsed").textContent = t.elapsed !== null ? duration(t.elapsed) : "–";
    field("error").hidden = data.status !== "failed";
    field("error-text").textContent = data.error || "";
    field("cancelled").hidden = data.status !== "cancelled";
    field("size").textContent = data.width + " × " + data.height;
    field("backend").textContent = data.backend || "–";
    if (finished.indexOf(data.status) >= 0) {
      field("stats").hidden = true;
      var cancel = field("cancel"); if (cancel) { cancel.remove(); }
    }
    if (data.status === "succeeded" && card.dataset.status !== "succeeded") {
      // The job finished while this page was open: show the photos without a reload.
      var gallery = field("gallery");
      gallery.textContent = "";
      data.images.forEach(function (image) { gallery.appendChild(figureFor(image, data.images.length)); });
      field("gallery-card").hidden = false;
    }
    card.dataset.status = data.status;
  }

  if (finished.indexOf(card.dataset.status) < 0) {
    window.twinsitePoll(card.dataset.statusUrl, render, function (data) {
      return finished.indexOf(data.status) >= 0;
    }, 1000);
  }
})();
