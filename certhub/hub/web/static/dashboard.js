// Draws the dashboard's charts from the JSON the server embedded; the tables beside the
// charts carry the same numbers for keyboard and screen-reader users.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const blue = "#0b4f9c", green = "#0d6b2f", grey = "#6b6b6b", orange = "#b35900";
  const pct = { y: { min: 0, max: 100, ticks: { callback: (v) => v + "%" } } };
  const flat = (n, v) => Array(n).fill(v);
  new Chart(document.getElementById("chart-months"), {
    type: "line",
    data: {
      labels: data.months,
      datasets: [
        { label: "电子应用率 Usage rate", data: data.usage, borderColor: blue, backgroundColor: blue, tension: 0.2 },
        { label: "免证率 Exemption rate", data: data.exemption, borderColor: green, backgroundColor: green, tension: 0.2 },
        { label: "应用率目标 Usage target", data: flat(data.months.length, data.targets.usage), borderColor: blue, borderDash: [6, 4], pointRadius: 0 },
        { label: "免证率目标 Exemption target", data: flat(data.months.length, data.targets.exemption), borderColor: green, borderDash: [6, 4], pointRadius: 0 },
      ],
    },
    options: { maintainAspectRatio: false, animation: false, scales: pct },
  });
  new Chart(document.getElementById("chart-departments"), {
    type: "bar",
    data: {
      labels: data.departments,
      datasets: [
        { label: "电子应用率 Usage rate", data: data.department_usage, backgroundColor: blue },
        { type: "line", label: "目标 Target", data: flat(data.departments.length, data.targets.usage), borderColor: orange, borderDash: [6, 4], pointRadius: 0 },
      ],
    },
    options: { maintainAspectRatio: false, animation: false, indexAxis: "y", scales: { x: pct.y } },
  });
  new Chart(document.getElementById("chart-certificates"), {
    type: "bar",
    data: {
      labels: data.certificates_by_department.map((d) => d[0]),
      datasets: [{ label: "证照 Certificates", data: data.certificates_by_department.map((d) => d[1]), backgroundColor: grey }],
    },
    options: { maintainAspectRatio: false, animation: false, indexAxis: "y" },
  });
})();
