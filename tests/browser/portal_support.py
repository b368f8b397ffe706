"""Helpers for the portal's browser checks: axe-core from node_modules (nothing fetched at run time),
page-overflow and overlap measurements, and the four screen/scheme combinations every bug is tried in."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import BASE_DIR

AXE_JS = BASE_DIR / "node_modules" / "axe-core" / "axe.min.js"

# (width, height, color scheme): a laptop and a phone, in light and in dark.
SCREENS = [(1280, 900, "light"), (1280, 900, "dark"), (390, 844, "light"), (390, 844, "dark")]
SCREEN_IDS = [f"{w}x{h}-{scheme}" for w, h, scheme in SCREENS]


def screen_params():
    return pytest.mark.parametrize("screen", SCREENS, ids=SCREEN_IDS)


def new_page(browser, screen):
    width, height, scheme = screen
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    context.set_default_timeout(20_000)
    return context, context.new_page()


def shot(page, artifacts_dir: Path, name: str, screen) -> None:
    width, _height, scheme = screen
    page.screenshot(path=str(artifacts_dir / f"portal-{name}-{width}-{scheme}.png"), full_page=True)


def axe_serious(page) -> list[dict]:
    """axe-core's serious and critical violations on the current page (WCAG 2.x A/AA and best practice)."""
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: `make install` runs npm ci (axe-core is a dev dependency)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE_JS.read_text())
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.filter(v => v.impact === "serious" || v.impact === "critical").map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " :: " + (n.failureSummary || "").slice(0, 200)),
        }));
    }""")
    return result


def page_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when nothing runs off screen)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def tables_outside_their_cards(page) -> list[str]:
    """Tables whose right edge is past their card's, unless a scroll container inside the card holds them."""
    return page.evaluate("""() => {
        const bad = [];
        for (const table of document.querySelectorAll("main table")) {
            const card = table.closest(".card, .tile");
            if (!card) continue;
            const scroller = table.closest(".table-wrap, .chart-table");
            const box = (scroller && card.contains(scroller) ? scroller : table).getBoundingClientRect();
            const edge = card.getBoundingClientRect();
            if (box.right > edge.right + 1 || box.left < edge.left - 1) bad.push(table.id || table.className || "table");
        }
        return bad;
    }""")


def dangling_describedby(page) -> list[str]:
    """aria-describedby references to elements that are not on the page."""
    return page.evaluate("""() => {
        const missing = [];
        for (const el of document.querySelectorAll("[aria-describedby]")) {
            for (const id of el.getAttribute("aria-describedby").split(/\\s+/).filter(Boolean)) {
                if (!document.getElementById(id)) missing.push(`${el.id || el.name}: ${id}`);
            }
        }
        return missing;
    }""")


def covered(page, selector: str) -> str | None:
    """What covers the centre of ``selector`` (None when the element itself is on top there)."""
    return page.evaluate("""(selector) => {
        const el = document.querySelector(selector);
        el.scrollIntoView({block: "center"});
        const r = el.getBoundingClientRect();
        const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return top && (top === el || el.contains(top)) ? null : (top ? top.outerHTML.slice(0, 120) : "nothing");
    }""", selector)


def inline_code(page) -> list[str]:
    """Inline script, on*= handlers and style attributes in the served HTML (the CSP forbids them)."""
    return page.evaluate("""() => {
        const found = [];
        for (const s of document.querySelectorAll("script:not([src])")) {
            if (s.type !== "application/json") found.push("inline script");
        }
        for (const el of document.querySelectorAll("*")) {
            for (const a of el.attributes) if (/^on/i.test(a.name)) found.push(`${el.tagName} ${a.name}`);
        }
        return found;
    }""")
