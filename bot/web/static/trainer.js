// The trainer page's one script: each row's buttons POST a label as JSON (the console API's CSRF rule) and show
// the answer; each POST says which label it saw (`expected`). Texts are set with textContent only: nothing from the server is parsed as HTML.
"use strict";

async function sendLabel(row, body) {
  const result = row.querySelector(".result");
  result.className = "result";
  result.textContent = "…";
  body.key = row.dataset.key;
  body.by = document.getElementById("by").value;
  // The label this page showed: the server refuses (409) when another trainer changed it since.
  body.expected = row.dataset.labelled || null;
  try {
    const response = await fetch("/trainer/api/labels", {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) {
      result.className = "result error";
      result.textContent = answer.error || ("HTTP " + response.status);
      return;
    }
    result.textContent = answer.status + ": " + answer.intent;
    row.dataset.labelled = answer.intent;
    row.querySelector("td.labelled").textContent = answer.intent;
  } catch (error) {
    result.className = "result error";
    result.textContent = String(error);
  }
}

for (const row of document.querySelectorAll("tr[data-key]")) {
  row.querySelector("button.label").addEventListener("click", () => {
    const intent = row.querySelector("select").value;
    if (!intent) {
      row.querySelector(".result").textContent = "请选择意图 choose an intent";
      return;
    }
    sendLabel(row, {intent});
  });
  row.querySelector("button.oos").addEventListener("click", () => sendLabel(row, {out_of_scope: true}));
}
