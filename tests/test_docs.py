"""The documentation site: a strict MkDocs build, the recipe list generated from the recipe
files, and every code block marked runnable (``<!-- runnable -->`` before its fence) executed."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, RECIPES
from keras_lottery.config import catalog

DOCS = ROOT / "docs"
# A fenced block right after a marker; README's API example keeps its own marker (tests/test_api.py runs it).
RUNNABLE = re.compile(r"<!-- (runnable|api-example) -->\s*```(python|bash)\n(.*?)```", re.S)


def runnable_blocks(path):
    return [(language, code) for _, language, code in RUNNABLE.findall(path.read_text())]


def _blocks():
    readme_example = {code for marker, _, code in RUNNABLE.findall((ROOT / "README.md").read_text())
                      if marker == "api-example"}
    found = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for index, (language, code) in enumerate(runnable_blocks(page)):
            if code in readme_example:  # the same code as README's example, which test_api runs
                continue
            found.append(pytest.param(language, code, id=f"{page.stem}-{index}"))
    return found


def test_runnable_blocks_are_found():
    pages = {page.stem for page in DOCS.glob("*.md") if runnable_blocks(page)}
    assert {"own-model", "getting-started", "how-it-works"} <= pages
    readme = RUNNABLE.findall((ROOT / "README.md").read_text())
    own_model = runnable_blocks(DOCS / "own-model.md")
    assert any(marker == "api-example" for marker, _, _ in readme)
    assert own_model[0][1] in {code for _, _, code in readme}, "docs/own-model.md's example differs from README's"


@pytest.mark.parametrize("language, code", _blocks())
def test_runnable_docs_examples_run(language, code, tmp_path):
    """Each block runs as written, in a new process, in an empty folder."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    command = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def test_the_documentation_builds_strictly(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[test]' installs it")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=tmp_path, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # every page is in the nav (a page left out fails the strict build), and each was built
    for page in DOCS.glob("*.md"):
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), page
    recipes_page = (site / "recipes" / "index.html").read_text()
    assert "shipped-recipes" not in recipes_page
    for name in catalog.shipped_paths():  # every shipped recipe has its section, generated
        assert f'id="{name}"' in recipes_page, name
    assert "Frankle &amp; Carbin 2019, Section 2, Figures 1, 3 and 4" in recipes_page
    api = (site / "api" / "index.html").read_text()
    for name in ("load_recipe", "Result", "UsageError", "large_final_same_sign", "Analysis"):
        assert name in api, name


def test_the_recipe_list_is_generated_from_the_recipe_files(tmp_path):
    """A recipe file added to the folder appears, with the figure its description cites."""
    (tmp_path / "lenet300_mnist.json").write_text((RECIPES / "lenet300_mnist.json").read_text())
    (tmp_path / "my_new.json").write_text(json.dumps({
        "extends": "lenet300_mnist.json", "name": "my_new",
        "description": "A new one (Frankle & Carbin 2019, Section 5, Figure 9): more rounds.",
        "pruning": {"rounds": 25},
    }))
    text = catalog.markdown(tmp_path)
    assert "| [`my_new`](#my_new) | `lenet_300_100` | `mnist` | Frankle & Carbin 2019, Section 5, Figure 9 |" in text
    assert "### `my_new`" in text and "25 rounds" in text and "**Extends** `lenet300_mnist.json`" in text
    assert "### `lenet300_mnist`" in text


@pytest.mark.parametrize("description, cited", [
    ("Conv-2 on CIFAR-10 (Frankle & Carbin 2019, Section 3, Figure 5): Adam", "Frankle & Carbin 2019, Section 3, Figure 5"),
    ("Resnet-18 with rewinding to 500 (1.7% of training) instead of θ0 (Frankle et al. 2019; compare Figure 8): SGD",
     "Frankle et al. 2019; compare Figure 8"),
    ("Quick start, no download: a small MLP.", None),
])
def test_the_citation_is_the_parenthesis_closing_the_headline(description, cited):
    assert catalog.citation(description) == cited
