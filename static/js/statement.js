// The statement page: print (or save as PDF) and move between months. Plain links still work without it.
document.querySelectorAll("[data-print]").forEach((button) => button.addEventListener("click", () => window.print()));
const month = document.getElementById("statement-month");
if (month) month.addEventListener("change", () => { window.location.assign(month.value); });
