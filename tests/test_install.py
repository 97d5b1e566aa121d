"""A plain (non-editable) install ships the recipes: a wheel built from a copy of the source
tree holds every recipe, and, installed into a folder of its own, lists and runs them by
name from any other folder. Nothing is written into the checkout."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import RECIPES, ROOT, without_later_fields

PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_NO_INDEX": "1"}


def source_files():
    """The checkout's files as git sees them (tracked, or new and not ignored), relative to
    ROOT; without git, every file but build output and caches."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        ignored = {".git", "build", "dist", "runs", "reports", "__pycache__", ".pytest_cache", ".benchmarks"}
        return [p.relative_to(ROOT) for p in ROOT.rglob("*")
                if not p.is_dir() and not ignored & set(p.relative_to(ROOT).parts)
                and not any(part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)]
    return [Path(name) for name in listed if name]


def copy_source(destination):
    """Copy the source tree to ``destination``, links kept as links."""
    for relative in source_files():
        source = ROOT / relative
        if any((ROOT / parent).is_symlink() for parent in relative.parents):
            continue  # reached through a link (recipes/ -> keras_lottery/recipes): copied where it lives
        if not source.is_symlink() and not source.is_file():
            continue  # deleted in the working tree
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)


def run(args, cwd, env=None, timeout=600):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **PIP_ENV, **(env or {})})
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(source copy, wheel, install folder, environment running the installed package)."""
    base = tmp_path_factory.mktemp("install")
    source, wheels, target = base / "source", base / "wheels", base / "site"
    copy_source(source)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                 "-w", str(wheels), str(source)], cwd=base)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("keras_lottery-*.whl")
    done = run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    env = {"PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return source, wheel, target, env


def test_the_wheel_holds_every_recipe(installed):
    source, wheel, _, _ = installed
    shipped = sorted(p.name for p in (source / "keras_lottery" / "recipes").glob("*.json"))
    assert shipped == sorted(p.name for p in RECIPES.glob("*.json")) and len(shipped) >= 18
    with zipfile.ZipFile(wheel) as archive:
        held = {name: archive.read(name) for name in archive.namelist()
                if name.startswith("keras_lottery/recipes/") and name.endswith(".json")}
    assert sorted(held) == [f"keras_lottery/recipes/{name}" for name in shipped]
    for name in shipped:
        assert held[f"keras_lottery/recipes/{name}"] == (RECIPES / name).read_bytes()


def test_the_installed_package_lists_and_shows_recipes_from_any_folder(installed, tmp_path):
    _, _, target, env = installed
    where = run([sys.executable, "-c", "import keras_lottery.config.catalog as c; print(c.__file__); print(c.RECIPES_DIR)"],
                cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(Path(line).is_relative_to(target) for line in where.stdout.split()), where.stdout  # not the checkout

    listed = run([sys.executable, "-m", "keras_lottery.cli", "recipes"], cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert names == {p.stem for p in RECIPES.glob("*.json")}

    shown = run([str(target / "bin" / "keras-lottery"), "recipes", "show", "conv6_cifar10"], cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    resolved = json.loads((ROOT / "tests" / "fixtures" / "recipes_resolved.json").read_text(encoding="utf-8"))
    assert without_later_fields(json.loads(shown.stdout)) == resolved["conv6_cifar10"]
    variant = run([sys.executable, "-m", "keras_lottery.cli", "recipes", "show", "resnet18_cifar10_warmup"], cwd=tmp_path, env=env)
    assert variant.returncode == 0, variant.stderr[-2000:]
    assert without_later_fields(json.loads(variant.stdout)) == resolved["resnet18_cifar10_warmup"]
    assert list(tmp_path.iterdir()) == []


def test_the_installed_package_runs_a_recipe_by_name_up_to_its_checks(installed, tmp_path):
    """`run NAME` finds the shipped file; a bad override stops it before training."""
    _, _, _, env = installed
    result = run([sys.executable, "-m", "keras_lottery.cli", "run", "conv6_cifar10", "--set", "trials=0"], cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: recipe key 'trials': must be an integer >= 1, got 0"
    unknown = run([sys.executable, "-m", "keras_lottery.cli", "run", "conv7_cifar10"], cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "no recipe named 'conv7_cifar10'" in unknown.stderr and "conv6_cifar10" in unknown.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_installed_package_trains_a_recipe_by_name(installed, tmp_path):
    _, _, target, env = installed
    result = run([str(target / "bin" / "keras-lottery"), "run", "quickstart_digits", "--rounds", "2",
                  "--set", "training.iterations=100", "--set", "training.eval_every=50"], cwd=tmp_path, env=env, timeout=1800)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("quickstart_digits-") and (run_dir / "results.csv").is_file()
