"""sphinx-thebe's inline script (``const THEBE_JS_URL = ...``) lands twice in every page (once
with filename None, once with ""), and the second copy throws "Identifier 'THEBE_JS_URL' has
already been declared" in a reader's JavaScript console: keep one copy of each script. The
browser test (tests/test_browser.py) fails on any console error.
"""

from __future__ import annotations


def _one_copy_of_each_script(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (getattr(script, "filename", str(script)) or "",
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _one_copy_of_each_script)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
