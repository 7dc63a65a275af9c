"""The MLflow UI of the local stack, in a real headless browser (Debian's chromium).

Playwright drives ``/usr/bin/chromium`` (no browser download). ``.ci/run`` installs it;
without it these tests skip. :func:`mlflow_ui_texts` is also used by the end-to-end test
on the pipeline's own runs (``tests/test_stack_e2e.py``).
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


@pytest.fixture(scope="module")
def mlflow_stack(tmp_path_factory):
    """The local stack (``xrdpipe.stack.up``) on free ports, stopped at the end."""
    from xrdpipe import stack
    from xrdpipe.config import Settings

    root = tmp_path_factory.mktemp("ui-stack")
    settings = Settings(
        data_dir=root / "data", prefect_port=stack.free_port(), mlflow_port=stack.free_port()
    )
    info = stack.up(settings)
    try:
        yield info
    finally:
        stack.down(settings)
    assert not any(s.running for s in stack.status(settings))


@needs_chromium
def test_mlflow_ui_lists_the_experiment_and_the_registered_model(mlflow_stack, tmp_path):
    from mlflow.tracking import MlflowClient

    url = mlflow_stack.endpoints.mlflow_ui
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment_id = client.create_experiment("xrdpipe/ui-check")
    run = client.create_run(experiment_id, run_name="ui-run")
    client.log_metric(run.info.run_id, "test_accuracy", 0.75)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("xrdpipe-ui-check-model")
    client.create_model_version(
        "xrdpipe-ui-check-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )

    texts = mlflow_ui_texts(
        url,
        {"#/experiments": ["xrdpipe/ui-check"], "#/models": ["xrdpipe-ui-check-model"]},
        tmp_path / "chromium-profile",
    )
    assert "xrdpipe/ui-check" in texts["#/experiments"]
    assert "xrdpipe-ui-check-model" in texts["#/models"]
    assert "xrdpipe-ui-check-model" not in texts["#/experiments"]
