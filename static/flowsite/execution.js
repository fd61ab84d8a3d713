/* The execution page's behaviour (a static file: no inline script, the CSP holds).
   - The live partial (#live, polled by htmx) carries the node statuses as data
     (<ul class="node-data"><li data-node data-status data-visits data-label>); they are
     applied here as classes and texts on the graph's nodes and the list of states, so the
     layout never moves.
   - Links inside the SVG (graph nodes, timeline bars) are SVG <a> elements, which htmx does
     not treat as anchors: their navigation is cancelled here, htmx loads the visits.
   - The state whose visits are shown is marked on the graph. */
(function () {
  "use strict";

  // status -> [badge modifier, symbol, word] (as flowsite/ui/templatetags/ui.py STATUSES)
  var BADGES = {
    not_reached: ["idle", "○", "Not reached"],
    running: ["running", "▶", "Running"],
    waiting_callback: ["waiting", "✉", "Waiting for a callback"],
    waiting_timer: ["timer", "◷", "Waiting on a timer"],
    retrying: ["retrying", "↻", "Retrying"],
    succeeded: ["succeeded", "✓", "Succeeded"],
    failed: ["failed", "✕", "Failed"],
    caught: ["caught", "↷", "Failed, caught"],
    cancelled: ["stopped", "■", "Cancelled"]
  };
  // symbols in the graph's status dots (as executions/graph_svg.py SYMBOLS)
  var SYMBOLS = {
    not_reached: "", running: "▶", waiting_callback: "✉", waiting_timer: "◷", retrying: "↻",
    succeeded: "✓", failed: "✕", caught: "↷", cancelled: "■"
  };

  function badge(status) {
    var spec = BADGES[status] || BADGES.not_reached;
    var outer = document.createElement("span");
    outer.className = "badge badge--" + spec[0];
    var icon = document.createElement("span");
    icon.className = "badge__icon";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = spec[1];
    outer.appendChild(icon);
    outer.appendChild(document.createTextNode(spec[2]));
    return outer;
  }

  function setNode(node, status, visits, label) {
    var kept = (node.getAttribute("class") || "").split(/\s+/).filter(function (c) {
      return c && (c.indexOf("is-") !== 0 || c === "is-selected") && c !== "has-visits";
    });
    kept.push("is-" + status.replace(/_/g, "-"));
    if (visits > 1) kept.push("has-visits");
    node.setAttribute("class", kept.join(" "));
    var icon = node.querySelector(".fg-icon");
    if (icon) icon.textContent = SYMBOLS[status] || "";
    var count = node.querySelector(".fg-count");
    if (count) count.textContent = visits > 1 ? "×" + visits : "";
    var title = node.querySelector("title");
    if (title) {
      var base = node.getAttribute("data-title");
      if (base === null) {
        base = title.textContent.split(" — ")[0];
        node.setAttribute("data-title", base);
      }
      title.textContent = base + (label ? " — " + label : "");
    }
    var link = node.parentNode;
    if (link && link.classList && link.classList.contains("fg-link")) {
      var name = (link.getAttribute("aria-label") || "").split(": ")[0];
      link.setAttribute("aria-label", name + ": " + (label || "not reached"));
    }
  }

  function setRow(row, status, visits, label) {
    var cell = row.querySelector(".sl-status");
    if (cell && cell.getAttribute("data-status") !== status) {
      cell.textContent = "";
      cell.appendChild(badge(status));
      cell.setAttribute("data-status", status);
    }
    if (cell) cell.title = label;
    var count = row.querySelector(".sl-visits");
    if (count) count.textContent = visits > 0 ? String(visits) : "";
  }

  function applyStatuses(list) {
    var items = list.querySelectorAll("li[data-node]");
    for (var i = 0; i < items.length; i++) {
      var key = items[i].getAttribute("data-node");
      var status = items[i].getAttribute("data-status") || "not_reached";
      var visits = parseInt(items[i].getAttribute("data-visits") || "0", 10);
      var label = items[i].getAttribute("data-label") || "";
      var node = document.getElementById("gn-" + key);
      if (node) setNode(node, status, visits, label);
      var row = document.querySelector('.states-list tr[data-node="' + CSS.escape(key) + '"]');
      if (row) setRow(row, status, visits, label);
    }
  }

  function select(key) {
    var old = document.querySelectorAll(".fg-node.is-selected");
    for (var i = 0; i < old.length; i++) {
      old[i].setAttribute("class", old[i].getAttribute("class").replace(/\s*\bis-selected\b/, ""));
    }
    var node = key && document.getElementById("gn-" + key);
    if (node) node.setAttribute("class", node.getAttribute("class") + " is-selected");
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.fg-link, a.tl-link");
    if (!link) return;
    // htmx loads the visits into the panel; the SVG anchor must not navigate as well.
    if (!event.ctrlKey && !event.metaKey && !event.shiftKey) event.preventDefault();
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target) return;
    if (target.id === "live") {
      var list = target.querySelector(".node-data");
      if (list) applyStatuses(list);
    } else if (target.id === "state-panel") {
      var shown = target.querySelector(".visits[data-node]");
      select(shown ? shown.getAttribute("data-node") : null);
      if (window.matchMedia("(max-width: 1000px)").matches) {
        target.scrollIntoView({ behavior: "smooth", block: "start" });
      }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var shown = document.querySelector("#state-panel .visits[data-node]");
    if (shown) select(shown.getAttribute("data-node"));
  });
})();
