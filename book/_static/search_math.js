/* Search snippets with readable math.
 *
 * Sphinx's searchtools.js cuts each result's snippet from the text of the page's HTML, where
 * math is still TeX source ("\(\mu_B\)"); MathJax only typesets it in the browser. This
 * wraps Search.htmlToText so that math elements read "μ_B" there: delimiters dropped, common
 * macros as Unicode, other macros and braces removed; it also cuts the snippets from the
 * article alone, without the page's buttons and contents list. Loaded on every page (html_js_files in
 * _config.yml); it acts only on the search page, where searchtools.js defines Search.
 */
(() => {
  const SYMBOLS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε",
    eta: "η", theta: "θ", kappa: "κ", lambda: "λ", mu: "μ", nu: "ν", pi: "π", rho: "ρ",
    sigma: "σ", tau: "τ", phi: "φ", chi: "χ", psi: "ψ", omega: "ω", Gamma: "Γ",
    Delta: "Δ", Sigma: "Σ", Omega: "Ω", sum: "Σ", prod: "Π", partial: "∂", nabla: "∇",
    cdot: "·", times: "×", approx: "≈", le: "≤", leq: "≤", ge: "≥", geq: "≥", ne: "≠",
    neq: "≠", to: "→", rightarrow: "→", leftarrow: "←", infty: "∞", sqrt: "√", pm: "±",
    in: "∈", ldots: "…", cdots: "⋯", dots: "…", quad: " ", qquad: "  ",
  };
  const ACCENTS = { hat: "\u0302", bar: "\u0304", tilde: "\u0303" };

  function readableTex(tex) {
    let s = tex.trim().replace(/\\[()[\]]|\$\$?/g, " ");  // \( \) \[ \] $ $$
    s = s.replace(/\\(begin|end)\s*\{[^{}]*\}/g, " ");
    for (let pass = 0; pass < 4; pass++) {  // innermost braces first: \frac{a}{\sqrt{b}}
      // \hat{x} -> x̂ (the accent on the last character of the argument)
      s = s.replace(/\\(hat|bar|tilde|widehat)\s*\{([^{}]*)\}|\\(hat|bar|tilde)\s*(\w)/g,
        (m, a1, arg1, a2, arg2) => (arg1 ?? arg2) + ACCENTS[(a1 || a2).replace("wide", "")]);
      s = s.replace(/\\sqrt\s*\{([^{}]*)\}/g, "√($1)");
      s = s.replace(/\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, "($1)/($2)");
      s = s.replace(/\\frac\s*(\w)\s*(\w)/g, "$1/$2");  // \frac1m
      s = s.replace(/\\(?:text|mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}/g, "$1");
    }
    s = s.replace(/\\(left|right|big|Big|bigg|Bigg|displaystyle|,|;|!)/g, "");
    s = s.replace(/\\([A-Za-z]+)/g, (m, name) => SYMBOLS[name] ?? name);
    s = s.replace(/\\\\/g, "; ").replace(/[{}&]/g, "").replace(/\s+/g, " ");
    return s.trim();
  }

  function install() {
    if (typeof Search === "undefined" || !Search.htmlToText || Search._readableMath) return;
    const original = Search.htmlToText;
    Search.htmlToText = (htmlString, anchor) => {
      const doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".math").forEach((el) => {
        // a numbered equation: "\[...\]" next to "(4.1)" and its "#" link
        el.querySelectorAll(".headerlink").forEach((link) => link.remove());
        const eqno = el.querySelector(".eqno");
        const number = eqno ? ` ${eqno.textContent.trim()}` : "";
        if (eqno) eqno.remove();
        el.textContent = readableTex(el.textContent) + number;
      });
      // The theme's [role=main] also holds the page's buttons and its contents list: keep
      // the article alone, so snippets start in the text, and one space for each run of
      // white space (the HTML's indentation).
      const article = doc.querySelector("article.bd-article");
      if (article) {
        const main = doc.createElement("div");
        main.setAttribute("role", "main");
        main.append(...article.childNodes);
        doc.body.replaceChildren(main);
      }
      return original(doc.documentElement.outerHTML, anchor).replace(/\s+/g, " ");
    };
    Search._readableMath = true;
  }
  // searchtools.js comes after this file on the search page and starts the query on
  // DOMContentLoaded, after this listener; snippets are made later, once pages are fetched.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", install);
  else install();
  window.bncourseReadableTex = readableTex;  // for tests/test_book.py
})();
