// cola: the only script of the web app. Everything works without it except live updates;
// it adds a code editor's Tab key, per-language starters and limits, switching between a
// program and a numeric problem (and between methods) in place, and live job status.
"use strict";

document.documentElement.classList.add("js");

// ---- Code editor: Tab indents, Shift+Tab dedents, Esc then Tab leaves the field. ----
function indentUnit() {
  const language = document.getElementById("language");
  return language && language.value === "go" ? "\t" : "    ";
}

function setupEditor(area) {
  let escaped = false;
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      escaped = true;
      return;
    }
    if (event.key !== "Tab" || event.ctrlKey || event.altKey || event.metaKey || escaped) {
      escaped = false;
      return;
    }
    event.preventDefault();
    const unit = indentUnit();
    const value = area.value;
    const start = area.selectionStart;
    const end = area.selectionEnd;
    const lineStart = value.lastIndexOf("\n", start - 1) + 1;
    if (!event.shiftKey && start === end) {
      area.setRangeText(unit, start, end, "end");
    } else {
      // Indent or dedent every line the selection touches.
      const block = value.slice(lineStart, end);
      const lines = block.split("\n");
      const changed = lines.map((line) => {
        if (!event.shiftKey) return unit + line;
        if (line.startsWith("\t")) return line.slice(1);
        return line.replace(/^ {1,4}/, "");
      });
      const text = changed.join("\n");
      area.setRangeText(text, lineStart, end, "preserve");
      if (start === end) {
        const moved = Math.max(lineStart, start + (text.length - block.length));
        area.setSelectionRange(moved, moved);
      } else {
        area.setSelectionRange(lineStart, lineStart + text.length);
      }
    }
    area.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

document.querySelectorAll("textarea.code").forEach((area) => {
  // Numeric parameters are short: Tab moves on there.
  if (area.id !== "stdin" && area.id !== "args" && !area.closest("fieldset.method")) setupEditor(area);
});

// ---- Program or numeric problem: the language select shows one and disables the other. ----
function setMode(numeric) {
  const program = document.getElementById("program-mode");
  const problem = document.getElementById("numeric-mode");
  const mode = document.getElementById("mode");
  if (!program || !problem || !mode) return;
  program.hidden = numeric;
  program.disabled = numeric;
  problem.hidden = !numeric;
  problem.disabled = !numeric;
  mode.value = numeric ? "numeric" : "program";
}

// ---- Numeric methods: the method select shows exactly that method's fields. ----
const methodSelect = document.getElementById("method");
if (methodSelect) {
  methodSelect.addEventListener("change", () => {
    for (const set of document.querySelectorAll("fieldset.method")) {
      const shown = set.dataset.method === methodSelect.value;
      set.hidden = !shown;
      set.disabled = !shown;
    }
    const shownMethod = document.getElementById("shown-method");
    if (shownMethod) shownMethod.value = methodSelect.value;
  });
}

// ---- Language select: starter program, file name, extensions and limits follow it. ----
const languageSelect = document.getElementById("language");
if (languageSelect) {
  const source = document.getElementById("source");
  const starters = Array.from(languageSelect.options).map((o) => (o.dataset.starter || "").trim());
  languageSelect.addEventListener("change", () => {
    const option = languageSelect.selectedOptions[0];
    if (!option) return;
    const data = option.dataset;
    setMode(data.mode === "numeric");
    const current = source.value.trim();
    if (data.mode !== "numeric" && (current === "" || starters.includes(current))) {
      source.value = data.starter || "";
    }
    const file = document.getElementById("source-file");
    if (file) file.textContent = data.sourceFile || "";
    const extensions = document.getElementById("extensions");
    if (extensions) extensions.textContent = data.extensions || "";
    for (const item of (data.limits || "").split(",")) {
      const [name, dflt, max] = item.split(":");
      const input = document.getElementById(name);
      if (!input) continue;
      input.placeholder = dflt;
      input.max = max;
      const help = document.getElementById(name + "-help");
      if (help) {
        const d = help.querySelector(".default");
        const m = help.querySelector(".max");
        if (d) d.textContent = dflt;
        if (m) m.textContent = max;
      }
    }
  });
}

// ---- Live updates (Server-Sent Events from /events). ----
function liveStatus(text, state) {
  const status = document.getElementById("live-status");
  if (!status) return;
  status.textContent = text;
  status.classList.toggle("on", state === "on");
  status.classList.toggle("off", state === "off");
}

function connect(onJob) {
  let source;
  const open = () => {
    source = new EventSource("/events");
    source.addEventListener("open", () => liveStatus("Live", "on"));
    source.addEventListener("job", (event) => {
      try {
        onJob(JSON.parse(event.data));
      } catch (error) {
        console.error("cola: bad live event", error);
      }
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // The server refused (e.g. the session ended): try again later, slowly.
        liveStatus("Live updates stopped: reload the page.", "off");
        setTimeout(open, 15000);
      } else {
        liveStatus("Reconnecting…", "off");
      }
    });
  };
  open();
}

function cell(row, className) {
  let td = row.querySelector("td." + className);
  if (!td) {
    td = document.createElement("td");
    td.className = className;
    row.appendChild(td);
  }
  return td;
}

function fillRow(row, job) {
  row.dataset.revision = String(job.revision);
  let link = row.querySelector("a.job-link");
  if (!link) {
    const td = document.createElement("td");
    link = document.createElement("a");
    link.className = "job-link";
    td.appendChild(link);
    row.appendChild(td);
  }
  link.href = job.url;
  link.replaceChildren(Object.assign(document.createElement("code"), { textContent: job.short_id }));
  cell(row, "language").textContent = job.language;
  const status = cell(row, "status");
  const badge = document.createElement("span");
  badge.className = "badge badge-" + job.status;
  badge.textContent = job.status_label;
  status.replaceChildren(badge);
  if (job.reason) {
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = job.reason;
    status.append(" ", reason);
  }
  const created = cell(row, "created");
  const time = document.createElement("time");
  time.dateTime = job.created_iso;
  time.textContent = job.created;
  created.replaceChildren(time);
  cell(row, "duration").textContent = job.duration;
}

const jobsTable = document.getElementById("jobs");
if (jobsTable) {
  const body = jobsTable.tBodies[0];
  const firstPage = jobsTable.dataset.firstPage === "true";
  connect((job) => {
    let row = document.getElementById("job-" + job.id);
    if (row) {
      if (Number(row.dataset.revision || 0) >= job.revision) return;
      const before = row.querySelector(".badge");
      const was = before ? before.textContent : "";
      fillRow(row, job);
      if (was !== job.status_label) {
        row.classList.remove("changed");
        void row.offsetWidth;
        row.classList.add("changed");
        if (job.terminal) liveStatus("Job " + job.short_id + ": " + job.status_label.toLowerCase(), "on");
      }
      return;
    }
    if (!firstPage) return;
    row = document.createElement("tr");
    row.id = "job-" + job.id;
    fillRow(row, job);
    // Newest first: job ids grow with time.
    const after = Array.from(body.rows).find((r) => r.id.slice(4) < job.id);
    body.insertBefore(row, after || null);
    const empty = document.getElementById("no-jobs");
    if (empty) empty.hidden = true;
  });
}

const jobArticle = document.getElementById("job");
const ended = ["succeeded", "failed", "cancelled"];
if (jobArticle && !ended.includes(jobArticle.dataset.status)) {
  const { id, status, revision } = jobArticle.dataset;
  connect((job) => {
    if (job.id !== id || job.revision <= Number(revision)) return;
    if (job.status !== status) {
      // The page shows much more than a row: load it again.
      window.location.reload();
    }
  });
}
