// Accessibility repairs for drf-spectacular's Swagger UI page (WCAG 2.2 AA; README: "The person's
// pages"): Swagger UI renders links inside its operation buttons (nested-interactive) and content
// outside landmarks. Its React tree re-renders, so the repairs are re-applied on every change.
function repair() {
  // The operation's path is a deep link inside the expand button: keep the text, drop the link.
  for (const link of document.querySelectorAll(".opblock-summary-control a[href]")) link.removeAttribute("href");
  // Headings step down one level at a time: the title is h1, operation groups and "Schemas" level 2.
  for (const heading of document.querySelectorAll("h3.opblock-tag, section.models h4")) {
    if (heading.getAttribute("aria-level") !== "2") heading.setAttribute("aria-level", "2");
  }
  for (const [selector, label] of [
    [".information-container", "About this API"],
    [".scheme-container", "Servers and authorisation"],
  ]) {
    const node = document.querySelector(selector);
    if (node && !node.hasAttribute("role")) {
      node.setAttribute("role", "region");
      node.setAttribute("aria-label", label);
    }
  }
}

new MutationObserver(repair).observe(document.getElementById("swagger-ui"), {
  childList: true,
  subtree: true,
  attributes: true,
  attributeFilter: ["href", "aria-level"],
});
