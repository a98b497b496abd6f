// Progressive help only: the server checks everything again.
// Live password checklist: each rule's <li data-pattern> is marked met/unmet as the person types.
document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[data-password-rules]")) {
    const list = document.getElementById(input.dataset.passwordRules);
    if (!list) continue;
    const rules = [...list.querySelectorAll("li[data-pattern]")].map((li) => ({ li, re: new RegExp(li.dataset.pattern, "u") }));
    const update = () => {
      for (const { li, re } of rules) {
        const met = re.test(input.value);
        li.classList.toggle("met", input.value !== "" && met);
        li.classList.toggle("unmet", input.value !== "" && !met);
      }
    };
    input.addEventListener("input", update);
    update();
  }
});
