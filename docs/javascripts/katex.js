// Render the math that pymdownx.arithmatex marks: <span class="arithmatex">\(...\)</span> inline and
// <div class="arithmatex">\[...\]</div> for display math. document$ is Material for MkDocs' page
// observable, which emits each page it loads.
function renderArithmatex(root) {
  for (const element of root.querySelectorAll(".arithmatex")) {
    const source = element.textContent.trim();
    const display = source.startsWith("\\[");
    const tex = source.slice(2, -2);  // strips \( \) or \[ \]
    katex.render(tex, element, { displayMode: display, throwOnError: false });
  }
}

document$.subscribe(({ body }) => renderArithmatex(body));
