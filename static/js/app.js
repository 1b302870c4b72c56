// Small helpers shared by every page: copy buttons, confirmations, JSON polling.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          copy.textContent = "Copied";
          setTimeout(function () { copy.textContent = "Copy"; }, 1500);
        });
      }
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
  // Poll a JSON URL until `done(data)` says stop; backs off when the tab is hidden.
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
})();
