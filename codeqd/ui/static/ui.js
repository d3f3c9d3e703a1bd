// codeqd dashboard: progressive enhancement only; every page works without it.
// Live counts by short polling: the page refetches itself every data-refresh-ms and swaps
// the [data-live] block. Polling (not server-sent events) because an open event stream
// holds an ingress request per browser tab, delays graceful shutdown by its grace period,
// and is cut by many proxies; one small GET every few seconds costs one stats script call
// per shard and needs nothing of the server but the page itself.

function selectAll() {
  for (const box of document.querySelectorAll("input[data-select-all]")) {
    box.addEventListener("change", () => {
      for (const item of box.form.querySelectorAll('input[type="checkbox"][name="id"]')) {
        item.checked = box.checked;
      }
    });
  }
}

function live() {
  const every = Number(document.body.dataset.refreshMs || 0);
  const block = document.querySelector("[data-live]");
  if (!every || !block) return;
  const tick = async () => {
    if (document.visibilityState === "visible") {
      try {
        const response = await fetch(window.location.href, {
          credentials: "same-origin",
          headers: { Accept: "text/html" },
        });
        if (response.ok) {
          const doc = new DOMParser().parseFromString(await response.text(), "text/html");
          const fresh = doc.querySelector("[data-live]");
          if (fresh) block.replaceChildren(...fresh.childNodes);
        }
      } catch {
        // offline for a moment: try again at the next tick
      }
    }
    window.setTimeout(tick, every);
  };
  window.setTimeout(tick, every);
}

selectAll();
live();
