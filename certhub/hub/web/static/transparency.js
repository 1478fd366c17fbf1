// The public page: the log-size chart, and the receipt form wired to receipt.js.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  if (data.sizes.length) {
    new Chart(document.getElementById("chart-size"), {
      type: "line",
      data: { labels: data.times, datasets: [{ label: "条目数 Entries", data: data.sizes, borderColor: "#0b4f9c", pointRadius: 0 }] },
      options: { maintainAspectRatio: false, animation: false },
    });
  }
  const form = document.getElementById("receipt-form");
  const out = document.getElementById("receipt-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    out.className = "";
    // No verdict while checking: the previous one must not stand for this receipt.
    out.dataset.verdict = "checking";
    out.textContent = "核验中… Checking…";
    const verdict = await window.certhubReceipt.check(
      document.getElementById("receipt-text").value,
      document.getElementById("receipt-vkey").value.trim(),
      async (index, size) => {
        const response = await fetch(`/transparency/proof?index=${index}&size=${size}`);
        if (!response.ok) throw new Error(`the log gave no proof (HTTP ${response.status})`);
        return (await response.json()).hashes;
      },
    );
    out.className = verdict.ok ? "pass" : "fail";
    out.dataset.verdict = verdict.ok ? "pass" : "fail";
    out.textContent = verdict.ok
      ? `✓ 回执有效：第 ${verdict.index} 条记录在日志签名的检查点（${verdict.size} 条）中。Valid: entry ${verdict.index} is in the checkpoint of size ${verdict.size} signed by ${verdict.signer}.`
      : `✗ 回执无效 Not valid: ${verdict.reason}`;
  });
})();
