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

// Rates on the overview: one uPlot chart (vendor/uplot, loaded by the overview page) with
// four series, tasks created, completed, failed and dead-lettered per minute over the last
// hour, from the JSON of /ui/rates polled at the same interval. One chart rather than four:
// one shared time axis and one hover legend to read a minute's four numbers together.
// Without JavaScript the figure's caption gives the hour's totals.
const RATE_SERIES = [
  ["created", "Created", "#0a58ca"],
  ["completed", "Completed", "#1a7f37"],
  ["failed", "Failed", "#b42318"],
  ["deadLettered", "Dead-lettered", "#8250df"],
];
const CHART_HEIGHT = 180;
// Counts are whole: the y axis' ticks step by 1, 2, 5, 10, 20, 50...
const WHOLE_STEPS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6].map((e) => m * e))
  .sort((a, b) => a - b);

function ratesText(totals) {
  return (
    `Last hour: ${totals.created} created, ${totals.completed} completed, ` +
    `${totals.failed} failed, ${totals.deadLettered} dead-lettered.`
  );
}

function rates() {
  const figure = document.querySelector("[data-rates-url]");
  const UPlot = window.uPlot;
  if (!figure || typeof UPlot !== "function") return;
  const holder = figure.querySelector("[data-chart]");
  const caption = figure.querySelector("[data-rates-caption]");
  const every = Number(document.body.dataset.refreshMs || 0);
  const width = () => Math.max(280, holder.clientWidth || 600);
  let chart = null;
  const draw = (body) => {
    const start = body.startMs / 1000;
    const xs = body.created.map((_, i) => start + body.stepSeconds * i);
    const data = [xs, ...RATE_SERIES.map(([key]) => body[key])];
    if (chart) {
      chart.setData(data);
    } else {
      chart = new UPlot(
        {
          width: width(),
          height: CHART_HEIGHT,
          scales: { x: { time: true }, y: { range: (_, min, max) => [0, Math.max(1, max)] } },
          axes: [{}, { label: "tasks / minute", incrs: WHOLE_STEPS }],
          series: [
            { label: "Minute" },
            ...RATE_SERIES.map(([, label, stroke]) => ({ label, stroke, width: 2 })),
          ],
        },
        data,
        holder,
      );
      window.addEventListener("resize", () =>
        chart.setSize({ width: width(), height: CHART_HEIGHT }),
      );
    }
    if (caption) caption.textContent = ratesText(body.totals);
  };
  const tick = async () => {
    if (document.visibilityState === "visible" || !chart) {
      try {
        const response = await fetch(figure.dataset.ratesUrl, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (response.ok) draw(await response.json());
      } catch {
        // offline for a moment: try again at the next tick
      }
    }
    if (every) window.setTimeout(tick, every);
  };
  tick();
}

selectAll();
live();
rates();
