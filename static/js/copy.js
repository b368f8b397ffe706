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
    if (input.select) { input.select(); } else { window.getSelection().selectAllChildren(input); }
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var input = document.getElementById(button.getAttribute("data-copy-target"));
    if (!input) { return; }
    // A <pre> of code copies its text; an input its value.
    var text = "value" in input ? input.value : input.textContent;
    var message = button.getAttribute("data-copy-message") || "Key copied to the clipboard.";
    var done = function () { button.textContent = "Copied"; announce(button, message); };
    var failed = function () {
      if (fallbackCopy(input)) { done(); } else { announce(button, "Copy failed: select the key and copy it by hand."); }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, failed);
    } else {
      failed();
    }
  });
})();
