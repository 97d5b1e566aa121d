"""Recipes: strict parsing, overrides, and the identity that names run directories."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keras_lottery.config import catalog, identity
from keras_lottery.config import recipe as recipes
from keras_lottery.config.recipe import RecipeError
from conftest import RECIPES, ROOT, TINY, merge, save_recipe, without_later_fields


def test_shipped_core_recipes_parse():
    for name in ("lenet300_mnist", "quickstart_digits"):
        recipe = recipes.load(RECIPES / f"{name}.json")
        assert recipe.name == name


def test_lenet_recipe_is_the_paper_protocol():
    r = recipes.load(RECIPES / "lenet300_mnist.json")
    assert (r.model.name, r.model.initializer) == ("lenet_300_100", "glorot_normal")
    assert (r.training.optimizer, r.training.learning_rate, r.training.batch_size) == ("adam", 0.0012, 60)
    assert (r.training.iterations, r.training.eval_every, r.dataset.validation_size) == (50000, 100, 5000)
    assert r.pruning.rates == {"dense": 0.2, "output": 0.1} and r.pruning.rounds == 19
    assert r.rewind.iteration == 0 and r.trials == 5
    assert set(r.controls) == {"random_reinit", "random_prune"}


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"training": {"batch_size": 0}}, "training.batch_size"),
        ({"training": {"iterations": -5}}, "training.iterations"),
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate"),
        ({"pruning": {"rates": {"dense": 1.2}}}, "pruning.rates.dense"),
        ({"pruning": {"rates": {"dense": 0.0}}}, "pruning.rates.dense"),
        ({"pruning": {"rates": {"norm": 0.2}}}, "pruning.rates"),
        ({"pruning": {"scope": "global", "rates": {"dense": 0.2, "output": 0.1}}}, "pruning.rates"),
        ({"model": {"name": "alexnet"}}, "model.name"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name"),
        ({"training": {"optimizer": "lamb"}}, "training.optimizer"),
        ({"controls": ["random_everything"]}, "controls"),
        ({"trials": 0}, "trials"),
        ({"colour": "blue"}, "colour"),
        ({"training": {"epochs": 3}}, "training.epochs"),
        ({"training": {"iterations": 50, "eval_every": 20}}, "training.eval_every"),
        ({"rewind": {"iteration": 60}}, "rewind.iteration"),
    ],
)
def test_bad_values_name_the_key(changes, key):
    with pytest.raises(RecipeError) as err:
        recipes.parse(merge(TINY, changes))
    message = str(err.value)
    assert key in message and "\n" not in message


def test_missing_data_file_is_refused_before_training(tmp_path, write_recipe):
    missing = merge(TINY, {"dataset": {"path": str(tmp_path / "nope.npz")}})
    with pytest.raises(RecipeError, match="data file not found"):
        recipes.load(write_recipe(missing))
    # a run's saved recipe stays readable after its data file moved (export, report, analyze)
    assert recipes.parse(missing).dataset.path == str(tmp_path / "nope.npz")


def test_invalid_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n "trials": }')
    with pytest.raises(RecipeError, match=r"broken.json is not valid JSON.*line 2"):
        recipes.load(path)


def test_set_overrides_any_field(write_recipe):
    path = write_recipe(TINY)
    r = recipes.load(path, ["training.iterations=2000", "controls=[]", "dataset.name=digits",
                            'pruning.rates={"dense": 0.5}'])
    assert r.training.iterations == 2000 and r.controls == () and r.pruning.rates == {"dense": 0.5}


def test_set_refuses_unknown_keys(write_recipe):
    with pytest.raises(RecipeError, match="unknown recipe key 'training.epochs'"):
        recipes.load(write_recipe(TINY), ["training.epochs=3"])


def test_rounds_trials_and_data_options(write_recipe, fake_npz):
    r = recipes.load(write_recipe(TINY), data_path=fake_npz, rounds=1, trials=2)
    assert r.pruning.rounds == 1 and r.trials == 2 and r.dataset.path == str(fake_npz)


def test_identity_ignores_what_only_adds_work():
    base = recipes.parse(TINY)
    more = recipes.parse(merge(TINY, {"trials": 3, "controls": [], "pruning": {"rounds": 9}}))
    other = recipes.parse(merge(TINY, {"training": {"learning_rate": 0.01}}))
    assert base.short_hash() == more.short_hash() != other.short_hash()


def test_resolved_recipe_round_trips():
    r = recipes.parse(TINY)
    assert recipes.parse(json.loads(json.dumps(r.to_dict()))) == r


# ---- the shipped recipes, before and after they were rewritten with "extends" -----------

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Every shipped recipe's to_dict() as written out in full before "extends" (keras-lottery 0.1.0).
RESOLVED = json.loads((FIXTURES / "recipes_resolved.json").read_text(encoding="utf-8"))
# The run-directory hashes keras-lottery 0.1.0 gave the shipped recipes.
LEGACY_HASHES = {
    "conv2_cifar10": "4b561cdc", "conv2_dropout_cifar10": "d402947d", "conv4_cifar10": "1ee35654",
    "conv4_dropout_cifar10": "6815ac5a", "conv6_cifar10": "ff493ff7", "conv6_dropout_cifar10": "4466fc77",
    "lenet300_mnist": "e8266bc1", "lenet300_mnist_oneshot": "bc889cd1", "quickstart_digits": "ed9acbe8",
    "resnet18_cifar10": "a0ccf4fc", "resnet18_cifar10_lr001": "92be03e6", "resnet18_cifar10_rewind": "11bd274a",
    "resnet18_cifar10_warmup": "199870a5", "vgg19_cifar10": "c0add812", "vgg19_cifar10_layerwise": "db2de47b",
    "vgg19_cifar10_lr001": "c8ad9cf9", "vgg19_cifar10_rewind": "0f00dbad", "vgg19_cifar10_warmup": "c5b5d740",
}
# Variant recipes state only what differs from the recipe they extend.
EXTENDED = {
    "vgg19_cifar10_lr001": "vgg19_cifar10", "vgg19_cifar10_warmup": "vgg19_cifar10",
    "vgg19_cifar10_layerwise": "vgg19_cifar10", "vgg19_cifar10_rewind": "vgg19_cifar10",
    "resnet18_cifar10_lr001": "resnet18_cifar10", "resnet18_cifar10_warmup": "resnet18_cifar10",
    "resnet18_cifar10_rewind": "resnet18_cifar10", "lenet300_mnist_oneshot": "lenet300_mnist",
    "conv2_dropout_cifar10": "conv2_cifar10", "conv4_dropout_cifar10": "conv4_cifar10",
    "conv6_dropout_cifar10": "conv6_cifar10",
}


def test_the_shipped_recipes_are_the_same_as_before():
    # every recipe of 0.1.0 still ships (later ones are added beside them)
    assert set(RESOLVED) <= {p.stem for p in RECIPES.glob("*.json")} and sorted(RESOLVED) == sorted(LEGACY_HASHES)
    assert catalog.RECIPES_DIR.resolve() == RECIPES.resolve()
    assert (ROOT / "recipes").resolve() == RECIPES.resolve()  # the checkout's recipes/ is the same folder


@pytest.mark.parametrize("name", sorted(RESOLVED))
def test_shipped_recipe_resolves_exactly_as_before(name):
    r = recipes.load(RECIPES / f"{name}.json")
    resolved = without_later_fields(r.to_dict())  # fields added later, at the defaults that ran before
    assert resolved == RESOLVED[name]
    assert r == recipes.parse(RESOLVED[name])
    assert r.short_hash() == recipes.parse(RESOLVED[name]).short_hash()
    assert identity.legacy_hash(r) == LEGACY_HASHES[name]


@pytest.mark.parametrize("name", sorted(EXTENDED))
def test_variant_recipes_extend_their_base_and_keep_their_own_name(name):
    raw = json.loads((RECIPES / f"{name}.json").read_text(encoding="utf-8"))
    base = json.loads((RECIPES / f"{EXTENDED[name]}.json").read_text(encoding="utf-8"))
    assert raw["extends"] == EXTENDED[name]
    assert raw["name"] == name and raw["description"] != base["description"]
    assert "dataset" not in raw  # the point: only what differs is written
    assert "extends" not in recipes.read(RECIPES / f"{name}.json")


# ---- extends --------------------------------------------------------------------------

def test_merge_merges_objects_and_replaces_everything_else():
    base = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1, "f": 2}}, "g": 1, "h": None}
    changes = {"a": {"c": [3], "d": {"f": 5}}, "g": None, "h": {"i": 1}}
    assert recipes.merge(base, changes) == {"a": {"b": 1, "c": [3], "d": {"e": 1, "f": 5}}, "g": None, "h": {"i": 1}}
    assert base["a"]["d"] == {"e": 1, "f": 2}  # the base is not changed


def test_extending_a_shipped_recipe_equals_writing_it_out(tmp_path):
    child = {"extends": "vgg19_cifar10", "name": "vgg_short", "training": {"learning_rate": 0.05, "lr_drops": [60000]}}
    extending = recipes.load(save_recipe(tmp_path, child, "short.json"))
    full = recipes.merge(json.loads((RECIPES / "vgg19_cifar10.json").read_text(encoding="utf-8")),
                         {k: v for k, v in child.items() if k != "extends"})
    written = recipes.load(save_recipe(tmp_path, full, "full.json"))
    assert extending == written and extending.short_hash() == written.short_hash()
    assert extending.training.lr_drops == (60000,) and extending.training.momentum == 0.9  # list replaced, rest kept
    assert extending.description == recipes.load(RECIPES / "vgg19_cifar10.json").description
    assert "extends" not in extending.to_dict()


def test_extends_paths_are_relative_to_the_extending_file_and_chain(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    (tmp_path / "variants").mkdir()
    (tmp_path / "elsewhere").mkdir()
    save_recipe(tmp_path / "base", TINY, "tiny.json")
    save_recipe(tmp_path / "variants", {"extends": "../base/tiny.json", "training": {"iterations": 120}}, "long.json")
    top = save_recipe(tmp_path / "variants", {"extends": "long.json", "name": "top", "controls": ["random_prune"],
                                              "pruning": {"rates": {"output": 0.3}}}, "top.json")
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = recipes.load(top)
    assert r.name == "top" and r.training.iterations == 120 and r.training.eval_every == 20
    assert r.pruning.rates == {"dense": 0.2, "output": 0.3} and r.controls == ("random_prune",)
    assert r == recipes.parse(merge(TINY, {"name": "top", "controls": ["random_prune"], "training": {"iterations": 120},
                                           "pruning": {"rates": {"output": 0.3}}}))
    absolute = save_recipe(tmp_path, {"extends": str(tmp_path / "base" / "tiny.json"), "seed": 4}, "abs.json")
    assert recipes.load(absolute).seed == 4


def test_overrides_apply_after_extends(tmp_path):
    path = save_recipe(tmp_path, {"extends": "resnet18_cifar10_rewind", "name": "mine"})
    r = recipes.load(path, ["rewind.iteration=1000", "pruning.rounds=2"])
    assert (r.name, r.rewind.iteration, r.pruning.rounds, r.training.learning_rate) == ("mine", 1000, 2, 0.1)


def one_line_error(*args, **kwargs):
    with pytest.raises(RecipeError) as err:
        recipes.load(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_extends_cycles_are_refused(tmp_path):
    a = save_recipe(tmp_path, merge(TINY, {"extends": "b.json"}), "a.json")
    save_recipe(tmp_path, {"extends": "c.json"}, "b.json")
    save_recipe(tmp_path, {"extends": "./a.json"}, "c.json")
    names = [tmp_path / name for name in ("a.json", "b.json", "c.json", "./a.json")]
    assert one_line_error(a) == (f"recipes extend each other in a cycle: {' -> '.join(map(str, names))}; "
                                 "remove one of these 'extends'")
    itself = save_recipe(tmp_path, merge(TINY, {"extends": "self.json"}), "self.json")
    assert one_line_error(itself).startswith(f"recipes extend each other in a cycle: {itself} -> {itself};")


@pytest.mark.parametrize("extends, expected", [
    ("vgg19", "extends 'vgg19', which is not a shipped recipe (conv2_cifar10, "),
    ("nope.json", "but "),
    ("sub/nope.json", "is not a file; a path is relative to the folder of the recipe that extends"),
    (3, "key 'extends' must be a shipped recipe name"),
    ("", "key 'extends' must be a shipped recipe name"),
])
def test_extends_errors_name_the_problem(tmp_path, extends, expected):
    assert expected in one_line_error(save_recipe(tmp_path, merge(TINY, {"extends": extends})))


def test_unknown_key_in_an_extended_file_names_that_file(tmp_path):
    save_recipe(tmp_path, merge(TINY, {"trainig": {}}), "base.json")
    child = save_recipe(tmp_path, {"extends": "base.json", "name": "child"}, "child.json")
    message = one_line_error(child)
    assert message.startswith(f"recipe {tmp_path / 'base.json'} (extended by {child}): unknown recipe key 'trainig'")


def test_extends_is_only_read_from_files(write_recipe):
    with pytest.raises(RecipeError, match="only a recipe file may extend another"):
        recipes.parse(merge(TINY, {"extends": "vgg19_cifar10"}))
    assert "only a recipe file may extend another" in one_line_error(write_recipe(TINY), ["extends=vgg19_cifar10"])


# ---- did you mean ---------------------------------------------------------------------

@pytest.mark.parametrize("changes, expected", [
    ({"modle": {}}, "unknown recipe key 'modle': did you mean 'model'? (allowed keys are name, description, dataset,"),
    ({"trainig": {}}, "unknown recipe key 'trainig': did you mean 'training'?"),
    ({"training": {"iteratons": 5}}, "unknown recipe key 'training.iteratons': did you mean 'training.iterations'? (allowed keys are optimizer,"),
    ({"pruning": {"Scope": "global"}}, "unknown recipe key 'pruning.Scope': did you mean 'pruning.scope'?"),
    ({"rewind": {"itteration": 5}}, "unknown recipe key 'rewind.itteration': did you mean 'rewind.iteration'?"),
    ({"colour": "blue"}, "unknown recipe key 'colour': allowed keys are name, description,"),
])
def test_unknown_keys_suggest_the_closest_key(write_recipe, changes, expected):
    assert expected in one_line_error(write_recipe(merge(TINY, changes)))
    with pytest.raises(RecipeError) as err:
        recipes.parse(merge(TINY, changes))
    assert expected in str(err.value)


def test_unknown_key_is_reported_before_a_missing_section(write_recipe):
    data = merge(TINY, {})
    data["modle"] = data.pop("model")
    data["trainig"] = data.pop("training")
    message = one_line_error(write_recipe(data))
    assert message.startswith("unknown recipe key 'modle': did you mean 'model'?"), message
    # and before a bad value elsewhere
    message = one_line_error(write_recipe(merge(TINY, {"training": {"batch_size": "x", "iteratons": 5}})))
    assert "did you mean 'training.iterations'?" in message


@pytest.mark.parametrize("assignment, expected", [
    ("training.iteratons=2000", "--set: unknown recipe key 'training.iteratons': did you mean 'training.iterations'? (allowed keys are"),
    ("trainig.iterations=2000", "--set: unknown recipe key 'trainig': did you mean 'training'?"),
    ("seeed=3", "--set: unknown recipe key 'seeed': did you mean 'seed'?"),
    ("training.epochs=3", "--set: unknown recipe key 'training.epochs': allowed keys are optimizer,"),
])
def test_set_suggests_the_closest_key(write_recipe, assignment, expected):
    assert expected in one_line_error(write_recipe(TINY), [assignment])


# ---- learning-rate schedules longer than training ------------------------------------

def test_a_shorter_run_keeps_the_schedule_and_notes_what_never_happens():
    r = recipes.load(RECIPES / "resnet18_cifar10_warmup.json", ["training.iterations=2000"])
    assert r.training.lr_drops == (20000, 25000) and r.training.warmup_iterations == 20000
    assert r.notes() == [
        "training.lr_drops 20000, 25000 lie at or past the last iteration (2000) and never happen",
        "training.warmup_iterations 20000 is at or past the last iteration (2000): the warmup never ends, "
        "so the learning rate never reaches training.learning_rate (0.03)",
    ]
    vgg = recipes.load(RECIPES / "vgg19_cifar10.json", ["training.iterations=2000", "training.eval_every=100"])
    assert vgg.notes() == ["training.lr_drops 56240, 84360 lie at or past the last iteration (2000) and never happen"]
    partly = recipes.load(RECIPES / "resnet18_cifar10.json", ["training.iterations=25000"])
    assert partly.notes() == ["training.lr_drops 25000 lies at or past the last iteration (25000) and never happens"]
    assert recipes.load(RECIPES / "resnet18_cifar10.json", ["training.iterations=25500"]).notes() == []


@pytest.mark.parametrize("name", sorted(RESOLVED))
def test_shipped_recipes_have_no_notes(name):
    assert recipes.load(RECIPES / f"{name}.json").notes() == []


def test_warmup_as_long_as_training_is_allowed():
    r = recipes.parse(merge(TINY, {"training": {"warmup_iterations": 60}}))
    assert r.notes() == ["training.warmup_iterations 60 is at or past the last iteration (60): the warmup never "
                         "ends, so the learning rate never reaches training.learning_rate (0.003)"]
    assert recipes.parse(merge(TINY, {"training": {"warmup_iterations": 59, "lr_drops": [59]}})).notes() == []


@pytest.mark.parametrize("drops", [[0], [-20], [40, 20], [20, 20], [20.5], [True], ["20"]])
def test_lr_drops_must_be_increasing_positive_iterations(drops):
    with pytest.raises(RecipeError, match=r"recipe key 'training.lr_drops': must be a list of increasing iterations > 0"):
        recipes.parse(merge(TINY, {"training": {"lr_drops": drops}}))


# ---- parsing recipes does not import TensorFlow ----------------------------------------

def test_reading_recipes_does_not_import_tensorflow(tmp_path):
    save_recipe(tmp_path, {"extends": "vgg19_cifar10_rewind", "name": "mine", "trials": 1}, "mine.json")
    code = (
        "import sys\n"
        "from keras_lottery.config import catalog, recipe\n"
        "for path in catalog.recipe_paths():\n"
        "    r = recipe.load(path, ['training.iterations=2000', 'training.eval_every=100', 'rewind.iteration=0'])\n"
        "    r.notes(), r.short_hash(), r.to_dict()\n"
        "r = recipe.load(catalog.find('mine.json'))\n"
        "assert r.name == 'mine' and r.rewind.iteration == 703, r\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "assert not loaded, loaded[:5]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr[-2000:]
