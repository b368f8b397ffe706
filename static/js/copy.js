// Copy buttons: <button data-copy-target="input-id">. Uses the async Clipboard API, falling back
// to a selection copy where it is unavailable; announces the result in the polite status region.
(function () {
  "use strict";
  function announce(button, text) {
    var id = button.getAttribute("aria-describedby");
    var status = id && document.getElementById(id);
    if (status) { status.textContent = text; }
  }
  function fallbackCopy(input) {
    input.focus();
    input.select();
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var input = document.getElementById(button.getAttribute("data-copy-target"));
    if (!input) { return; }
    var done = function () { button.textContent = "Copied"; announce(button, "Key copied to the clipboard."); };
    var failed = function () {
      if (fallbackCopy(input)) { done(); } else { announce(button, "Copy failed: select the key and copy it by hand."); }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, failed);
    } else {
      failed();
    }
  });
})();
