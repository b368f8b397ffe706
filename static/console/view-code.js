// "View code" on the console: opens the quickstart snippets for the console's current environment,
// deployment and session settings (rendered by the server from accounts/quickstart.py).
(function () {
  "use strict";
  var link = document.getElementById("view-code");
  if (!link) { return; }
  var fields = {
    environment: "environment", deployment: "deployment", instructions: "setting-instructions",
    voice: "setting-voice", turn_detection: "setting-turn-detection", silence_duration_ms: "setting-silence",
    output_modalities: "setting-modalities", tools: "setting-tools"
  };
  function update() {
    var query = new URLSearchParams();
    Object.keys(fields).forEach(function (name) {
      var element = document.getElementById(fields[name]);
      if (element && element.value) { query.set(name, element.value); }
    });
    link.href = link.getAttribute("data-base") + "?" + query.toString();
  }
  link.addEventListener("click", update);
  link.addEventListener("focus", update);
  link.addEventListener("mouseenter", update);
})();
