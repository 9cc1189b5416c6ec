// simulate annotate: keyboard-first labeling. No dependencies, no inline script (the page's
// Content-Security-Policy forbids it); every answer is POSTed as JSON with the CSRF token and
// is on disk when the server replies. Text from the server is set with textContent only.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const help = document.getElementById("help");
  const page = document.getElementById("page");
  const questions = Array.from(document.querySelectorAll(".q"));
  let current = -1;

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.error || response.statusText);
        return data;
      });
    });
  }

  function focusQuestion(index) {
    if (!questions.length) return;
    current = Math.max(0, Math.min(index, questions.length - 1));
    questions.forEach(function (q, i) { q.classList.toggle("current", i === current); });
    const q = questions[current];
    q.focus({ preventScroll: true });
    q.scrollIntoView({ block: "center" });
  }

  function unanswered(from) {
    for (let i = from; i < questions.length; i++) {
      if (!questions[i].dataset.answer) return i;
    }
    for (let i = 0; i < from; i++) {
      if (!questions[i].dataset.answer) return i;
    }
    return -1;
  }

  function showEnd() {
    const end = document.getElementById("end");
    if (end) end.hidden = unanswered(0) !== -1;
  }

  function slot(q) {
    return {
      episode_id: q.dataset.episode,
      criterion: q.dataset.criterion,
      turn_index: q.dataset.turn === "" ? null : Number(q.dataset.turn),
      tool_call_index: q.dataset.call === "" ? null : Number(q.dataset.call),
    };
  }

  function showSuggestions(q, suggestions) {
    const box = q.querySelector(".suggestions");
    box.replaceChildren();
    suggestions.forEach(function (s) {
      const p = document.createElement("p");
      p.className = "suggestion";
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "suggestion";
      const value = document.createElement("b");
      value.textContent = s.value;
      p.append(tag, " " + s.labeler + ": ", value);
      if (s.split) p.append(" (samples split " + Math.round(s.split * 100) + "%)");
      if (s.rationale) p.append(" — " + s.rationale);
      box.append(p);
    });
  }

  function setStatus(q, text, failed) {
    const status = q.querySelector(".status");
    status.textContent = text;
    status.classList.toggle("failed", Boolean(failed));
  }

  // Answers are sent one after another, in the order given; leaving the page waits for them.
  let pending = Promise.resolve();

  function answer(q, value, advance) {
    const rationale = q.querySelector(".rationale").value;
    const before = q.dataset.answer;
    q.dataset.answer = value;  // at once, so the next keystroke goes to the next question
    setStatus(q, "saving…");
    pending = pending
      .then(function () {
        return post("/api/answer", Object.assign(slot(q), { value: value, rationale: rationale }));
      })
      .then(function (data) {
        q.dataset.savedRationale = rationale;
        q.classList.add("answered");
        q.querySelectorAll(".choice").forEach(function (b) {
          b.classList.toggle("chosen", b.dataset.value === value);
        });
        setStatus(q, "saved");
        showSuggestions(q, data.suggestions);
        document.getElementById("progress").textContent =
          data.done + " of " + data.total + " episodes done";
        showEnd();
      })
      .catch(function (error) {
        q.dataset.answer = before || "";
        setStatus(q, "not saved: " + error.message, true);
      });
    if (advance) {
      const next = unanswered(questions.indexOf(q) + 1);
      if (next !== -1) focusQuestion(next);
    }
    showEnd();
  }

  function go(url) {
    pending.then(function () { window.location.assign(url); });
  }

  function undo() {
    pending
      .then(function () { return post("/api/undo", {}); })
      .then(function (data) { go("/episode/" + encodeURIComponent(data.episode_id) + window.location.search); })
      .catch(function (error) {
        if (current >= 0) setStatus(questions[current], error.message, true);
      });
  }

  questions.forEach(function (q, index) {
    q.dataset.savedRationale = q.querySelector(".rationale").value;
    q.addEventListener("click", function () { if (current !== index) focusQuestion(index); });
    q.querySelectorAll(".choice").forEach(function (button) {
      button.addEventListener("click", function () { answer(q, button.dataset.value, false); });
    });
    const box = q.querySelector(".rationale");
    box.addEventListener("blur", function () {
      // a rationale written after the answer is saved with it again
      if (q.dataset.answer && box.value !== q.dataset.savedRationale) {
        answer(q, q.dataset.answer, false);
      }
    });
  });

  const help_link = document.getElementById("help-link");
  if (help_link) {
    help_link.addEventListener("click", function (event) {
      event.preventDefault();
      help.hidden = !help.hidden;
    });
  }

  const reload = document.getElementById("live-reload");
  if (reload) {
    window.setTimeout(function () { window.location.reload(); }, Number(reload.dataset.seconds) * 1000);
  }

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    const typing = target instanceof HTMLTextAreaElement || target instanceof HTMLInputElement ||
      target instanceof HTMLSelectElement;
    if (typing) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (key === "?") { help.hidden = !help.hidden; return; }
    if (key === "Escape") { help.hidden = true; return; }
    if (!page) {
      if (key === "u") go(document.getElementById("start").getAttribute("href"));
      return;
    }
    const q = current >= 0 ? questions[current] : null;
    if (key === "j") {
      if (current < questions.length - 1) focusQuestion(current + 1); else go(page.dataset.next);
    } else if (key === "k") {
      if (current > 0) focusQuestion(current - 1); else go(page.dataset.prev);
    } else if (key === "]") {
      go(page.dataset.next);
    } else if (key === "[") {
      go(page.dataset.prev);
    } else if (key === "s") {
      go(page.dataset.skip);
    } else if (key === "u") {
      const next = unanswered(current + 1);
      if (next !== -1) focusQuestion(next); else go(page.dataset.unlabeled);
    } else if (key === "z") {
      undo();
    } else if (key === "r" && q) {
      event.preventDefault();
      q.querySelector(".rationale").focus();
    } else if (q) {
      const button = Array.from(q.querySelectorAll(".choice")).find(function (b) {
        return b.dataset.key === key;
      });
      if (button) answer(q, button.dataset.value, true);
      else return;
    } else {
      return;
    }
    event.preventDefault();
  });

  if (questions.length) {
    const first = unanswered(0);
    focusQuestion(first === -1 ? 0 : first);
    showEnd();
  }
})();
