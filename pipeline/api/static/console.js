// genguard review console: keyboard shortcuts, reveal, seek. Plain JavaScript, no build step.
(function () {
  "use strict";
  const video = document.getElementById("video");
  const veil = document.getElementById("veil");
  const reason = document.getElementById("reason");
  const form = document.getElementById("decide");

  function typing(e) {
    const t = e.target;
    return t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "radio") || t.tagName === "SELECT");
  }
  function seek(seconds) {
    if (!video) return;
    video.currentTime = Number(seconds);
    video.dataset.sought = String(seconds);
  }
  function reveal() {
    if (veil) veil.classList.toggle("revealed");
    document.querySelectorAll("button.reveal").forEach((b) => b.classList.toggle("veiled", !veil.classList.contains("revealed")));
  }
  function choose(value) {
    if (!form) return;
    const radio = form.querySelector(`input[name=decision][value=${value}]`);
    radio.checked = true;
    reason.focus();
  }

  document.querySelectorAll("[data-start]").forEach((el) => {
    if (el.tagName === "BUTTON") el.addEventListener("click", () => seek(el.dataset.start));
  });
  document.querySelectorAll("button.reveal").forEach((b) => b.addEventListener("click", () => b.classList.toggle("veiled")));

  // queue: j/k move, Enter opens
  const rows = Array.from(document.querySelectorAll("#queue tr[data-href]"));
  let at = -1;
  function select(i) {
    if (!rows.length) return;
    at = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach((r, n) => r.classList.toggle("selected", n === at));
    rows[at].querySelector("a").focus();
  }

  document.addEventListener("keydown", (e) => {
    if (form && e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); return; }
    if (e.key === "Escape" && typing(e)) { e.target.blur(); return; }
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    const marks = Array.from(document.querySelectorAll(".timeline .mark"));
    switch (e.key) {
      case "j": select(at + 1); break;
      case "k": select(at - 1); break;
      case "/": { const f = document.querySelector(".filters input[name=category]"); if (f) { e.preventDefault(); f.focus(); } break; }
      case "a": e.preventDefault(); choose("approve"); break;
      case "b": e.preventDefault(); choose("block"); break;
      case "e": e.preventDefault(); choose("escalate"); break;
      case "v": reveal(); break;
      case "m": if (video) video.muted = !video.muted; break;
      case "q": window.location.href = "/console"; break;
      case "n": {
        if (!marks.length || !video) break;
        const next = marks.map((m) => Number(m.dataset.start)).sort((x, y) => x - y).find((s) => s > video.currentTime + 0.05);
        seek(next !== undefined ? next : Number(marks[0].dataset.start));
        break;
      }
      default: return;
    }
  });
})();
