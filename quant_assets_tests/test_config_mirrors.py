"""Each knob is declared once: a Config model with a lib parameter dataclass behind it takes
its defaults from the dataclass, and the two agree for every knob."""

import dataclasses

import pytest
from pydantic import BaseModel, Field

import quant_assets.definitions  # noqa: F401 - registers every Config model
from quant_assets.defs.config import MIRRORS, lib_params, mirrors

EXPECTED = {
    ("ClientWorldConfig", "WorldSpec"),
    ("FlatFileConfig", "Bounds"),
    ("PortfolioConfig", "PortfolioRules"),
    ("StrategyMatrixConfig", "GridSpec"),
    ("OptimizationConfig", "FilterGrid"),
    ("OptimizationConfig", "WalkForwardSpec"),
    ("BacktestConfig", "BacktestParams"),
    ("LgbmConfig", "LgbmParams"),
    ("LiquidUniverseConfig", "UniverseSpec"),
    ("ModelConfig", "TrainParams"),
    ("UniverseConfig", "Schedule"),
    ("DailyFilteredConfig", "UniverseRule"),
    ("MinuteFeaturesConfig", "SpikeBaseline"),
    ("EventLabelConfig", "EventRule"),
    ("SplitsConfig", "SplitFractions"),
}


def test_every_config_with_lib_parameters_mirrors_them():
    assert {(m.config.__name__, m.params.__name__) for m in MIRRORS} == EXPECTED


@pytest.mark.parametrize("mirror", MIRRORS, ids=lambda m: f"{m.config.__name__}-{m.params.__name__}")
def test_config_defaults_equal_the_lib_defaults_for_every_knob(mirror):
    assert mirror.disagreements() == {}
    assert mirror.build(mirror.config()) == mirror.params()
    # Every knob the dataclass has and the Config offers under any name is mirrored.
    shared = set(mirror.pairs().values())
    offered = {mirror.rename.get(c, c) for c in mirror.config.model_fields}
    assert shared == offered & {f.name for f in dataclasses.fields(mirror.params)}


def test_run_values_reach_the_lib_parameters_in_their_units():
    from quant_assets.defs.pump.backtests import PortfolioConfig
    from quant_assets.lib.pump.portfolio import PortfolioRules

    rules = lib_params(PortfolioConfig(slippage_bps=25.0, timeout=30), PortfolioRules)
    assert rules.slippage == pytest.approx(0.0025) and rules.timeout_minutes == 30 and rules.sl == PortfolioRules.sl


def test_a_drifting_default_fails_at_import_naming_the_knob():
    @dataclasses.dataclass(frozen=True)
    class Params:
        window: int = 20

    with pytest.raises(TypeError, match=r"'window': \(21, 20\)"):

        @mirrors(Params)
        class Drifted(BaseModel):
            window: int = Field(default=21)

    class Unmirrored(BaseModel):
        window: int = 20

    with pytest.raises(TypeError, match="does not mirror"):
        lib_params(Unmirrored(), Params)


def test_a_knob_is_declared_once_in_lib_and_offered_by_the_config_with_its_bounds():
    from collections.abc import Sequence

    from quant_assets.defs.config import config_schema
    from quant_assets.lib.knobs import check_knobs, knob

    @dataclasses.dataclass(frozen=True)
    class Params:
        window: int = knob(20, "Window length, sessions.", ge=2, le=250)
        cuts: Sequence[float] = knob((0.1, 0.5), "Cut points.")
        internal: int = 3  # not a knob: the launchpad does not offer it

        def __post_init__(self) -> None:
            check_knobs(self)

    @mirrors(Params)
    class Knobs(BaseModel):
        """Doc."""

        label: str = Field(default="x", description="Another field of the run.")

    assert list(Knobs.model_fields) == ["label", "window", "cuts"]
    assert Knobs.__name__ == "Knobs" and Knobs.__doc__ == "Doc."
    schema = config_schema(Knobs)
    assert schema["window"].description == "Window length, sessions. (>= 2; <= 250)"
    assert schema["window"].default_value == 20 and schema["cuts"].default_value == [0.1, 0.5]
    assert lib_params(Knobs(window=30, cuts=[0.2]), Params) == Params(window=30, cuts=(0.2,))
    with pytest.raises(ValueError, match="Params.window must be <= 250, got 251"):
        Params(window=251)

    with pytest.raises(TypeError, match=r"declares \['window'\] again"):

        @mirrors(Params)
        class Twice(BaseModel):
            window: int = Field(default=20)


def test_lib_parameter_dataclasses_refuse_out_of_bounds_knobs_as_the_launchpad_does():
    from quant_assets.lib.pump.portfolio import PortfolioRules
    from quant_assets.lib.smart_money.model import TrainParams

    with pytest.raises(ValueError, match=r"PortfolioRules.sl must be < 1, got 1.5"):
        PortfolioRules(sl=1.5)
    with pytest.raises(ValueError, match=r"TrainParams.feature_fraction must be > 0, got 0"):
        TrainParams(feature_fraction=0)


def test_every_lib_knob_is_offered_by_a_launchpad_config():
    """A ``knob`` says "a run may set this": every parameter dataclass in lib that declares one is
    mirrored by a Config, which offers each of its knobs."""
    import importlib
    import inspect
    from pathlib import Path

    import quant_assets.lib
    from quant_assets.lib.knobs import knobs_of

    root = Path(quant_assets.lib.__file__).parent
    declared = {}
    for path in sorted(root.rglob("*.py")):  # lib/pump is a namespace package: walk the files
        module = importlib.import_module(".".join(("quant_assets", "lib", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"))
        for _, cls in inspect.getmembers(module, dataclasses.is_dataclass):
            if isinstance(cls, type) and cls.__module__ == module.__name__ and knobs_of(cls):
                declared[cls] = set(knobs_of(cls))
    assert len(declared) == 15, sorted(c.__name__ for c in declared)
    offered = {}
    for mirror in MIRRORS:
        offered.setdefault(mirror.params, set()).update(mirror.pairs().values())
    for cls, names in declared.items():
        assert names <= offered.get(cls, set()), f"{cls.__name__} knobs no Config offers: {sorted(names - offered.get(cls, set()))}"
