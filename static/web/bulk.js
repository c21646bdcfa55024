// Bulk actions on the VM list (issue 13): the checked rows, one action, one API request
// (POST /api/v1/vms/bulk/), answered with a parent job and one child job per VM.
// Migrations run one after another on the server side (seed 7.7).
(function () {
  "use strict";

  function checked() {
    return Array.prototype.map.call(document.querySelectorAll("input.bulk-select:checked"), function (box) {
      return parseInt(box.value, 10);
    });
  }

  // The servers a migration may name, read once from the API when "migrate" is chosen.
  function loadServers(select) {
    if (select.dataset.loaded) return;
    select.dataset.loaded = "1";
    fetch("/api/v1/servers/?limit=500", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { results: [] }; })
      .then(function (data) {
        (data.results || data).forEach(function (server) {
          var option = document.createElement("option");
          option.value = server.id;
          option.textContent = server.name;
          select.appendChild(option);
        });
      });
  }

  function refresh(form) {
    var count = checked().length;
    form.querySelector("[data-bulk-count]").textContent = String(count);
    form.querySelector("button[type=submit]").disabled = count === 0;
    var action = form.elements.action.value;
    form.querySelector("[data-bulk-target]").hidden = action !== "migrate";
    if (action === "migrate") loadServers(form.elements.target_server);
  }

  function submit(form, event) {
    event.preventDefault();
    var body = { action: form.elements.action.value, vms: checked() };
    var server = form.elements.target_server.value;
    if (body.action === "migrate" && server) body.target_server = parseInt(server, 10);
    var status = form.querySelector("[data-bulk-status]");
    var token = document.querySelector("meta[name=csrf-token]").content;
    fetch(form.dataset.url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token, Accept: "application/json" },
      body: JSON.stringify(body),
    })
      .then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (answer) {
        status.textContent = "";
        if (answer.ok) {
          var link = document.createElement("a");
          link.href = "/jobs/" + answer.data.id + "/";
          link.textContent = answer.data.summary + " (#" + answer.data.id + ")";
          status.appendChild(link);
        } else {
          status.textContent = answer.data.detail || JSON.stringify(answer.data);
        }
      });
  }

  function init() {
    var form = document.getElementById("vm-bulk");
    if (!form) return;
    document.addEventListener("change", function (event) {
      if (event.target.classList && event.target.classList.contains("bulk-select")) refresh(form);
    });
    form.addEventListener("change", function () { refresh(form); });
    form.addEventListener("submit", function (event) { submit(form, event); });
    refresh(form);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
