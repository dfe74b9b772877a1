// Live updates of the flow page: the server pushes the boxes' HTML over SSE (the
// session cookie travels with the request, as with every page). No other script.
(function () {
  const live = document.querySelector("[data-stream]");
  if (!live || !window.EventSource) return;
  const source = new EventSource(live.dataset.stream);
  source.addEventListener("flow", (e) => { live.innerHTML = e.data; });
  source.onerror = () => { live.classList.add("stale"); };
  source.onopen = () => { live.classList.remove("stale"); };
})();
