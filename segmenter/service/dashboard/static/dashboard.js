// A chart the server could not draw yet (503 while its chart thread is busy) is asked for again,
// a few times, a little later each time.
"use strict";
(function () {
  var TRIES = 5;

  function retry(img) {
    var tries = Number(img.dataset.tries || 0);
    if (tries >= TRIES) {
      return;
    }
    img.dataset.tries = String(tries + 1);
    window.setTimeout(function () {
      var url = new URL(img.src);
      url.searchParams.set("try", String(tries + 1));
      img.src = url.toString();
    }, 1000 * (tries + 1));
  }

  document.querySelectorAll("img.chart").forEach(function (img) {
    img.addEventListener("error", function () { retry(img); });
    if (img.complete && img.naturalWidth === 0) {
      retry(img);  // failed before this script ran
    }
  });
})();
