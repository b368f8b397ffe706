// The agent form (templates/realtime/agents_form.html): the model and voice lists and the help follow
// the chosen provider, and "Test connection" runs without leaving the page (the typed credential stays
// in its field). Without this script the same button posts the form and the page shows the result.
(function () {
  "use strict";
  var form = document.getElementById("agent-form");
  if (!form) { return; }
  var provider = form.querySelector("[name=provider]");
  var model = form.querySelector("[name=model]");
  var voice = form.querySelector("[name=voice]");
  var button = document.getElementById("test-connection");
  var result = document.getElementById("test-connection-result");

  function showPreset() {
    var chosen = provider.value;
    model.setAttribute("list", "models-" + chosen);
    voice.setAttribute("list", "voices-" + chosen);
    document.querySelectorAll(".preset-help").forEach(function (help) {
      help.hidden = help.getAttribute("data-provider") !== chosen;
    });
  }
  provider.addEventListener("change", showPreset);
  showPreset();

  button.addEventListener("click", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    data.set("action", "test");
    button.disabled = true;
    result.className = "";
    result.textContent = "Testing…";
    fetch(form.getAttribute("action"), { method: "POST", body: data, headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        result.className = body.ok ? "test-ok" : "test-failed";
        var problems = Object.keys(body.errors || {}).map(function (field) {
          return field + ": " + body.errors[field].join(" ");
        });
        result.textContent = problems.length ? "Fix these first: " + problems.join("; ") : body.message;
      })
      .catch(function () {
        result.className = "test-failed";
        result.textContent = "The test could not be run: the server did not answer.";
      })
      .finally(function () { button.disabled = false; });
  });
})();
