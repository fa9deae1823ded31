"""pipeline.errors: a refusal is one line naming the file and the fix; a bug keeps its traceback."""

from __future__ import annotations

import errno
import sys

import pytest

from pipeline.core.errors import OPTIONAL_PACKAGES, UserError, user_message


@pytest.mark.parametrize(("exc", "expected"), [
    pytest.param(RuntimeError("Failed to evaluate ConfigExpression"), None, id="a_bug_keeps_its_traceback"),
    pytest.param(OSError(errno.ENOSPC, "No space left on device", "/runs/x/model.pt"),
                 "cannot write /runs/x/model.pt: the disk is full", id="disk_full"),
    pytest.param(OSError(errno.EROFS, "Read-only file system", "/ro/seg"),
                 "cannot write /ro/seg: the file system is read-only", id="read_only"),
    pytest.param(ModuleNotFoundError("No module named 'mlflow'", name="mlflow"),
                 "make extra-tracking (or pip install -e '.[tracking]')", id="missing_optional_package"),
    pytest.param(ImportError("import onnxruntime (No module named 'onnxruntime')."),
                 "make extra-export (or pip install -e '.[export]')", id="monai_optional_import"),
])
def test_user_message_names_the_file_and_the_fix(exc, expected):
    message = user_message(exc)
    assert message is None if expected is None else expected in message


def test_a_user_error_inside_a_config_expression_is_found_through_the_chain():
    try:
        try:
            raise UserError("case X: bad file; fix it")
        except UserError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as outer:
        assert user_message(outer) == "case X: bad file; fix it"


def test_every_optional_package_names_an_extra_of_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from tests.helpers import REPO

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for package, extra in OPTIONAL_PACKAGES.items():
        requirement = package.replace("_", "-")
        assert any(r.startswith(requirement) for r in extras[extra]), f"{package}: not in the extra {extra}"


@pytest.mark.parametrize(("argv", "refused"), [
    pytest.param(["--fold", "0", "--fold", "1"], "--fold", id="twice"),
    pytest.param(["--fold", "0", "--fold=1"], "--fold", id="with_equals"),
    pytest.param(["--fold", "0", "-fold", "1"], "-fold", id="one_dash"),
    pytest.param(["---fold", "0", "--fold", "1"], "--fold", id="three_dashes"),
    pytest.param(["--run_dir", "a", "--run-dir", "b"], "--run-dir", id="dash_for_underscore"),
    pytest.param(["--a#b", "1", "--a::b", "2"], "--a::b", id="colons_for_hash"),
    pytest.param(["--fold", "0", "--nofold"], "--nofold", id="fire_negation"),
    pytest.param(["--fold", "1", "--fold", "1"], None, id="same_value_twice"),
    pytest.param(["--fold", "-1", "--seed", "-1"], None, id="negative_values"),
    pytest.param(["--fold", "0", "--", "--fold", "1"], None, id="after_the_separator"),
])
def test_an_id_given_twice_is_refused_in_every_spelling_monais_cli_reads(argv: list[str], refused: str | None) -> None:
    """MONAI's CLI (1.6, through Fire) keeps the last of these silently; the bundle's ids are checked as it reads
    them, a repeat of the same value is harmless."""
    import fire

    from pipeline.core.errors import repeated_cli_ids

    error = repeated_cli_ids(["run", "training", *argv])
    if refused is None:
        assert error is None
        return
    assert error is not None and str(error).startswith(f"{refused} is given twice on the command line")
    if "::" not in refused and "#" not in argv[0]:  # Fire itself: one key, the last value (the silent case)
        parsed = fire.Fire(lambda **kw: kw, argv, name="x")
        assert len(parsed) == 1


class _Breaks:
    """A component whose constructor itself raises a TypeError: a bug, not its arguments."""

    def __init__(self, size: int = 1) -> None:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")


@pytest.mark.parametrize(("component", "expected"), [
    pytest.param({"_target_": "DiceLoss", "sigmoid": True, "fn_weight": 0.7},
                 "the bundle config's monai.losses.dice.DiceLoss takes no argument 'fn_weight'", id="no_such_argument"),
    pytest.param({"_target_": "DiceLoss", "sigmod": True}, "did you mean 'sigmoid'",
                 id="misspelt_argument"),
    pytest.param({"_target_": "torch.optim.AdamW", "lr": 0.1},
                 "the bundle config's torch.optim.AdamW cannot be built from the arguments it is given (lr)",
                 id="missing_argument"),
    pytest.param({"_target_": f"{__name__}._Breaks", "size": 2}, None, id="a_type_error_inside_is_a_bug"),
])
def test_a_config_component_given_arguments_it_does_not_take_is_one_line(component: dict, expected: str | None):
    from monai.bundle import ConfigParser

    import pipeline  # noqa: F401  (registers the bundle's hints)

    parser = ConfigParser({"loss": component})
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("loss")
    message = user_message(raised.value)
    assert message is None if expected is None else expected in message, message


@pytest.mark.parametrize("parent", [pytest.param(False, id="run_by_a_user"),
                                    pytest.param(True, id="run_by_a_command_of_ours_that_says_it")])
@pytest.mark.parametrize("where", ["the_verbs_cli", "monai_bundle_hook"])
def test_ctrl_c_ends_a_command_in_one_line_not_tracebacks(where: str, parent: bool, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Ctrl-C during train or infer printed two KeyboardInterrupt tracebacks, the verb's and its bundle process's
    (red team): each says one line, and a command started by another through `run_child` (a verb's bundle process,
    the demo's and the benchmarks' stages, which printed it twice) leaves it to that one."""
    import pipeline.__main__ as verbs
    from pipeline.core import process
    from pipeline.core.errors import _hook
    from pipeline.core.process import PARENT_SAYS_STOP_ENV, run_child

    monkeypatch.delenv(PARENT_SAYS_STOP_ENV, raising=False)
    if parent:  # what run_child gives the command it starts
        seen = tmp_path / "env"
        assert run_child([sys.executable, "-c", f"import os; open({str(seen)!r}, 'w').write(os.environ.get("
                                                f"{PARENT_SAYS_STOP_ENV!r}, ''))"]) == 0
        monkeypatch.setenv(PARENT_SAYS_STOP_ENV, seen.read_text())
    if where == "the_verbs_cli":
        monkeypatch.setattr(process, "exit_on_sigterm", lambda: None)  # (not this test process's handler)
        monkeypatch.setattr(verbs, "main", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
        monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # (cli silences it: Python then ends by SIGINT)
        with pytest.raises(KeyboardInterrupt):  # left to Python, which ends by SIGINT: a shell loop stops too
            verbs.cli()
    else:
        _hook(KeyboardInterrupt, KeyboardInterrupt(), None)
    err = capsys.readouterr().err
    if parent:
        assert err == ""
    else:
        assert err.strip().splitlines() == [err.strip()] and err.startswith("stopped (Ctrl-C): ")
        assert "run the same command again" in err
