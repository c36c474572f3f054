"""service/pages.py: only the playground's own files, each from its own folder and of its type."""

from __future__ import annotations

import pytest

from core.errors import OpenAIError
from service.pages import MODULES, STATIC, static_path


def test_modules_come_from_the_js_folder_only() -> None:
    assert static_path("main.js", MODULES, frozenset({".js"})) == MODULES / "main.js"
    assert static_path("style.css") == STATIC / "style.css"
    for name, folder in (("style.css", MODULES), ("../style.css", MODULES), ("js", STATIC),
                         ("../pages.py", MODULES), ("main.js", STATIC), (".x.js", MODULES),
                         ("a\x00.js", MODULES), ("x" * 5000 + ".js", MODULES)):
        with pytest.raises(OpenAIError) as caught:
            static_path(name, folder, frozenset({".js"}) if folder == MODULES else
                        frozenset({".css", ".js", ".html"}))
        assert caught.value.status == 404, name


def test_every_module_is_small() -> None:
    """The page is small ES modules (issue 19), not one large script."""
    modules = sorted(MODULES.glob("*.js"))
    assert len(modules) >= 8 and not (STATIC / "app.js").exists()
    for module in modules:
        assert len(module.read_text().splitlines()) <= 300, module.name


def test_the_page_preloads_every_module() -> None:
    page = (STATIC / "index.html").read_text()
    assert '<script type="module" src="/static/js/main.js">' in page
    for module in MODULES.glob("*.js"):
        if module.name != "main.js":
            assert f'<link rel="modulepreload" href="/static/js/{module.name}">' in page
