"""Reading the MLflow UI in a real headless browser (Debian's chromium), for the tests.

Playwright drives ``/usr/bin/chromium`` (no browser download). ``.ci/run`` installs it;
without it the browser test skips. The end-to-end test (``tests/stack/test_stack_e2e.py``) uses
:func:`mlflow_ui_texts` on the shared stack's own runs and registered models.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
"""Playwright passes ``--user-data-dir`` itself (``launch_persistent_context``)."""
UI_TIMEOUT_MS = 60_000

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"{CHROMIUM} is absent (Debian package `chromium`; .ci/run installs it)",
)


def mlflow_ui_texts(
    base_url: str, expected: dict[str, list[str]], user_data_dir: Path
) -> dict[str, str]:
    """Open MLflow UI pages and wait until each shows its expected strings.

    Args:
        base_url: the MLflow server, e.g. ``http://127.0.0.1:5000``.
        expected: UI route (``#/experiments``, ``#/models``) to the texts it must show.
        user_data_dir: chromium's profile folder (a temporary one).

    Returns:
        The visible text of each page.
    """
    from playwright.sync_api import sync_playwright

    texts = {}
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = context.new_page()
            for route, wanted in expected.items():
                page.goto(f"{base_url}/{route}", timeout=UI_TIMEOUT_MS)
                for text in wanted:
                    page.get_by_text(text, exact=False).first.wait_for(
                        state="visible", timeout=UI_TIMEOUT_MS
                    )
                texts[route] = page.inner_text("body")
        finally:
            context.close()
    return texts
