// Small helpers shared by every page: copy buttons, show/hide the API token, confirmations,
// focus jumps, and JSON polling for the live parts of the dashboard.
(function () {
  "use strict";
  document.documentElement.classList.add("js");  // the page's scripts run (CSS and the CSP test look)
  // Progress bars carry their width as data-percent: a style="" attribute is inline style, which the
  // Content-Security-Policy refuses; setting the width from a script is allowed.
  document.querySelectorAll("[data-percent]").forEach(function (bar) {
    bar.style.width = bar.dataset.percent + "%";
  });
  function flash(button, text) {
    var before = button.textContent;
    button.textContent = text;
    setTimeout(function () { button.textContent = before; }, 1500);
  }
  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy], [data-copy-value]");
    if (copy) {
      var source = copy.dataset.copy ? document.querySelector(copy.dataset.copy) : null;
      var text = copy.dataset.copyValue || (source ? source.textContent.trim() : "");
      if (text && navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { flash(copy, "Copied"); },
                                                 function () { flash(copy, "Press Ctrl+C"); });
      }
      return;
    }
    var toggle = event.target.closest("#token-toggle");
    if (toggle) {
      var token = document.getElementById("api-token");
      var shown = toggle.getAttribute("aria-expanded") === "true";
      if (!token.dataset.masked) { token.dataset.masked = token.textContent; }
      token.textContent = shown ? token.dataset.masked : token.dataset.token;
      token.classList.toggle("masked", shown);
      toggle.setAttribute("aria-expanded", shown ? "false" : "true");
      toggle.textContent = shown ? "Show" : "Hide";
      return;
    }
    var jump = event.target.closest("[data-focus]");
    if (jump) {
      var target = document.querySelector(jump.dataset.focus);
      if (target) { event.preventDefault(); target.scrollIntoView({ block: "center" }); target.focus(); }
    }
  });
  // Messages from the last action can be dismissed (they are not removed on their own: screen readers).
  document.querySelectorAll(".messages .message").forEach(function (message) {
    var button = document.createElement("button");
    button.type = "button"; button.className = "dismiss"; button.textContent = "×";
    button.setAttribute("aria-label", "Dismiss this message");
    button.addEventListener("click", function () {
      var list = message.parentNode;
      message.remove();
      if (!list.children.length) { list.remove(); }
    });
    message.appendChild(button);
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
  // Poll a JSON URL until `done(data)` says stop; slows down while the tab is hidden and after errors.
  window.twinsitePoll = function (url, onData, done, intervalMs) {
    var interval = intervalMs || 1000;
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (data) {
          onData(data);
          if (!done(data)) { setTimeout(tick, document.hidden ? interval * 4 : interval); }
        })
        .catch(function () { setTimeout(tick, interval * 3); });
    }
    tick();
  };
  // Lists (twins on the dashboard, jobs in the history) follow their running items without a reload:
  // an element with data-live-url polls it while its status is one of data-live-active.
  function capitalized(text) { return text ? text.charAt(0).toUpperCase() + text.slice(1) : ""; }
  document.querySelectorAll("[data-live-url]").forEach(function (node) {
    var active = (node.dataset.liveActive || "").split(" ");
    if (active.indexOf(node.dataset.liveStatus) < 0) { return; }
    var part = function (name) { return node.querySelector('[data-live="' + name + '"]'); };
    window.twinsitePoll(node.dataset.liveUrl, function (data) {
      var badge = part("badge");
      if (badge) { badge.className = "badge " + data.status; badge.textContent = data.status_display || capitalized(data.status); }
      var bar = part("bar"), progress = data.progress || {};
      if (bar) {
        var percent = progress.percent !== undefined ? progress.percent : Math.round((progress.fraction || 0) * 100);
        bar.style.width = percent + "%";
        bar.parentNode.setAttribute("aria-valuenow", progress.done !== undefined ? progress.done : progress.step);
        bar.parentNode.hidden = active.indexOf(data.status) < 0;
      }
      var note = part("note");
      if (note && data.accepted_count !== undefined) {
        note.textContent = data.status === "enrolling"
          ? "Checking photos… " + progress.done + " of " + progress.total
          : data.accepted_count + " of " + data.photo_count + " photos accepted";
      }
      var action = part("action");
      if (action && active.indexOf(data.status) < 0) {
        action.textContent = data.status === "ready" ? "Open" : data.status === "failed" ? "Fix photos" : "Open";
      }
    }, function (data) { return active.indexOf(data.status) < 0; }, 2000);
  });
  // "12 s", "3 min 5 s": for elapsed times and ETAs.
  window.twinsiteDuration = function (seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) { return seconds + " s"; }
    var minutes = Math.floor(seconds / 60), rest = seconds % 60;
    return minutes + " min" + (rest ? " " + rest + " s" : "");
  };
})();
