/* flowsite dashboard, list pages: let htmx swap in the partial that a refused or failed
   decision answers with (a 4xx with the row and its error, marked X-Flowsite-Partial), which
   htmx would otherwise drop. Nothing else: filters and paging work as plain links and forms. */
(function () {
  "use strict";
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status >= 400 && xhr.getResponseHeader("X-Flowsite-Partial") === "1") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
