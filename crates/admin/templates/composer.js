// The campaign composer: counts the audience as the operator types (POST /admin/ui/campaigns/preview).
(function () {
  var form = document.getElementById("composer");
  var out = document.getElementById("audience");
  var err = document.getElementById("audience-error");
  var timer = null;
  function count() {
    var body = new URLSearchParams(new FormData(form));
    fetch("/admin/ui/campaigns/preview", {
      method: "POST",
      headers: { "x-csrf-token": form.elements.csrf.value, "content-type": "application/x-www-form-urlencoded" },
      body: body,
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().then(function (json) { return { ok: response.ok, json: json }; });
    }).then(function (result) {
      if (result.ok) { out.textContent = result.json.users + " users"; err.textContent = ""; }
      else { out.textContent = "—"; err.textContent = result.json.message; }
    }).catch(function () { err.textContent = "could not count"; });
  }
  function later() { clearTimeout(timer); timer = setTimeout(count, 300); }
  document.getElementById("target_audience").addEventListener("change", later);
  document.getElementById("segment_filter").addEventListener("input", later);
  count();
})();
