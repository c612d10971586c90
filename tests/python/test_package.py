"""The shape of the `herald` package: exactly the public API at the top, typed (mypy --strict)."""
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PUBLIC_SUBMODULES = {"durable", "tasker_core"}  # importable as herald.<name>, documented


def test_every_name_in_all_resolves_once(herald_module):
    names = herald_module.__all__
    assert len(names) == len(set(names)), "duplicates in herald.__all__"
    missing = [name for name in names if not hasattr(herald_module, name)]
    assert missing == []


def test_all_holds_the_documented_entry_points(herald_module):
    expected = {"Worker", "WorkerState", "EventBus", "BasePublisher", "BaseSubscriber", "PublisherRegistry",
                "SubscriberRegistry", "SubscriberResult", "StepEventContext", "DomainEvent", "StepCompletion",
                "ZmqPublisher", "ZmqSubscriber", "DurableConsumer", "DurableError", "HeraldError",
                "set_native_log_level", "durable"}
    assert expected <= set(herald_module.__all__)


def test_public_names_in_dir_are_exactly_all(herald_module):
    public = {name for name in dir(herald_module) if not name.startswith("_")}
    assert public - PUBLIC_SUBMODULES == set(herald_module.__all__) - PUBLIC_SUBMODULES


def test_dir_shows_no_stdlib_modules_typing_names_or_private_helpers(herald_module):
    offenders = []
    for name in dir(herald_module):
        if name.startswith("__") and name.endswith("__"):
            continue
        value = getattr(herald_module, name)
        if isinstance(value, types.ModuleType):
            if not value.__name__.startswith("herald."):
                offenders.append(f"{name} (module {value.__name__})")
        elif name.startswith("_"):
            offenders.append(f"{name} (private helper {type(value).__name__})")
        elif getattr(value, "__module__", "herald").split(".")[0] in ("typing", "collections", "abc"):
            offenders.append(f"{name} (from {value.__module__})")
    assert offenders == []
    for name in ("Any", "Optional", "os", "asyncio", "threading", "logger", "annotations"):
        assert not hasattr(herald_module, name), name


def test_private_modules_are_herald_s_own(herald_module):
    private = sorted(name for name in dir(herald_module)
                     if name.startswith("_") and not name.startswith("__"))
    assert "_herald" in private  # the native extension
    for name in private:
        assert getattr(herald_module, name).__name__ == f"herald.{name}"


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """One cache for both mypy runs (the second reuses the standard library's analysis)."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy_or_skip():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed for this interpreter (Debian: apt-get install mypy)")


def _mypy(args, cwd, cache_dir):
    # Type checking needs neither the build's copy of the package (the source tree is checked)
    # nor the sanitizer runtimes scripts/test.sh asan preloads into the interpreter.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env["MYPYPATH"] = str(REPO / "python")
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache_dir), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_package_passes_mypy_strict(mypy_cache):
    _mypy_or_skip()
    result = _mypy(["-p", "herald"], REPO / "python", mypy_cache)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_python_examples_pass_mypy_strict(mypy_cache):
    _mypy_or_skip()
    examples = sorted(str(p) for p in (REPO / "examples").rglob("*.py"))
    assert examples, "no Python examples found"
    result = _mypy(examples, REPO, mypy_cache)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_native_stub_matches_the_built_extension(herald_module, tmp_path):
    # mypy's stubtest imports the built _herald and compares it with python/herald/_herald.pyi:
    # every class, function, method and property on one side must be on the other (pybind11
    # functions carry no signatures, so parameter names are not compared). The environment is
    # kept whole: the extension may be a sanitizer build that needs its preloaded runtimes.
    _mypy_or_skip()
    env = dict(os.environ)
    env["MYPYPATH"] = str(REPO / "python")
    env["PYTHONPATH"] = str(Path(herald_module.__file__).resolve().parents[1])
    args = [sys.executable, "-m", "mypy.stubtest",
            "--allowlist", str(REPO / "python" / "stubtest-allowlist.txt"), "herald._herald"]
    if not hasattr(herald_module._herald, "_DurableConsumer"):  # a build without the PostgreSQL module
        pytest.skip("this build has no PostgreSQL module: the stub declares the durable road")
    # cwd: stubtest keeps its cache (.mypy_cache) in the working directory.
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_native_stub_names_what_the_extension_has(herald_module):
    # The stub is read by mypy, the extension by Python: a name in one and not the other is a
    # stub out of step with python/src.
    import ast

    stub = ast.parse((REPO / "python" / "herald" / "_herald.pyi").read_text())
    stubbed = {node.name for node in stub.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    stubbed -= {"_PublishFunction"}  # a typing-only protocol for the publish function's shape
    native = herald_module._herald
    runtime = {name for name in dir(native) if not name.startswith("__")}
    if not hasattr(native, "_DurableConsumer"):  # a build without the PostgreSQL module
        stubbed = {name for name in stubbed if "urable" not in name}
    assert stubbed == runtime
