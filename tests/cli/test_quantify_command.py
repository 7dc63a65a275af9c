"""``xrdpipe quantify``'s command line: errors before any work, named."""

from __future__ import annotations

from typer.testing import CliRunner


def test_a_phases_path_that_is_not_a_folder_fails_with_its_name(tmp_path):
    from xrdpipe.cli import app

    scan = tmp_path / "s.xy"
    scan.write_text("10 1\n11 2\n")
    result = CliRunner().invoke(
        app,
        ["quantify", str(scan), "--phases", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path)],
        env={"NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert result.exit_code == 2
    assert "nowhere" in result.output and "is not a folder" in result.output


def test_a_standard_without_its_weight_is_refused(tmp_path):
    from xrdpipe.cli import app

    phases = tmp_path / "phases"
    phases.mkdir()
    result = CliRunner().invoke(
        app,
        ["quantify", "s.xy", "--phases", str(phases), "--internal-standard", "Si",
         "--data-dir", str(tmp_path)],
        env={"NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--standard-wt" in result.output
