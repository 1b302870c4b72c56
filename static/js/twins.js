// Twin page: drag-and-drop upload with previews and per-file results, enroll, live progress.
// Talks to the JSON API with the session cookie and the CSRF token; without JavaScript the
// page's plain forms do the same work. Fires "twin:updated" (detail = twin JSON) on #twin
// after every refresh so other panels (generation) can follow the twin's status.
(function () {
  "use strict";
  var root = document.getElementById("twin");
  if (!root) { return; }
  var csrf = root.querySelector("[name=csrfmiddlewaretoken]").value;
  var canChange = root.dataset.canChange === "true";
  var BATCH = 8; // files per request: steady per-file feedback without one huge request
  var polling = false;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function call(method, url, body) {
    var headers = { Accept: "application/json", "X-CSRFToken": csrf };
    return fetch(url, { method: method, body: body, headers: headers, credentials: "same-origin" })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          return { ok: response.ok, status: response.status, data: data };
        });
      });
  }

  function errorMessage(res) {
    if (res.data && res.data.error) { return res.data.error.message; }
    if (res.status === 413) { return "The upload is too large for the server; send fewer or smaller photos."; }
    return "Something went wrong (" + res.status + "). Try again.";
  }

  // ---- Rendering the twin from its JSON ------------------------------------------------------
  var statusLabels = { draft: "Draft", enrolling: "Enrolling", ready: "Ready", failed: "Failed" };

  function nextStep(twin) {
    if (twin.status === "enrolling" && twin.stalled) {
      return "This enrollment stopped making progress. Press Enroll again to restart it.";
    }
    if (twin.status === "enrolling") { return "Checking every photo. You can leave this page; it keeps going."; }
    if (twin.status === "failed") { return "Remove the refused photos or add new ones, then enroll again."; }
    if (twin.status === "ready") {
      return twin.pending_count
        ? twin.pending_count + " new photo(s) are not part of your twin yet: enroll again to include them."
        : "Your twin is ready. Add photos and enroll again any time to improve it.";
    }
    var missing = Math.max(0, twin.min_photos - twin.photo_count);
    return missing
      ? "Upload at least " + missing + " more photo(s) of your face, then press Enroll."
      : "Enough photos: press Enroll to check them.";
  }

  function selfieCard(twin, selfie) {
    var card = el("div", { "class": "thumb " + selfie.status, "data-selfie-id": selfie.id });
    var img = el("img", { src: selfie.thumbnail_url, alt: selfie.original_name || "Selfie", loading: "lazy" });
    var caption = el("div", { "class": "caption" });
    var label = selfie.status === "rejected" ? selfie.reason_label
      : selfie.status === "accepted" ? "Accepted" : "Not checked yet";
    caption.appendChild(el("span", { "class": "badge " + selfie.status }, label));
    if (selfie.message) { caption.appendChild(el("div", { "class": "small muted" }, selfie.message)); }
    if (canChange && twin.status !== "enrolling") {
      var remove = el("button", { type: "button", "class": "link small" }, "Remove");
      remove.addEventListener("click", function () {
        remove.disabled = true;
        call("DELETE", twin.url + "selfies/" + selfie.id + "/").then(function (res) {
          if (!res.ok) { window.alert(errorMessage(res)); }
          refresh();
        });
      });
      caption.appendChild(remove);
    }
    card.appendChild(img);
    card.appendChild(caption);
    return card;
  }

  function render(twin) {
    var badge = document.getElementById("twin-status");
    badge.className = "badge " + twin.status;
    badge.textContent = statusLabels[twin.status] || twin.status;
    root.dataset.status = twin.status;
    document.getElementById("status-message").textContent = twin.status_message;
    var bar = document.getElementById("enroll-progress");
    bar.hidden = twin.status !== "enrolling";
    bar.setAttribute("aria-valuemax", twin.progress.total);
    bar.setAttribute("aria-valuenow", twin.progress.done);
    bar.firstElementChild.style.width = twin.progress.percent + "%";
    document.getElementById("photo-counts").textContent = twin.photo_count + " photo(s) · " +
      twin.accepted_count + " accepted · " + twin.rejected_count + " refused" +
      (twin.pending_count ? " · " + twin.pending_count + " not checked yet" : "");
    document.getElementById("next-step").textContent = nextStep(twin);
    var button = document.getElementById("enroll-button");
    if (button) {
      button.disabled = (twin.status === "enrolling" && !twin.stalled) || twin.photo_count === 0;
      button.textContent = twin.status === "draft" ? "Enroll" : "Enroll again";
    }
    var grid = document.getElementById("selfie-grid");
    grid.textContent = "";
    if (!twin.selfies.length) { grid.appendChild(el("p", { "class": "muted" }, "No photos yet.")); }
    twin.selfies.forEach(function (selfie) { grid.appendChild(selfieCard(twin, selfie)); });
    var face = document.getElementById("reference-face");
    if (face) {
      face.hidden = !twin.reference_face_url;
      // A new enrollment makes a new crop: bust the browser cache with the enrollment time.
      var src = twin.reference_face_url ? twin.reference_face_url + "?v=" + encodeURIComponent(twin.enrolled_at) : "";
      if (src && face.dataset.src !== src) { face.src = src; face.dataset.src = src; }
    }
    root.dispatchEvent(new CustomEvent("twin:updated", { detail: twin }));
  }

  function refresh() {
    return call("GET", root.dataset.apiUrl).then(function (res) {
      if (res.ok) {
        render(res.data);
        if (res.data.status === "enrolling") { poll(); }
      }
    });
  }

  function poll() {
    if (polling) { return; }
    polling = true;
    window.twinsitePoll(root.dataset.apiUrl, render, function (twin) {
      var finished = twin.status !== "enrolling" || twin.stalled;
      if (finished) { polling = false; }
      return finished;
    }, 1000);
  }

  // ---- Enroll --------------------------------------------------------------------------------
  var enrollForm = document.getElementById("enroll-form");
  if (enrollForm) {
    enrollForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = document.getElementById("enroll-button");
      button.disabled = true;
      call("POST", root.dataset.enrollUrl).then(function (res) {
        if (res.ok) {
          if (queue) { queue.textContent = ""; summary.textContent = ""; } // verdicts now come per photo below
          counts = { total: 0, done: 0, uploaded: 0, refused: 0 };
          render(res.data);
          poll();
          return;
        }
        document.getElementById("next-step").textContent = errorMessage(res);
        button.disabled = false;
      });
    });
  }

  // ---- Upload --------------------------------------------------------------------------------
  var dropzone = document.getElementById("dropzone");
  var input = document.getElementById("file-input");
  var queue = document.getElementById("upload-queue");
  var summary = document.getElementById("upload-summary");
  var counts = { total: 0, done: 0, uploaded: 0, refused: 0 };

  function preview(file) {
    var card = el("div", { "class": "thumb pending" });
    var img = el("img", { alt: "" });
    if (window.URL && /^image\/(jpeg|png|webp|bmp|gif)$/.test(file.type)) {
      img.src = URL.createObjectURL(file);
      img.addEventListener("load", function () { URL.revokeObjectURL(img.src); });
      img.addEventListener("error", function () { URL.revokeObjectURL(img.src); img.removeAttribute("src"); });
    }
    var caption = el("div", { "class": "caption" });
    var badge = el("span", { "class": "badge pending" }, "Uploading…");
    var note = el("div", { "class": "small muted" }, file.name);
    caption.appendChild(badge);
    caption.appendChild(note);
    card.appendChild(img);
    card.appendChild(caption);
    queue.appendChild(card);
    return function (ok, message) {
      card.className = "thumb " + (ok ? "accepted" : "rejected");
      badge.className = "badge " + (ok ? "accepted" : "rejected");
      badge.textContent = ok ? "Uploaded" : "Refused";
      note.textContent = file.name + (message ? ": " + message : "");
      counts.done += 1;
      if (ok) { counts.uploaded += 1; } else { counts.refused += 1; }
      updateSummary();
    };
  }

  function updateSummary() {
    summary.textContent = counts.done + " of " + counts.total + " sent · " + counts.uploaded + " uploaded · " +
      counts.refused + " refused" + (counts.done < counts.total ? " …" : "");
  }

  function sendBatch(batch) {
    var form = new FormData();
    batch.forEach(function (item) { form.append("files", item.file, item.file.name); });
    return call("POST", root.dataset.uploadUrl, form).then(function (res) {
      var results = (res.data && res.data.results) || [];
      batch.forEach(function (item, i) {
        var result = results[i];
        if (!result) { item.done(false, errorMessage(res)); }
        else if (result.status === "accepted") { item.done(true, "passed the first checks"); }
        else { item.done(false, result.message); }
      });
    }).catch(function () {
      batch.forEach(function (item) { item.done(false, "network error; try again"); });
    });
  }

  function addFiles(fileList) {
    var items = Array.prototype.map.call(fileList, function (file) { return { file: file, done: preview(file) }; });
    if (!items.length) { return; }
    counts.total += items.length;
    updateSummary();
    var chain = Promise.resolve();
    for (var i = 0; i < items.length; i += BATCH) {
      chain = chain.then(sendBatch.bind(null, items.slice(i, i + BATCH)));
    }
    chain.then(refresh);
  }

  if (dropzone && input) {
    // Files go up as soon as they are chosen or dropped; the button is for the no-JavaScript form.
    document.getElementById("upload-button").style.display = "none";
    input.addEventListener("change", function () { addFiles(input.files); input.value = ""; });
    ["dragenter", "dragover"].forEach(function (type) {
      dropzone.addEventListener(type, function (event) { event.preventDefault(); dropzone.classList.add("dragover"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      dropzone.addEventListener(type, function () { dropzone.classList.remove("dragover"); });
    });
    dropzone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files) { addFiles(event.dataTransfer.files); }
    });
    // A drop that misses the zone must not navigate away to the image.
    window.addEventListener("dragover", function (event) { event.preventDefault(); });
    window.addEventListener("drop", function (event) { event.preventDefault(); });
  }

  // Removing a photo without a reload (the server-rendered forms are the no-JavaScript path).
  document.getElementById("selfie-grid").addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList.contains("remove-selfie")) { return; }
    event.preventDefault();
    var card = form.closest("[data-selfie-id]");
    call("DELETE", root.dataset.apiUrl + "selfies/" + card.dataset.selfieId + "/").then(function (res) {
      if (!res.ok) { window.alert(errorMessage(res)); }
      refresh();
    });
  });

  if (root.dataset.status === "enrolling") { poll(); }
})();
