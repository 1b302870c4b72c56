// Generation pages: preset prompts, live progress with queue position and ETA, lightbox.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var preset = event.target.closest("[data-preset]");
    if (preset) {
      var prompt = document.querySelector("textarea[name=prompt]");
      if (prompt) { prompt.value = preset.dataset.preset; prompt.focus(); }
    }
  });

  var lightbox = document.querySelector(".lightbox");
  function openLightbox(src) {
    if (!lightbox) { return; }
    lightbox.querySelector("img").src = src;
    lightbox.hidden = false; lightbox.classList.add("open");
    lightbox.querySelector("[data-close]").focus();
  }
  function closeLightbox() { if (lightbox) { lightbox.classList.remove("open"); lightbox.hidden = true; } }
  document.addEventListener("click", function (event) {
    var img = event.target.closest("img[data-lightbox]");
    if (img) { openLightbox(img.src); return; }
    if (event.target.closest("[data-close]") || event.target === lightbox) { closeLightbox(); }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { closeLightbox(); }
    if (event.key === "Enter" && event.target.matches && event.target.matches("img[data-lightbox]")) { openLightbox(event.target.src); }
  });

  // On a twin page: when enrollment finishes while the page is open, show the generate form.
  var twinEl = document.getElementById("twin"), panel = document.getElementById("generate-panel");
  if (twinEl && panel) {
    twinEl.addEventListener("twin:updated", function (event) {
      var twin = event.detail || {};
      if (twin.status === "ready" && panel.dataset.ready === "false") { window.location.reload(); }
    });
  }

  var card = document.getElementById("job");
  if (!card) { return; }
  var field = function (name) { return document.querySelector('[data-field="' + name + '"]'); };
  var finished = ["succeeded", "failed", "cancelled"];
  var labels = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  var firstRunningAt = null, firstRunningStep = 0;

  function badgeClass(score) { return score === null ? "" : score >= 0.5 ? "ok" : score >= 0.3 ? "mid" : "low"; }

  function render(data) {
    var status = field("status");
    status.textContent = labels[data.status] || data.status;
    status.className = "badge " + data.status;
    var p = data.progress, pct = Math.round((p.fraction || 0) * 100);
    if (data.status === "succeeded") { pct = 100; }
    field("bar").style.width = pct + "%";
    field("bar").parentNode.setAttribute("aria-valuenow", pct);
    var detail = "";
    if (data.status === "queued") {
      detail = data.queue_position ? "Position " + data.queue_position + " in the queue" : "Waiting for a worker";
    } else if (data.status === "running") {
      detail = "Step " + p.step + " of " + p.total;
      if (firstRunningAt === null) { firstRunningAt = Date.now(); firstRunningStep = p.step; }
      var stepsDone = p.step - firstRunningStep, elapsed = (Date.now() - firstRunningAt) / 1000;
      if (stepsDone > 0) {
        var eta = Math.max(0, Math.round((p.total - p.step) * elapsed / stepsDone));
        detail += " · about " + eta + " s left";
      }
    } else if (data.status === "succeeded") {
      detail = data.images.length + " photo" + (data.images.length === 1 ? "" : "s") + " ready";
    }
    field("detail").textContent = detail;
    var error = field("error");
    error.hidden = !data.error; error.textContent = data.error || "";
    if (finished.indexOf(data.status) >= 0) {
      var cancel = field("cancel"); if (cancel) { cancel.remove(); }
    }
    if (data.status === "succeeded" && card.dataset.status !== "succeeded") {
      // The job finished while this page was open: show the photos (server-rendered markup on next visit).
      var gallery = field("gallery");
      gallery.innerHTML = "";
      data.images.forEach(function (image) {
        var fig = document.createElement("figure");
        var img = document.createElement("img");
        img.src = image.url; img.alt = "Generated photo " + image.number; img.tabIndex = 0;
        img.setAttribute("data-lightbox", "");
        var cap = document.createElement("figcaption");
        var badge = document.createElement("span");
        badge.className = "badge " + badgeClass(image.identity_score);
        badge.textContent = image.identity_score === null ? "no face" : "ID " + image.identity_score.toFixed(2);
        badge.title = image.identity_score === null ? image.score_note : "Identity score";
        var link = document.createElement("a");
        link.className = "button small"; link.href = image.url + "?download=1"; link.textContent = "Download";
        cap.appendChild(badge); cap.appendChild(link);
        fig.appendChild(img); fig.appendChild(cap); gallery.appendChild(fig);
      });
      field("gallery-card").hidden = false;
    }
    card.dataset.status = data.status;
  }

  window.twinsitePoll(card.dataset.statusUrl, render, function (data) {
    return finished.indexOf(data.status) >= 0;
  }, 1000);
})();
