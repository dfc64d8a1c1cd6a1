from dataclasses import dataclass, field

import pytest

from safegrpo.core.config import ConfigError, from_dict, load_config


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    mode: str = "a"

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError("lr must be > 0")


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    steps: int = 3
    flag: bool = False


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 5\ninner:\n  lr: 0.5\n")
    cfg = load_config(Outer, p, ["inner.mode=b", "flag=true"])
    assert cfg == Outer(inner=Inner(lr=0.5, mode="b"), steps=5, flag=True)


def test_errors_name_the_field():
    with pytest.raises(ConfigError, match="inner.lrr"):
        from_dict(Outer, {"inner": {"lrr": 1}})
    with pytest.raises(ConfigError, match="steps: expected int"):
        from_dict(Outer, {"steps": "many"})
    with pytest.raises(ConfigError, match="lr must be > 0"):
        from_dict(Outer, {"inner": {"lr": -1}})
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config(Outer, None, ["steps"])


@dataclass(frozen=True)
class Two:
    a: Inner = field(default_factory=Inner)
    b: Inner = field(default_factory=Inner)
    steps: int = 3


def test_json_file_and_flat_overrides(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"steps": 9, "inner": {"mode": "j"}}')
    cfg = load_config(Outer, p, ["lr=0.25"])  # flat name resolved to the only field called lr
    assert cfg == Outer(inner=Inner(lr=0.25, mode="j"), steps=9)
    assert load_config(Two, None, ["steps=4"]).steps == 4  # a top-level field wins
    with pytest.raises(ConfigError, match="'lr' is ambiguous; use one of: a.lr, b.lr"):
        load_config(Two, None, ["lr=0.1"])
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(Two, None, ["nope=1"])


@dataclass(frozen=True)
class Paths:
    base_model: str = ""
    inner: Inner = field(default_factory=Inner)
    mode: str = "./not-a-path-field"


@dataclass(frozen=True)
class WithPaths:
    model: str = "org/hub-model"  # a hub id: never checked locally
    nested: Paths = field(default_factory=Paths)


def test_missing_local_paths_are_named(tmp_path):
    from safegrpo.core.config import missing_paths

    assert missing_paths(WithPaths()) == []  # empty values, hub ids and non-path fields pass
    assert missing_paths(WithPaths(nested=Paths(base_model=str(tmp_path)))) == []
    bad = WithPaths(model="./nope", nested=Paths(base_model=str(tmp_path / "gone")))
    assert missing_paths(bad) == ["model: ./nope does not exist",
                                  f"nested.base_model: {tmp_path / 'gone'} does not exist"]


def test_a_section_override_keeps_the_recipes_own_section_defaults():
    """Setting one field of a section whose default is a customised instance (the recommender's
    grpo: steps=80, advantage=segment_gdpo) keeps that instance's other values."""
    from safegrpo.core.config import load_config
    from safegrpo.recipes.recommender.pipeline import RecommenderRecipeConfig

    base = RecommenderRecipeConfig()
    cfg = load_config(RecommenderRecipeConfig, None, ["grpo.lr=0.001"])
    assert cfg.grpo.lr == 0.001
    assert (cfg.grpo.steps, cfg.grpo.advantage) == (base.grpo.steps, base.grpo.advantage)
    assert cfg.grpo.advantage == "segment_gdpo"
