// Twin page: drag-and-drop upload with previews and per-file verdicts, enroll, live progress.
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

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  // ---- Rendering the twin from its JSON ------------------------------------------------------
  var statusLabels = { draft: "Draft", enrolling: "Enrolling", ready: "Ready", failed: "Failed" };
  var groups = {
    rejected: ["Refused", "Not used for your twin; the reason is under each photo."],
    pending: ["Not checked yet", "Press Enroll to check these."],
    accepted: ["Accepted", "These make up your twin."],
    all: ["Being checked", "In the order they are checked."]
  };

  function stepper(twin) {
    var steps = {};
    root.querySelectorAll("#twin-stepper [data-step]").forEach(function (li) { steps[li.dataset.step] = li; });
    if (!steps.photos) { return; }
    var enough = twin.photo_count >= twin.min_photos;
    steps.photos.className = twin.status === "ready" || enough ? "done" : "current";
    steps.enroll.className = twin.status === "ready" ? "done" : (twin.status === "enrolling" || enough ? "current" : "");
    steps.generate.className = twin.status === "ready" ? "current" : "";
  }

  // One card per photo, kept across refreshes (no flicker, no re-downloaded thumbnails).
  var cards = {};

  function verdictLabel(selfie) {
    return selfie.status === "rejected" ? selfie.reason_label
      : selfie.status === "accepted" ? "Accepted" : "Not checked yet";
  }

  // What the thumbnail shows, for a screen reader: its place in upload order and its verdict (the file name says nothing).
  var altVerdicts = { accepted: "accepted", rejected: "refused" };
  function selfieAlt(number, selfie) {
    return "Selfie " + number + ", " + (altVerdicts[selfie.status] || "not checked yet");
  }

  function selfieCard(twin, selfie, number) {
    var card = cards[selfie.id];
    if (!card) {
      card = el("div", { "data-selfie-id": selfie.id });
      card.appendChild(el("img", { src: selfie.thumbnail_url, alt: "", loading: "lazy" }));
      card.appendChild(el("div", { "class": "caption" }));
      cards[selfie.id] = card;
    }
    var key = [number, selfie.status, selfie.reason, selfie.message, twin.status].join("|");
    if (card.dataset.key !== key) {
      card.dataset.key = key;
      card.querySelector("img").alt = selfieAlt(number, selfie);
      card.className = "thumb " + selfie.status;
      var caption = card.querySelector(".caption");
      caption.textContent = "";
      caption.appendChild(el("span", { "class": "badge " + selfie.status }, verdictLabel(selfie)));
      if (selfie.message) { caption.appendChild(el("div", { "class": "small muted" }, selfie.message)); }
      if (canChange && twin.status !== "enrolling") {
        var remove = el("button", { type: "button", "class": "link small",
                                    "aria-label": "Remove " + (selfie.original_name || "this photo") }, "Remove");
        remove.addEventListener("click", function () {
          remove.disabled = true;
          call("DELETE", twin.url + "selfies/" + selfie.id + "/").then(function (res) {
            if (!res.ok) { window.alert(errorMessage(res)); }
            refresh();
          });
        });
        caption.appendChild(remove);
      }
    }
    return card;
  }

  // While enrolling, photos are checked in upload order: mark the ones done and the one in hand.
  function markChecking(twin, card, index) {
    card.classList.remove("checked", "checking");
    var badge = card.querySelector(".badge");
    if (twin.status !== "enrolling" || !badge) { return; }
    if (index < twin.progress.done) {
      card.classList.add("checked");
      badge.textContent = "Checked";
    } else if (index === twin.progress.done && !twin.stalled) {
      card.classList.add("checking");
      badge.textContent = "";
      badge.appendChild(el("span", { "class": "spinner", "aria-hidden": "true" }));
      badge.appendChild(document.createTextNode(" Checking…"));
    } else {
      badge.textContent = "Waiting";
    }
  }

  function renderPhotos(twin) {
    var grid = document.getElementById("selfie-grid");
    var order = twin.status === "enrolling" ? ["all"] : ["rejected", "pending", "accepted"];
    var members = {};
    var numbers = {};
    twin.selfies.forEach(function (selfie, index) {
      var key = twin.status === "enrolling" ? "all" : selfie.status;
      (members[key] = members[key] || []).push(selfie);
      numbers[selfie.id] = index + 1;  // upload order, as the server numbers them
    });
    var seen = {};
    grid.querySelectorAll(".empty-photos").forEach(function (node) { node.remove(); });
    order.forEach(function (key) {
      var group = grid.querySelector('.selfie-group[data-group="' + key + '"]');
      if (!members[key]) { if (group) { group.remove(); } return; }
      if (!group) {
        group = el("div", { "class": "selfie-group", "data-group": key });
        var head = el("div", { "class": "thumbs-head" });
        head.appendChild(el("h3"));
        head.appendChild(el("span", { "class": "small muted" }, groups[key][1]));
        group.appendChild(head);
        group.appendChild(el("div", { "class": "thumbs" }));
      }
      grid.appendChild(group); // keeps the groups in `order`
      group.querySelector("h3").textContent = groups[key][0] + " (" + members[key].length + ")";
      var thumbs = group.querySelector(".thumbs");
      members[key].forEach(function (selfie, index) {
        var card = selfieCard(twin, selfie, numbers[selfie.id]);
        markChecking(twin, card, index);
        thumbs.appendChild(card);
        seen[selfie.id] = true;
      });
    });
    grid.querySelectorAll(".selfie-group").forEach(function (group) {
      if (order.indexOf(group.dataset.group) < 0) { group.remove(); }
    });
    Object.keys(cards).forEach(function (id) { if (!seen[id]) { cards[id].remove(); delete cards[id]; } });
    if (!twin.selfies.length) {
      grid.appendChild(el("p", { "class": "muted empty-photos" },
        "No photos yet." + (canChange ? " Drop " + twin.min_photos + " or more selfies above to start." : "")));
    }
  }

  function render(twin) {
    var badge = document.getElementById("twin-status");
    badge.className = "badge " + twin.status;
    badge.textContent = statusLabels[twin.status] || twin.status;
    root.dataset.status = twin.status;
    var status = document.getElementById("status-message");
    status.textContent = twin.status_message || "Not enrolled yet.";
    status.className = "status-message " + twin.status;
    var bar = document.getElementById("enroll-progress");
    bar.hidden = twin.status !== "enrolling";
    bar.setAttribute("aria-valuemax", twin.progress.total);
    bar.setAttribute("aria-valuenow", twin.progress.done);
    bar.firstElementChild.style.width = twin.progress.percent + "%";
    document.getElementById("photo-counts").textContent = plural(twin.photo_count, "photo") + " · " +
      twin.accepted_count + " accepted · " + twin.rejected_count + " refused" +
      (twin.pending_count ? " · " + twin.pending_count + " not checked yet" : "");
    var next = document.getElementById("next-step"); // the owner's only: staff see the twin read-only
    if (next) {
      next.textContent = "";
      next.appendChild(el("strong", {}, "Next: "));
      next.appendChild(document.createTextNode(twin.next_step));  // worded by the server
    }
    var button = document.getElementById("enroll-button");
    if (button) {
      button.disabled = (twin.status === "enrolling" && !twin.stalled) || twin.photo_count === 0;
      button.textContent = twin.status === "draft" ? "Enroll" : "Enroll again";
    }
    stepper(twin);
    renderPhotos(twin);
    var face = document.getElementById("reference-face");
    if (face) {
      face.hidden = !twin.reference_face_url;
      // The small WebP, named by the enrollment time in epoch seconds (as the server names it in the page):
      // a new enrollment makes a new crop, and a new URL.
      var version = twin.enrolled_at ? Math.floor(Date.parse(twin.enrolled_at) / 1000) : 0;
      var src = twin.reference_face_url ? twin.reference_face_url + "?size=small&v=" + version : "";
      if (src) { src = new URL(src, document.baseURI).href; }
      if (src && face.src !== src) { face.src = src; }  // the same URL as the page's: no second download
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
    if (window.URL && /^image\/(jpeg|png|webp|bmp|gif)$/.test(file.type)) {
      var img = el("img", { alt: "" });  // decorative: the caption below names the file
      img.src = URL.createObjectURL(file);
      img.addEventListener("load", function () { URL.revokeObjectURL(img.src); });
      img.addEventListener("error", function () {
        URL.revokeObjectURL(img.src);
        img.replaceWith(el("div", { "class": "no-preview", "aria-hidden": "true" }, "?"));
      });
      card.appendChild(img);
    } else {
      card.appendChild(el("div", { "class": "no-preview", "aria-hidden": "true" }, "?"));
    }
    var caption = el("div", { "class": "caption" });
    var badge = el("span", { "class": "badge pending" });
    badge.appendChild(el("span", { "class": "spinner", "aria-hidden": "true" }));
    badge.appendChild(document.createTextNode(" Uploading…"));
    var note = el("div", { "class": "small muted" }, file.name);
    caption.appendChild(badge);
    caption.appendChild(note);
    card.appendChild(caption);
    queue.appendChild(card);
    return function (ok, message) {
      card.className = "thumb " + (ok ? "accepted" : "rejected");
      card.dataset.uploaded = ok ? "true" : "false";
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
    chain.then(refresh).then(function () {
      // Uploaded photos now sit in the grid below; keep only the refused ones here, with their reasons.
      if (counts.done === counts.total) {
        queue.querySelectorAll('[data-uploaded="true"]').forEach(function (card) { card.remove(); });
        if (counts.uploaded) { summary.textContent += " · the uploaded photos are listed under Photos"; }
      }
    });
  }

  if (dropzone && input) {
    // Files go up as soon as they are chosen or dropped; the button is for the no-JavaScript form.
    document.getElementById("upload-fallback").hidden = true;
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

  // Take over the server-rendered cards, so later refreshes update them in place.
  document.querySelectorAll("#selfie-grid [data-selfie-id]").forEach(function (card) {
    cards[card.dataset.selfieId] = card;
  });
  if (root.dataset.status === "enrolling") { poll(); }
})();
