/* flowsite dashboard: small behaviours, loaded as a static file (no inline script anywhere).
   - <time data-relative datetime="…">: shown in the viewer's own time zone (title) with a
     relative text kept fresh;
   - [data-check-all="name"]: a checkbox that ticks every checkbox named "name";
   - forms with [data-confirm="text"]: ask before submitting. */
(function () {
  "use strict";

  function relative(date) {
    var seconds = Math.round((Date.now() - date.getTime()) / 1000);
    var future = seconds < 0;
    seconds = Math.abs(seconds);
    var text;
    if (seconds < 45) return future ? "in a few seconds" : "just now";
    if (seconds < 3600) text = Math.round(seconds / 60) + " min";
    else if (seconds < 86400) text = Math.round(seconds / 3600) + " h";
    else { var d = Math.round(seconds / 86400); text = d + (d === 1 ? " day" : " days"); }
    return future ? "in " + text : text + " ago";
  }

  function localTimes(root) {
    var nodes = (root || document).querySelectorAll("time[data-relative]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var date = new Date(node.getAttribute("datetime"));
      if (isNaN(date.getTime())) continue;
      node.title = date.toLocaleString() + " (your time)";
      node.textContent = relative(date);
    }
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("[data-check-all]")) return;
    var name = box.getAttribute("data-check-all");
    var all = document.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
    for (var i = 0; i < all.length; i++) all[i].checked = box.checked;
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);

  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localTimes(event.target); });
  setInterval(function () { localTimes(document); }, 30000);
})();
