// flytenotify console: live list updates, "ago" times, select-all. No framework.
"use strict";

const LIVE_INTERVAL_MS = 2000;

function refreshAgo() {
  const now = Date.now() / 1000;
  for (const el of document.querySelectorAll(".ago[data-at]")) {
    el.textContent = ago(now - Number(el.dataset.at));
  }
}

function ago(seconds) {
  const future = seconds < 0;
  seconds = Math.abs(seconds);
  let amount = Math.floor(seconds) + " s";
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds >= size) { amount = Math.floor(seconds / size) + " " + unit; break; }
  }
  return future ? "in " + amount : amount + " ago";
}

// The server renders (and escapes) the rows; we only swap them in.
function startLive(tbody) {
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch(tbody.dataset.live, { credentials: "same-origin" });
      if (answer.redirected) {
        location.reload();  // the session ended: show the login page, not rows
        return;
      }
      if (answer.ok) {
        const rows = await answer.text();
        if (rows !== tbody.dataset.rows) {
          tbody.innerHTML = rows;
          tbody.dataset.rows = rows;
          refreshAgo();
        }
      }
    } finally {
      busy = false;
    }
  }, LIVE_INTERVAL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  refreshAgo();
  setInterval(refreshAgo, 15000);
  const live = document.querySelector("tbody[data-live]");
  if (live) startLive(live);
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll('input[type=checkbox][name="id"]')) {
        box.checked = all.checked;
      }
    });
  }
});
